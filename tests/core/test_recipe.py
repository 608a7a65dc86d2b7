import textwrap

import pytest

from tts_zoo.errors import RecipeError
from tts_zoo.recipe import dump_recipe, load_recipe


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


BASE = """
    # tts-zoo train base.yaml
    name: base
    model:
      component: toymodel
      hidden: 16
      vocoder:
        component: toyvoc
        channels: 4
        rates: [10, 6]
    data:
      batch_size: 4
    train:
      max_steps: 100
"""


def test_extends_merges_and_overrides_apply(tmp_path, toy_registry):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", """
        extends: base.yaml
        name: child
        model:
          vocoder:
            channels: 8
    """)
    r = load_recipe(child, ["train.max_steps=10", "model.vocoder.mode=linear"], registry=toy_registry)
    assert r.name == "child" and r.train.max_steps == 10 and r.data.batch_size == 4
    assert r.model["vocoder"] == {"component": "toyvoc", "channels": 8, "rates": [10, 6], "mode": "linear"}
    assert "name: child" in dump_recipe(r)


def test_switching_component_in_a_child_drops_the_base_keys(tmp_path, toy_registry):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", """
        extends: base.yaml
        model:
          vocoder: {component: istftnet}
    """)
    assert load_recipe(child, registry=toy_registry).model["vocoder"] == {"component": "istftnet"}


def test_misspelled_component_and_key_report_file_line_and_suggestion(tmp_path, toy_registry):
    bad = write(tmp_path, "bad.yaml", """
        name: bad
        model:
          component: toymodel
          hiden: 16
          vocoder:
            component: istftnett
        data:
          batch_sise: 4
        train:
          max_steps: -3
    """)
    with pytest.raises(RecipeError) as e:
        load_recipe(bad, registry=toy_registry)
    lines = str(e.value).splitlines()
    assert any(f"{bad}:4: model.hiden: unknown key for model 'toymodel'; did you mean 'hidden'?" in l for l in lines)
    assert any(f"{bad}:6: model.vocoder.component: unknown vocoder 'istftnett'; did you mean 'istftnet'?" in l for l in lines)
    assert any(f"{bad}:8: data.batch_sise: unknown key; did you mean 'batch_size'?" in l for l in lines)
    assert any(f"{bad}:10: train.max_steps: input should be greater than 0" in l for l in lines)
    assert any(f"{bad}:2: model.hidden: missing required key 'hidden'" in l for l in lines)
    assert len(lines) == 5


def test_override_errors_name_the_override(tmp_path, toy_registry):
    p = write(tmp_path, "base.yaml", BASE)
    with pytest.raises(RecipeError, match=r"override 'train.max_step=5': train.max_step: unknown key; did you mean 'max_steps'\?"):
        load_recipe(p, ["train.max_step=5"], registry=toy_registry)
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(p, ["train.max_steps"], registry=toy_registry)


def test_invalid_yaml_and_missing_file(tmp_path, toy_registry):
    p = write(tmp_path, "broken.yaml", "name: x\nmodel: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml:\d+: invalid YAML"):
        load_recipe(p, registry=toy_registry)
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml", registry=toy_registry)


def test_circular_extends(tmp_path, toy_registry):
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(RecipeError, match="circular 'extends' chain"):
        load_recipe(b, registry=toy_registry)


def test_registry_build_from_recipe_dict(toy_registry):
    model = toy_registry.build({"name": "x", "model": {"component": "toymodel", "hidden": 2, "vocoder": {"component": "toyvoc"}}})
    assert model.hidden == 2 and model.vocoder.rates == [10, 6]


def test_the_removed_synthesis_sampler_key_says_where_the_sampler_is_set(tmp_path, toy_registry):
    r = write(tmp_path, "r.yaml", BASE + "    synthesis:\n      alpha: 0.5\n      sampler: euler_ancestrall\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(r, registry=toy_registry)
    assert str(e.value) == f"{r}:16: synthesis.sampler was removed: set model.sampler: {{component: NAME}}"
    with pytest.raises(RecipeError, match="^override 'synthesis.sampler=adpm2': synthesis.sampler was removed"):
        load_recipe(write(tmp_path, "ok.yaml", BASE), ["synthesis.sampler=adpm2"], registry=toy_registry)
    assert "sampler" not in dump_recipe(load_recipe(write(tmp_path, "ok.yaml", BASE), registry=toy_registry))


def test_a_checkpoint_stored_with_the_removed_key_still_loads(tmp_path, toy_registry):
    import yaml

    from tts_zoo.checkpoint import load_model, save_checkpoint

    recipe = load_recipe(write(tmp_path, "base.yaml", BASE), registry=toy_registry)
    model = toy_registry.build(recipe)
    stored = yaml.safe_load(dump_recipe(recipe))
    stored["synthesis"]["sampler"] = "adpm2"  # what every checkpoint written before the removal holds
    save_checkpoint(tmp_path / "old", model.state_dict(), yaml.safe_dump(stored), {})
    loaded = load_model(tmp_path / "old", registry=toy_registry)
    assert loaded.hidden == 16 and loaded.recipe.synthesis.alpha == stored["synthesis"]["alpha"]
    assert "sampler" not in loaded.recipe.synthesis.model_dump()
