"""benchmarks/durations.py: the alignment source it scores against, and a missing model as one line."""

from __future__ import annotations

import sys

from tests.styletts2.reference import REPO
from tts_zoo.recipe import load_recipe

sys.path.insert(0, str(REPO / "benchmarks"))
import durations  # noqa: E402


def test_the_target_is_the_recipes_stage2_alignment():
    assert durations.stage2_alignment(load_recipe(REPO / "recipes/demo.yaml")) == "ctc"
    assert durations.stage2_alignment(load_recipe(REPO / "recipes/libritts_istft.yaml")) == "attention"


def test_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    assert durations.main(["--model", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no tts-zoo checkpoint here" in err
