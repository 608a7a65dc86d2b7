"""A third-party plugin, discovered through a temporary *.dist-info on sys.path exactly as pip
would install it: its components list, show, validate and build with no change to tts-zoo."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tts-zoo-plugin-example"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE / "tts_zoo_example", site / "tts_zoo_example")
    info = site / "tts_zoo_plugin_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tts-zoo-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tts_zoo.plugins]\nexample = tts_zoo_example\n")
    return site


def python(site, code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120)


def test_plugin_components_are_listed_with_their_distribution(site):
    r = python(site, "from tts_zoo.cli import main; main(['list-components', '--kind', 'sampler', '--json'])")
    assert r.returncode == 0, r.stderr
    rows = {c["name"]: c for c in json.loads(r.stdout)["components"]}
    assert rows["ddim"]["distribution"] == "tts-zoo-plugin-example"
    assert "adpm2" in rows  # the built-in samplers are still there


def test_plugin_model_builds_from_a_recipe_with_a_nested_plugin_sampler(site):
    r = python(site, """
        import torch
        from tts_zoo import registry
        recipe = {"name": "beeps", "model": {"component": "sine_tts", "beep_ms": 10, "sampler": {"component": "ddim"}}}
        model = registry.build(recipe)
        wave = model.synthesize(torch.tensor([model.frontend("abc")]))
        print(type(model.sampler).__name__, wave.shape[0])
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["DDIMSampler", str(3 * 240)]


def test_plugin_sampler_follows_the_sampler_contract_on_a_gaussian(site):
    # A Gaussian N(mu, s^2) has the exact denoiser D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2):
    # the deterministic sampler must land on the right mean and variance.
    r = python(site, """
        import torch
        from tts_zoo import registry
        ddim = registry.build_component({"component": "ddim"}, "sampler")
        sched = registry.build_component({"component": "karras", "sigma_min": 1e-3, "sigma_max": 80.0, "rho": 7.0}, "noise_schedule")
        mu, s = 1.5, 0.5
        denoise = lambda x, sigma: (s**2 * x + sigma**2 * mu) / (s**2 + sigma**2)
        x = ddim(denoise, torch.randn(20000, generator=torch.Generator().manual_seed(0)), sched(50))
        print(float(x.mean()), float(x.std()))
    """)
    assert r.returncode == 0, r.stderr
    mean, std = map(float, r.stdout.split())
    assert abs(mean - 1.5) < 0.03 and abs(std - 0.5) < 0.03


# ---------------------------------------------------------------- issue 12: exit codes and catalogue errors

COMMANDS = '''
import typer

def exit_with(code: int = typer.Argument(..., help="Exit code.")) -> None:
    """Exit with CODE through typer.Exit."""
    raise typer.Exit(code)

def return_code(code: int = typer.Argument(..., help="Exit code.")) -> int:
    """Return CODE."""
    return code
'''


def plugin_site(root, edit=lambda catalogue: catalogue):
    """A site with the example plugin whose registry.yaml is ``edit(text)``, and two plugin commands."""
    shutil.copytree(EXAMPLE / "tts_zoo_example", root / "tts_zoo_example")
    catalogue = root / "tts_zoo_example" / "registry.yaml"
    catalogue.write_text(edit(catalogue.read_text()))
    (root / "tts_zoo_test_commands.py").write_text(COMMANDS)
    info = root / "tts_zoo_plugin_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tts-zoo-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tts_zoo.plugins]\nexample = tts_zoo_example\n\n[tts_zoo.commands]\n"
                                           "exit-with = tts_zoo_test_commands:exit_with\n"
                                           "return-code = tts_zoo_test_commands:return_code\n")
    return catalogue


def tts_zoo(site, *argv):
    return python(site, f"from tts_zoo.cli import main; main({list(argv)!r})")


def test_catalogue_check_on_a_stale_plugin_exits_1_and_writes_nothing(tmp_path):
    catalogue = plugin_site(tmp_path, lambda text: text.replace("default: 0.0", "default: 0.5", 1))
    before = catalogue.read_text()
    r = tts_zoo(tmp_path, "catalogue", "--check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"out of date: {catalogue}"]  # the built-in catalogue is in sync
    assert "run `tts-zoo catalogue` to regenerate" in r.stderr and catalogue.read_text() == before


@pytest.mark.parametrize("argv, code", [(["exit-with", "0"], 0), (["exit-with", "3"], 3), (["return-code", "4"], 4),
                                        (["return-code", "0"], 0), (["exit-with", "x"], 2)])
def test_a_plugin_command_exit_code_reaches_the_shell(tmp_path, argv, code):
    plugin_site(tmp_path)
    r = tts_zoo(tmp_path, *argv)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr


def recipe_with_ddim(tmp_path):
    recipe = tmp_path / "beeps.yaml"
    recipe.write_text("name: beeps\nmodel:\n  component: sine_tts\n  sampler: {component: ddim, eta: 1}\n")
    return recipe


def test_a_bad_type_in_a_plugin_catalogue_is_one_line_naming_the_file_exit_2(tmp_path):
    catalogue = plugin_site(tmp_path, lambda text: text.replace("type: float", "type: integr", 1))
    r = tts_zoo(tmp_path, "validate", str(recipe_with_ddim(tmp_path)))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"error: {tmp_path / 'beeps.yaml'}:4: model.sampler.component: {catalogue}: component 'ddim' (sampler), "
        "parameter 'eta': invalid type 'integr' (NameError: name 'integr' is not defined); the plugin "
        "(tts-zoo-plugin-example) should regenerate its params with `tts-zoo catalogue`"]


def test_a_kind_typo_in_a_plugin_catalogue_is_named_with_a_suggestion(tmp_path):
    catalogue = plugin_site(tmp_path, lambda text: text.replace("kind: sampler", "kind: samplr", 1))
    r = tts_zoo(tmp_path, "validate", str(recipe_with_ddim(tmp_path)))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
    assert f"model.sampler.component: {catalogue}: component 'ddim' has unknown kind 'samplr'; did you mean 'sampler'?" in r.stderr
    r = tts_zoo(tmp_path, "list-components", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and "samplr" not in {c["kind"] for c in data["components"]}  # no new kind appeared
    assert [b["error"].split(";")[0] for b in data["broken_plugins"]] == [f"{catalogue}: component 'ddim' has unknown kind 'samplr'"]
