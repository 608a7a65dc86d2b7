"""Issue 12, finding 4: a plugin that fails to load (import error, bad YAML) is named wherever one of
its components is asked for — validate, show, build, loading a checkpoint — instead of "unknown"."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tts_zoo.checkpoint import load_model, save_model
from tts_zoo.errors import CheckpointError, RecipeError, UnknownComponentError
from tts_zoo.recipe import load_recipe
from tts_zoo.registry import PluginSource, Registry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tts-zoo-plugin-example"
BOOM = "ImportError: boom: needs torch>=9"


@pytest.fixture
def broken_module(tmp_path, monkeypatch):
    """A plugin package whose __init__ raises, importable from sys.path."""
    (tmp_path / "tts_zoo_test_vocos").mkdir()
    (tmp_path / "tts_zoo_test_vocos" / "__init__.py").write_text('raise ImportError("boom: needs torch>=9")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tts_zoo_test_vocos"


def with_broken(toy_registry, module):
    return Registry(sources=[*toy_registry._sources, PluginSource("vocos", "tts-zoo-vocos", module=module)])


def test_validate_and_resolve_name_the_plugin_that_failed_to_import(toy_registry, broken_module):
    reg = with_broken(toy_registry, broken_module)
    expected = f"component 'vocos' (vocoder) may come from plugin 'vocos' (tts-zoo-vocos) which failed to load: {BOOM}"
    recipe = {"name": "r", "model": {"component": "toymodel", "hidden": 3, "vocoder": {"component": "vocos"}}}
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe, registry=reg)
    assert str(e.value) == f"<recipe>: model.vocoder.component: {expected}"
    with pytest.raises(RecipeError) as e:
        reg.build_component({"component": "tts-zoo-vocos:vocos"}, "vocoder")  # qualified: not an import path
    assert str(e.value) == f"component: {expected}"
    with pytest.raises(UnknownComponentError, match="^component 'vocos' may come from plugin 'vocos'"):
        reg.resolve("vocos")  # what `show vocos` calls
    # Names the plugin does not shadow keep their usual messages.
    with pytest.raises(UnknownComponentError, match="has no version v9"):
        reg.resolve("toyvoc.v9", "vocoder")
    assert reg.resolve("toyvoc", "vocoder").distribution == "toy-dist"


def test_bad_yaml_is_a_one_line_reason(tmp_path, monkeypatch, toy_registry):
    (tmp_path / "tts_zoo_test_badyaml").mkdir()
    (tmp_path / "tts_zoo_test_badyaml" / "__init__.py").write_text("")
    (tmp_path / "tts_zoo_test_badyaml" / "registry.yaml").write_text("components:\n  - name: vocos\n   kind: [\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = with_broken(toy_registry, "tts_zoo_test_badyaml")
    with pytest.raises(UnknownComponentError) as e:
        reg.resolve("vocos", "vocoder")
    message = str(e.value)
    assert message.startswith("component 'vocos' (vocoder) may come from plugin 'vocos' (tts-zoo-vocos) which "
                              "failed to load: ParserError: while parsing a block") and "\n" not in message


def test_loading_a_checkpoint_whose_plugin_fails_names_it(tmp_path, toy_registry, broken_module):
    recipe = load_recipe({"name": "r", "model": {"component": "toymodel", "hidden": 3, "vocoder": {"component": "toyvoc"}}},
                         registry=toy_registry)
    path = save_model(tmp_path / "ckpt", toy_registry.build(recipe), recipe, registry=toy_registry)
    now = Registry(sources=[PluginSource("toy", "toy-dist", module=broken_module)])  # the same package, broken
    with pytest.raises(CheckpointError) as e:
        load_model(path, registry=now)
    assert str(e.value) == f"{path}: component 'toymodel' (model) may come from plugin 'toy' (toy-dist) which failed to load: {BOOM}"


def test_the_cli_names_a_broken_installed_plugin_exit_2(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "tts_zoo_example", site / "tts_zoo_example")
    info = site / "tts_zoo_plugin_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tts-zoo-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tts_zoo.plugins]\nexample = tts_zoo_example\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    ckpt, recipe = tmp_path / "beeps", tmp_path / "beeps.yaml"
    recipe.write_text("name: beeps\nmodel:\n  component: sine_tts\n  sampler: {component: ddim}\n")
    code = f"""
        from tts_zoo.checkpoint import save_model
        from tts_zoo.recipe import load_recipe
        from tts_zoo.registry import build
        recipe = load_recipe({str(recipe)!r})
        save_model({str(ckpt)!r}, build(recipe), recipe)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (site / "tts_zoo_example" / "__init__.py").write_text('raise ImportError("boom: needs torch>=9")\n')
    reason = f"plugin 'example' (tts-zoo-plugin-example) which failed to load: {BOOM}"
    for argv, line in [
        (["validate", str(recipe)], f"{recipe}:3: model.component: component 'sine_tts' (model) may come from {reason}"),
        (["show", "ddim"], f"component 'ddim' may come from {reason}"),
        (["synthesize", "--model", str(ckpt), "--text", "abc", "--out", str(tmp_path / "x.wav")],
         f"{ckpt}: component 'sine_tts' (model) may come from {reason}"),
    ]:
        r = subprocess.run([sys.executable, "-m", "tts_zoo", *argv], env=env, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr.splitlines()) == (2, [f"error: {line}"]), argv
