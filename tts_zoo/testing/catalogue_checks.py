"""Checks every kind gets: the recipe keys are the constructor's arguments, and the plugin's
``registry.yaml`` entry is what ``tts-zoo catalogue`` would generate from the code today.
"""

from __future__ import annotations

import inspect

import torch

from tts_zoo.catalogue import REQUIRED, ComponentInfo, params_from_class, summary_of
from tts_zoo.testing.subject import Subject


def _entry(s: Subject) -> ComponentInfo:
    target = f"{s.cls.__module__}:{s.cls.__qualname__}"
    assert s.info is not None, (
        f"{target} is in no installed plugin's registry.yaml: add an entry (name, kind, target) to your "
        "plugin's catalogue and run `tts-zoo catalogue`")
    return s.info


def check_recipe_kwargs(s: Subject) -> None:
    """The catalogue's params (what a recipe may say) are exactly the constructor's keyword
    parameters, with the same required ones and defaults; no ``**kwargs`` config bag."""
    info = _entry(s)
    init = s.cls.__init__
    inherited = init in (object.__init__, torch.nn.Module.__init__)  # no constructor of its own: no arguments
    bags = [] if inherited else [str(p) for p in inspect.signature(init).parameters.values()
                                 if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert not bags, f"{info.target}.__init__ takes {bags[0]}: recipe keys must be named, annotated parameters"
    code = {name: p.get("default", REQUIRED) for name, p in params_from_class(s.cls, s.registry.kind_of_class).items()}
    listed = {p.name: p.default for p in info.params}
    missing, extra = sorted(set(code) - set(listed)), sorted(set(listed) - set(code))
    assert not missing and not extra, (
        f"{info.catalogue or info.plugin}: '{info.name}' params differ from {info.target}.__init__ "
        f"(not in the catalogue: {missing}; not in the constructor: {extra}); run `tts-zoo catalogue`")
    for name, default in code.items():
        assert listed[name] == default, (
            f"{info.catalogue or info.plugin}: '{info.name}' parameter '{name}': the catalogue says "
            f"{'required' if listed[name] == REQUIRED else f'default {listed[name]!r}'}, the constructor "
            f"{'requires it' if default == REQUIRED else f'defaults to {default!r}'}; run `tts-zoo catalogue`")


def check_catalogue_in_sync(s: Subject) -> None:
    """The entry's kind, summary and params (types, defaults, help, order) match the code."""
    info = _entry(s)
    where = f"{info.catalogue or info.plugin}: '{info.name}'"
    kind = s.registry.kind_of_class(s.cls)
    assert kind == info.kind, f"{where} is listed as a {info.kind} but {info.target} implements {kind}"
    assert not inspect.isabstract(s.cls), f"{info.target} is abstract (a method of its interface is missing)"
    assert summary_of(s.cls), f"{info.target} has no docstring (its first line is the catalogue's summary)"
    assert info.summary == summary_of(s.cls), f"{where}: summary differs from the class docstring; run `tts-zoo catalogue`"
    code = params_from_class(s.cls, s.registry.kind_of_class)
    listed = {p.name: {"type": p.type, **({} if p.required else {"default": p.default}), **({"help": p.help} if p.help else {})}
              for p in info.params}
    for name, spec in code.items():
        assert name in listed and listed[name] == spec, (
            f"{where} parameter '{name}': catalogue {listed.get(name)} != code {spec}; run `tts-zoo catalogue`")
    assert list(listed) == list(code), f"{where}: params {list(listed)} != constructor order {list(code)}"
    undocumented = [n for n, spec in code.items() if not spec.get("help")]
    assert not undocumented, f"{info.target}: parameters without a line in the docstring's Args: section: {undocumented}"
