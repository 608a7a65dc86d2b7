"""Every installed component passes the conformance kit (``tts_zoo.testing``), and so does the
example plugin through its own tests.

The table gives small constructor arguments for the components whose defaults build big networks
(the kit fills the rest from the catalogue): a new built-in component with big defaults adds a row.
"""

import os
import subprocess
import sys

import pytest

from tests.core.test_third_party_plugin import EXAMPLE, REPO, site  # noqa: F401 - `site` is a fixture
from tests.styletts2.reference import tiny_wavlm_config
from tts_zoo import registry
from tts_zoo.recipe import load_recipe
from tts_zoo.testing import all_checks

# The demo recipe's model, smaller (built once per check: ~0.1 s)
TINY_MODEL = ["model.decoder.upsample_initial_channel=32", "model.decoder.resblock_kernel_sizes=[3]",
              "model.decoder.resblock_dilation_sizes=[[1, 3]]", "model.decoder.hidden_dim=64",
              "model.mpd.channels=[4, 8, 8, 8, 8]", "model.mpd.periods=[2, 3]", "model.msd.channels=4",
              "model.text_aligner.hidden_dim=16", "model.pitch_extractor.channels=[4, 8, 8, 8]"]


def small_model() -> dict:
    block = dict(load_recipe(REPO / "recipes/demo.yaml", TINY_MODEL).model)
    block.pop("component")
    return block


SMALL = {  # name -> constructor arguments
    "text_encoder": dict(channels=16, depth=1, n_symbols=20),
    "plbert": dict(vocab_size=20, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                   max_position_embeddings=32, num_hidden_layers=1, embedding_size=8, output_dim=16),
    "style_encoder": dict(dim_in=8, style_dim=8, max_conv_dim=16),
    "style_diffusion": dict(style_dim=8, embedding_features=16, num_layers=1, num_heads=2, head_features=8,
                            multiplier=1, embedding_max_length=16),
    "prosody_predictor": dict(style_dim=8, d_hid=16, nlayers=1, max_dur=10),
    "hifigan": dict(dim_in=16, style_dim=8, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                    upsample_initial_channel=16, hidden_dim=32, asr_res_dim=8),
    "istftnet": dict(dim_in=16, style_dim=8, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                     upsample_initial_channel=16, hidden_dim=32, asr_res_dim=8),
    "mpd": dict(periods=[2, 3], channels=[4, 8, 8, 8, 8]),
    "msd": dict(channels=4),
    "wavlm": dict(model="random", hidden=16, nlayers=3, initial_channel=4, random_init_config=tiny_wavlm_config(16, 3)),
    "asr_cnn": dict(hidden_dim=16, n_token=20, token_embedding_dim=16, n_layers=1, location_n_filters=4,
                    location_kernel_size=7),
    "jdc": dict(channels=[4, 8, 8, 8]),
}
SIZES = {"styletts2": {"text": "Hi there."}}  # a short sentence: random durations make long audio


def cases():
    out = []
    for c in registry.list_components():
        kwargs = small_model() if c.kind == "model" and c.name == "styletts2" else SMALL.get(c.name, {})
        for check_name, check in all_checks(c.kind, c.qualified_name, sizes=SIZES.get(c.name), **kwargs):
            out.append(pytest.param(check, id=f"{c.kind}/{c.name}/{check_name}"))
    return out


@pytest.mark.parametrize("check", cases())
def test_installed_components_keep_their_contracts(check):
    check()


def test_the_built_in_components_exercise_every_kind_of_check():
    # Guards the kit's dispatch: a kind that fell back to the catalogue checks alone would pass silently.
    checked = {(c.kind, n) for c in registry.list_components()
               for n, _ in all_checks(c.kind, c.qualified_name, **SMALL.get(c.name, {}))}
    modules = ("text_encoder", "language_model", "style_model", "duration_model", "vocoder", "discriminator",
               "aligner", "pitch_extractor")
    expected = ({(k, "contract") for k in (*modules, "text_frontend", "sampler", "noise_schedule", "model")}
                | {(k, c) for k in modules for c in ("gradients", "state_dict_round_trip", "dtype_round_trip")}
                | {("sampler", "gradients"), ("model", "state_dict_round_trip")}
                | {(k, c) for k in ("loss", "stage") for c in ("recipe_kwargs", "catalogue_in_sync")})
    assert expected <= checked, sorted(expected - checked)


def test_the_example_plugin_passes_the_kit_in_its_own_tests(site):  # noqa: F811 - the fixture
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.stdout.count("PASSED ") == 12  # ddim twice (eta 0 and 1) x 4 checks, sine_tts x 4 checks
