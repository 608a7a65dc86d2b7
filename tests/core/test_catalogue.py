"""The built-in catalogue is complete, importable and in sync with the code."""

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tts_zoo_styletts2
from tts_zoo.catalogue import docstring_args, type_to_string
from tts_zoo.registry import Registry, _import_target
from typing import Literal, Optional

REPO = Path(__file__).resolve().parents[2]
registry = Registry()
BUILTIN = [c for c in registry.components if c.plugin == "styletts2"]


@pytest.mark.parametrize("info", BUILTIN, ids=[f"{c.kind}/{c.name}" for c in BUILTIN])
def test_every_catalogue_entry_imports_and_implements_its_kind(info):
    assert info.status == "ready", f"{info.name} is still planned"
    cls = registry.load_class(info)
    assert registry.kind_of_class(cls) == info.kind
    assert not inspect.isabstract(cls), f"{info.target} is abstract"
    assert info.summary, f"{info.target} has no docstring summary"
    undocumented = [p.name for p in info.params if not p.help]
    assert not undocumented, f"{info.target}: parameters without a description: {undocumented}"


def test_every_component_class_of_the_plugin_is_registered():
    targets = {c.target for c in BUILTIN}
    found = set()
    for mod in pkgutil.walk_packages(tts_zoo_styletts2.__path__, "tts_zoo_styletts2."):
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
                    and not inspect.isabstract(obj) and registry.kind_of_class(obj)):
                found.add(f"{module.__name__}:{name}")
    # A shared base of registered components (e.g. the decoder body) is not a component itself.
    bases = {f"{b.__module__}:{b.__qualname__}" for t in targets for b in _import_target(t).__mro__[1:]}
    missing = found - targets - bases
    assert not missing, f"component classes missing from registry.yaml: {sorted(missing)}"


def test_catalogue_is_in_sync_with_the_constructors():
    r = subprocess.run([sys.executable, "-m", "tts_zoo", "catalogue", "--check"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_type_strings_and_docstring_args():
    kind = Registry(sources=[]).kind_of_class
    from tts_zoo.interfaces import StyleEncoder, Vocoder

    assert type_to_string(list[list[int]], kind) == "list[list[int]]"
    assert type_to_string(Optional[float], kind) == "Optional[float]"
    assert type_to_string(Literal["a", "b"], kind) == "Literal['a', 'b']"
    assert type_to_string(Optional[Vocoder], kind) == "Optional[component:vocoder]"
    assert type_to_string(StyleEncoder, kind) == "component:style_model"
    doc = """Summary.

    Args:
        alpha: First line
            continues here.
        beta (int): Second.

    Returns:
        nothing
    """
    assert docstring_args(doc) == {"alpha": "First line continues here.", "beta": "Second."}
