import re

import pytest
import yaml

from tts_zoo.errors import (CatalogueError, ComponentBuildError, ComponentImportError, ComponentNotImplementedError,
                            RecipeError, UnknownComponentError)
from tts_zoo.registry import PluginSource, Registry
from tests.core.conftest import TOY, toy_catalogue
from tests.core.toy_components import ToyModel, ToyVocoder


def test_plain_name_resolves_to_latest_version_and_versioned_name_pins(toy_registry):
    assert toy_registry.resolve("toyvoc").version == 2
    assert toy_registry.resolve("toyvoc.v1").version == 1
    assert toy_registry.resolve("toy-dist:toyvoc").distribution == "toy-dist"
    with pytest.raises(UnknownComponentError, match=r"no version v7 \(available: v1, v2\)"):
        toy_registry.resolve("toyvoc.v7")


def test_unknown_name_suggests_the_closest_and_lists_available(toy_registry):
    with pytest.raises(UnknownComponentError) as e:
        toy_registry.resolve("istftnett", "vocoder")
    assert "did you mean 'istftnet'?" in str(e.value)
    assert "available: fake, istftnet, later, toyvoc" in str(e.value)


def test_wrong_kind_is_named(toy_registry):
    with pytest.raises(UnknownComponentError, match="'toymodel' is a model, not a vocoder"):
        toy_registry.resolve("toymodel", "vocoder")


def test_clash_between_distributions_resolves_to_the_first_by_name_and_qualified_name_selects():
    # The clash policy (built-in first, then by distribution name) is tested in test_clash.py.
    reg = Registry(sources=[
        PluginSource("b", "dist-b", data=toy_catalogue()),
        PluginSource("a", "dist-a", data=toy_catalogue()),
    ])
    assert reg.resolve("istftnet", "vocoder").distribution == "dist-a"
    assert reg.resolve("dist-b:istftnet", "vocoder").distribution == "dist-b"


def test_broken_plugin_is_reported_and_the_rest_keeps_working():
    reg = Registry(sources=[
        PluginSource("bad", "bad-dist", module="no_such_module_for_tts_zoo"),
        PluginSource("bad2", "bad2-dist", data={"components": [{"name": "x"}]}),
        PluginSource("toy", "toy-dist", data=toy_catalogue()),
    ])
    assert {b.plugin for b in reg.broken} == {"bad", "bad2"}
    assert "ModuleNotFoundError" in [b for b in reg.broken if b.plugin == "bad"][0].error
    assert reg.resolve("toyvoc").name == "toyvoc"


def test_build_nested_components_with_coerced_values(toy_registry):
    model = toy_registry.build_component(
        {"component": "toymodel", "hidden": 8, "vocoder": {"component": "toyvoc.v1", "channels": 3, "rates": [2, 3]}}
    )
    assert isinstance(model, ToyModel) and isinstance(model.vocoder, ToyVocoder)
    assert model.hidden == 8 and model.vocoder.channels == 3 and model.vocoder.rates == [2, 3] and model.post is None


def test_every_problem_of_a_block_is_reported_at_once(toy_registry):
    with pytest.raises(RecipeError) as e:
        toy_registry.build_component(
            {"component": "toymodel", "vocoder": {"component": "toyvoc", "chanels": 3, "rates": "ten", "mode": "cubic"}}
        )
    lines = str(e.value).splitlines()
    assert len(lines) == 4, lines
    text = str(e.value)
    assert "vocoder.chanels: unknown key for vocoder 'toyvoc'; did you mean 'channels'?" in text
    assert "vocoder.rates: expected list[int], got 'ten'" in text
    assert "vocoder.mode: expected Literal['nearest', 'linear'], got 'cubic'" in text
    assert "hidden: missing required key 'hidden' (int)" in text


def test_planned_component_validates_but_does_not_build(toy_registry):
    toy_registry.validate_component({"component": "later"}, "vocoder")
    with pytest.raises(ComponentNotImplementedError, match="registered but not implemented yet"):
        toy_registry.build_component({"component": "later"}, "vocoder")


def test_a_target_that_does_not_implement_its_kind_is_refused(toy_registry):
    with pytest.raises(ComponentImportError, match="does not implement tts_zoo.interfaces:Vocoder"):
        toy_registry.build_component({"component": "fake"}, "vocoder")


def test_import_paths_need_an_explicit_opt_in(toy_registry):
    spec = {"component": "tests.core.toy_components:ToyVocoder", "channels": 2}
    with pytest.raises(RecipeError, match="is an import path; recipes name registered components"):
        toy_registry.build_component(spec, "vocoder")
    voc = toy_registry.build_component(spec, "vocoder", allow_import_paths=True)
    assert isinstance(voc, ToyVocoder) and voc.channels == 2


def test_a_misspelt_package_prefix_is_also_answered_as_a_qualified_name():
    from tts_zoo import registry

    with pytest.raises(RecipeError, match="no installed package 'tts_zo' registers components; did you mean 'tts-zoo'"):
        registry.default.build_component({"component": "tts_zo:euler"}, "sampler")


def test_unknown_kind_in_listing(toy_registry):
    with pytest.raises(UnknownComponentError, match="did you mean 'vocoder'"):
        toy_registry.list("vocoders")
    assert [c.name for c in toy_registry.list("model")] == ["toymodel"]


# ---------------------------------------------------------------- catalogue errors (issue 12, finding 4)


def catalogue_package(tmp_path, monkeypatch, name, catalogue):
    """A package ``name`` on sys.path holding ``registry.yaml`` = ``catalogue`` (a dict), as a plugin ships it."""
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "registry.yaml").write_text(yaml.safe_dump(catalogue, sort_keys=False))
    monkeypatch.syspath_prepend(str(tmp_path))
    return pkg / "registry.yaml"


def test_a_bad_parameter_type_in_a_catalogue_is_one_issue_naming_the_file_component_and_type(tmp_path, monkeypatch):
    catalogue = toy_catalogue()
    params = catalogue["components"][0]["params"]  # toyvoc v1 (the other vocoders share this dict)
    catalogue["components"][0]["params"] = {**params, "channels": {**params["channels"], "type": "integr"}}
    path = catalogue_package(tmp_path, monkeypatch, "tts_zoo_test_badtype", catalogue)
    reg = Registry(sources=[PluginSource("toy", "toy-dist", module="tts_zoo_test_badtype")])
    with pytest.raises(RecipeError) as e:
        reg.validate_component({"component": "toyvoc.v1", "channels": 3}, "vocoder")
    assert len(e.value.issues) == 1
    message = str(e.value)
    assert message.startswith(f"component: {path}: component 'toyvoc' (vocoder), parameter 'channels': invalid type 'integr'")
    assert "NameError" in message and "\n" not in message
    # An unset parameter with a bad type is found as well, and so is a sub-component of an unknown kind.
    with pytest.raises(RecipeError, match="invalid type 'integr'"):
        reg.validate_component({"component": "toyvoc.v1"}, "vocoder")
    params = catalogue["components"][3]["params"]  # toymodel
    catalogue["components"][3]["params"] = {**params, "vocoder": {**params["vocoder"], "type": "component:vocodr"}}
    path.write_text(yaml.safe_dump(catalogue))
    reg = Registry(sources=[PluginSource("toy", "toy-dist", module="tts_zoo_test_badtype")])
    with pytest.raises(RecipeError, match=r"parameter 'vocoder': invalid type 'component:vocodr' \(unknown kind 'vocodr'; did you mean 'vocoder'\?\)"):
        reg.validate_component({"component": "toymodel", "hidden": 1, "vocoder": {"component": "toyvoc"}})
    assert reg.validate_component({"component": "toyvoc"}, "vocoder") == {"component": "toyvoc"}  # the rest works


def test_a_kind_typo_leaves_the_entry_out_and_names_the_file_with_a_suggestion(tmp_path, monkeypatch):
    catalogue = toy_catalogue(extra=[{"name": "vocos", "kind": "vocodr", "target": f"{TOY}:ToyVocoder", "params": {}}])
    path = catalogue_package(tmp_path, monkeypatch, "tts_zoo_test_badkind", catalogue)
    reg = Registry(sources=[PluginSource("toy", "toy-dist", module="tts_zoo_test_badkind")])
    assert "vocodr" not in reg.kinds and all(c.name != "vocos" for c in reg.components)  # no new kind
    expected = f"{path}: component 'vocos' has unknown kind 'vocodr'; did you mean 'vocoder'?"
    assert [b.error.startswith(expected) for b in reg.broken] == [True]  # what list-components shows
    with pytest.raises(CatalogueError, match=re.escape(expected)):
        reg.resolve("vocos", "vocoder")
    with pytest.raises(RecipeError) as e:  # in a recipe: one issue at the block's key
        reg.validate_component({"component": "toymodel", "hidden": 1, "vocoder": {"component": "vocos"}}, "model")
    assert str(e.value).startswith(f"vocoder.component: {expected}") and len(e.value.issues) == 1
    assert reg.resolve("toyvoc").name == "toyvoc"  # the plugin's other components still work


def test_a_kind_declared_by_a_plugin_is_usable_by_it_and_by_other_plugins():
    declares = {"plugin": "vad", "kinds": {"vad": {"interface": "", "summary": "voice activity"}},
                "components": [{"name": "energy_vad", "kind": "vad", "target": f"{TOY}:ToyVocoder", "params": {}}]}
    uses = {"plugin": "more", "components": [{"name": "other_vad", "kind": "vad", "target": f"{TOY}:ToyVocoder", "params": {}}]}
    reg = Registry(sources=[PluginSource("more", "more-dist", data=uses), PluginSource("vad", "vad-dist", data=declares)])
    assert reg.broken == [] and reg.kinds["vad"].summary == "voice activity"
    assert [c.name for c in reg.list("vad")] == ["energy_vad", "other_vad"]
    assert reg.resolve("other_vad", "vad").distribution == "more-dist"


def test_a_constructor_error_names_the_recipe_key_and_the_component(toy_registry, tmp_path):
    spec = {"component": "toymodel", "hidden": 1, "vocoder": {"component": "toyvoc", "channels": 0}}
    toy_registry.validate_component(spec, "model")  # each value is a valid int: only the constructor can tell
    with pytest.raises(ComponentBuildError) as e:
        toy_registry.build_component(spec, "model", key="model")
    assert str(e.value) == ("model.vocoder: vocoder 'toyvoc' (tests.core.toy_components:ToyVocoder) rejected its "
                            "arguments: ValueError: channels must be positive, got 0")
    assert isinstance(e.value.__cause__, ValueError) and e.value.exit_code == 2
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {component: toymodel, hidden: 1, post: {component: toyvoc, channels: -1},\n"
                      "        vocoder: {component: toyvoc}}\n")
    with pytest.raises(ComponentBuildError, match=rf"^{re.escape(str(recipe))}: model\.post: vocoder 'toyvoc' .*got -1$"):
        toy_registry.build(recipe)
    # A catalogue out of step with its constructor (a TypeError) reads the same way.
    stale = {"name": "stale", "kind": "vocoder", "target": f"{TOY}:ToyVocoder", "params": {"gain": {"type": "float"}}}
    reg = Registry(sources=[PluginSource("toy", "toy-dist", data=toy_catalogue(extra=[stale]))])
    with pytest.raises(ComponentBuildError, match=r"^vocoder 'stale' .*TypeError: .*unexpected keyword argument 'gain'$"):
        reg.build_component({"component": "stale", "gain": 2}, "vocoder")
