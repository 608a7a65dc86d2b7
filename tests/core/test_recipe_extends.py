"""Issue 12, finding 6: ``extends: pkg://package/path`` builds on a recipe shipped in an installed package."""

import sys

import pytest

from tts_zoo.errors import RecipeError
from tts_zoo.recipe import load_recipe

COMMON = "name: common\ndata: {batch_size: 3, num_workers: 0}\n"
BASE = """extends: common.yaml   # relative to this file, inside the package
name: base
model:
  component: toymodel
  hidden: 8
  vocoder: {component: toyvoc, channels: 2}
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package on sys.path shipping recipes/base.yaml (which extends recipes/common.yaml)."""
    recipes = tmp_path / "site" / "tts_zoo_test_recipes" / "recipes"
    recipes.mkdir(parents=True)
    (recipes.parent / "__init__.py").write_text("")
    (recipes / "base.yaml").write_text(BASE)
    (recipes / "common.yaml").write_text(COMMON)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield recipes
    sys.modules.pop("tts_zoo_test_recipes", None)  # the next test's package lives in another directory


def recipe(tmp_path, extends, body="name: mine\nmodel:\n  vocoder: {channels: 5}\n"):
    path = tmp_path / "mine.yaml"
    path.write_text(f"# tts-zoo validate mine.yaml\nextends: {extends}\n{body}")
    return path


def test_a_recipe_extends_one_shipped_in_a_package(tmp_path, package, toy_registry):
    r = load_recipe(recipe(tmp_path, "pkg://tts_zoo_test_recipes/recipes/base.yaml"), registry=toy_registry)
    assert r.name == "mine" and r.data.batch_size == 3
    assert r.model == {"component": "toymodel", "hidden": 8, "vocoder": {"component": "toyvoc", "channels": 5}}


def test_an_error_in_the_package_recipe_names_its_file_and_line(tmp_path, package, toy_registry):
    (package / "base.yaml").write_text(BASE.replace("hidden: 8", "hidden: eight"))
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe(tmp_path, "pkg://tts_zoo_test_recipes/recipes/base.yaml"), registry=toy_registry)
    assert str(e.value).startswith(f"{package / 'base.yaml'}:5: model.hidden: expected int, got 'eight'")


@pytest.mark.parametrize("extends, message", [
    ("pkg://tts_zoo_no_such_package/recipes/base.yaml",
     "package 'tts_zoo_no_such_package' is not installed (pkg://tts_zoo_no_such_package/recipes/base.yaml); "
     "install it, or write pkg://<import package>/<path inside it>"),
    ("pkg://tts_zoo_test_recipes/recipes/nope.yaml", "no recipe 'recipes/nope.yaml' in package 'tts_zoo_test_recipes' ({root}); "
     "write pkg://tts_zoo_test_recipes/<path inside it>"),
    ("pkg://tts_zoo_test_recipes", "no recipe '' in package 'tts_zoo_test_recipes' ({root}); "
     "write pkg://tts_zoo_test_recipes/<path inside it>"),
])
def test_a_missing_package_or_file_is_one_line(tmp_path, package, toy_registry, extends, message):
    path = recipe(tmp_path, extends)
    with pytest.raises(RecipeError) as e:
        load_recipe(path, registry=toy_registry)
    assert str(e.value) == f"{path}:2: extends: " + message.format(root=package.parent)


def test_the_cli_reports_a_missing_package_with_exit_2(tmp_path, capsys):
    from tts_zoo.cli import main

    path = recipe(tmp_path, "pkg://tts_zoo_no_such_package/base.yaml")
    with pytest.raises(SystemExit) as e:
        main(["validate", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {path}:2: extends: package 'tts_zoo_no_such_package' is not installed")
    assert len(err.splitlines()) == 1
