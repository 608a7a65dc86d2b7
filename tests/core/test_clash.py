"""Issue 12, finding 3: installing a plugin never changes what an existing recipe builds.

Policy: an unqualified name means the built-in provider (tts-zoo), else the first distribution by
name; a one-time warning names the qualified alternatives (``dist:name``), which select the others."""

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tts_zoo.interfaces import Sampler, Vocoder
from tts_zoo.recipe import load_recipe
from tts_zoo.registry import PluginSource, Registry, entry_point_sources

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
CLASH = "aaa-clash"  # sorts before "tts-zoo": the built-in must win by policy, not by alphabet


class ClashSampler(Sampler):
    """A sampler that takes a built-in sampler's name."""

    def __call__(self, denoise_fn, noise, sigmas, **kwargs):  # pragma: no cover - never called
        return noise


class ClashVocoder(Vocoder):
    """A vocoder that takes a built-in vocoder's name."""

    def forward(self, aligned, f0, energy, style):  # pragma: no cover - never called
        raise NotImplementedError


def clash_catalogue(module=__name__):
    entry = {"version": 1, "summary": "", "params": {}}
    return {"plugin": "clash", "components": [
        {**entry, "name": "euler", "kind": "sampler", "target": f"{module}:ClashSampler"},
        {**entry, "name": "adpm2", "kind": "sampler", "target": f"{module}:ClashSampler"},
        {**entry, "name": "istftnet", "kind": "vocoder", "target": f"{module}:ClashVocoder"},
        {**entry, "name": "hifigan", "kind": "vocoder", "target": f"{module}:ClashVocoder"},
    ]}


@pytest.fixture(scope="module")
def registries():
    installed = entry_point_sources()
    return Registry(sources=installed), Registry(sources=[*installed, PluginSource("clash", CLASH, data=clash_catalogue())])


def targets(registry, block, kind, key, out):
    """dotted key → (distribution, target) of every component in a block, sub-components included."""
    info = registry.resolve(block["component"], kind)
    out[key] = (info.distribution, info.target)
    for p in info.params:
        if p.component_kind and isinstance(block.get(p.name), dict):
            targets(registry, block[p.name], p.component_kind, f"{key}.{p.name}", out)
    return out


def recipe_targets(registry, path):
    recipe = load_recipe(path, registry=registry)  # validates every block
    out = targets(registry, recipe.model, "model", "model", {})
    for i, stage in enumerate(recipe.train.stages):
        targets(registry, stage, "stage", f"train.stages.{i}", out)
    if recipe.data.f0_labels:
        targets(registry, recipe.data.f0_labels, "pitch_extractor", "data.f0_labels", out)
    return out


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_builds_the_same_classes_with_a_clashing_plugin_installed(registries, path):
    before, after = (recipe_targets(r, path) for r in registries)
    assert after == before and {dist for dist, _ in after.values()} == {"tts-zoo"}
    assert any(key.endswith(("decoder", "sampler")) for key in after)  # the clashing kinds are in use


def test_the_qualified_name_selects_the_plugin_and_the_unqualified_the_built_in(registries):
    _, reg = registries
    assert type(reg.build_component({"component": f"{CLASH}:euler"}, "sampler")) is ClashSampler
    builtin = reg.build_component({"component": "euler"}, "sampler")
    assert type(builtin) is not ClashSampler and type(builtin).__module__.startswith("tts_zoo_styletts2.")
    assert reg.resolve("tts-zoo:euler", "sampler").target == reg.resolve("euler", "sampler").target
    assert reg.resolve(f"{CLASH}:istftnet.v1", "vocoder").target.endswith(":ClashVocoder")


def test_a_clash_warns_once_naming_the_qualified_alternative(caplog):
    reg = Registry(sources=[*entry_point_sources(), PluginSource("clash", CLASH, data=clash_catalogue())])
    with caplog.at_level(logging.WARNING, logger="tts_zoo.registry"):
        for _ in range(3):
            reg.resolve("euler", "sampler")
        reg.resolve(f"{CLASH}:euler", "sampler")
    assert caplog.messages == [f"sampler 'euler' is provided by tts-zoo, {CLASH}: 'euler' means 'tts-zoo:euler' "
                               f"(built-in first, then by package name); write '{CLASH}:euler' for another"]


def test_between_two_third_party_packages_the_first_by_name_wins_whatever_the_install_order():
    catalogue = {"components": [{"name": "vocos", "kind": "vocoder", "target": f"{__name__}:ClashVocoder"}]}
    for order in (["b-dist", "a-dist"], ["a-dist", "b-dist"]):
        reg = Registry(sources=[PluginSource(d, d, data=catalogue) for d in order])
        assert reg.resolve("vocos", "vocoder").distribution == "a-dist"


def test_an_installed_clashing_plugin_leaves_the_cli_validating_the_shipped_recipes(tmp_path):
    pkg = tmp_path / "tts_zoo_clash"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "components.py").write_text(textwrap.dedent('''
        from tts_zoo.interfaces import Sampler

        class ClashSampler(Sampler):
            """Takes a built-in name."""
            def __call__(self, denoise_fn, noise, sigmas, **kwargs):
                return noise
    '''))
    import yaml

    catalogue = clash_catalogue("tts_zoo_clash.components")
    catalogue["components"] = catalogue["components"][:2]  # the samplers
    (pkg / "registry.yaml").write_text(yaml.safe_dump(catalogue))
    info = tmp_path / "aaa_clash-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {CLASH}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tts_zoo.plugins]\nclash = tts_zoo_clash\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "tts_zoo", "validate", "recipes/libritts_istft.yaml"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"sampler 'adpm2' is provided by tts-zoo, {CLASH}" in r.stderr and f"write '{CLASH}:adpm2'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tts_zoo", "show", f"{CLASH}:euler"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "tts_zoo_clash.components:ClashSampler" in r.stdout, r.stderr
