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
