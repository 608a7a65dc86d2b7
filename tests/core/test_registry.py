import pytest

from tts_zoo.errors import ComponentImportError, ComponentNotImplementedError, RecipeError, UnknownComponentError
from tts_zoo.registry import PluginSource, Registry
from tests.core.conftest import toy_catalogue
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


def test_clash_between_distributions_names_both_and_qualified_name_resolves():
    reg = Registry(sources=[
        PluginSource("a", "dist-a", data=toy_catalogue()),
        PluginSource("b", "dist-b", data=toy_catalogue()),
    ])
    with pytest.raises(UnknownComponentError, match="provided by both 'dist-a' and 'dist-b'; write 'dist-a:istftnet' or 'dist-b:istftnet'"):
        reg.resolve("istftnet", "vocoder")
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


def test_unknown_kind_in_listing(toy_registry):
    with pytest.raises(UnknownComponentError, match="did you mean 'vocoder'"):
        toy_registry.list("vocoders")
    assert [c.name for c in toy_registry.list("model")] == ["toymodel"]
