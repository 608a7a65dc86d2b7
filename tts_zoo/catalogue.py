"""Static component catalogues: what a plugin provides, readable without importing it.

A plugin ships a ``registry.yaml`` beside its package's ``__init__.py``::

    plugin: styletts2
    kinds: {}                       # optional: new kinds, name -> {interface, summary}
    components:
      - name: istftnet
        kind: vocoder
        version: 1
        target: tts_zoo_styletts2.decoders.istftnet:ISTFTNetDecoder
        summary: iSTFTNet decoder ...
        status: ready               # or "planned": registered, not buildable yet
        params:                     # generated from the constructor: `tts-zoo catalogue --write`
          upsample_rates: {type: "list[int]", default: [10, 6], help: ...}

Parameter types are strings in a tiny grammar: Python builtins and typing forms (``int``,
``list[list[int]]``, ``Optional[float]``, ``Literal['a', 'b']``, ``dict[str, Any]``) plus
``component:KIND`` for a sub-component that the registry builds from its own block.

``params_from_class`` generates the ``params`` section from a constructor's signature and its
Google-style ``Args:`` docstring, so the signature is the single source of truth.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Optional, Union

REQUIRED = "<required>"  # the catalogue's marker for a parameter without default

_TYPE_NAMESPACE: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "Any": Any,
    "Optional": Optional,
    "Literal": Literal,
    "Union": Union,
    "None": None,
}


@dataclass(frozen=True)
class ParamSpec:
    """One constructor parameter as the catalogue records it."""

    name: str
    type: str
    default: Any = REQUIRED
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default == REQUIRED

    @property
    def component_kind(self) -> Optional[str]:
        """The kind of a sub-component parameter (``component:KIND`` or ``Optional[component:KIND]``)."""
        m = re.fullmatch(r"(?:Optional\[)?component:(\w+)\]?", self.type)
        return m.group(1) if m else None

    @property
    def optional(self) -> bool:
        return self.type.startswith("Optional[") or self.default is None

    def python_type(self) -> Any:
        """The type as a Python/typing object (sub-components become ``dict[str, Any]``)."""
        if self.component_kind:
            return Optional[dict[str, Any]] if self.optional else dict[str, Any]
        return eval(self.type, {"__builtins__": {}}, _TYPE_NAMESPACE)  # noqa: S307 - tiny trusted grammar


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component, as known from its plugin's catalogue (nothing imported)."""

    name: str
    kind: str
    target: str
    summary: str
    plugin: str
    distribution: str
    version: int = 1
    status: str = "ready"
    params: tuple[ParamSpec, ...] = field(default_factory=tuple)
    catalogue: str = ""  # where the entry was read (the plugin's registry.yaml), for error messages

    @property
    def versioned_name(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"

    @property
    def param(self) -> dict[str, ParamSpec]:
        return {p.name: p for p in self.params}


def parse_catalogue(data: Any, plugin: str, distribution: str,
                    catalogue: str = "") -> tuple[list[ComponentInfo], dict[str, dict]]:
    """Catalogue YAML data (read from the file ``catalogue``) → (components, extra kinds).
    Raises ValueError on a malformed file."""
    if not isinstance(data, dict) or not isinstance(data.get("components", []), list):
        raise ValueError("a catalogue is a mapping with a 'components' list")
    components = []
    for i, entry in enumerate(data.get("components", [])):
        try:
            params = tuple(
                ParamSpec(name=n, type=str(p["type"]), default=p.get("default", REQUIRED), help=p.get("help", ""))
                for n, p in (entry.get("params") or {}).items()
            )
            components.append(
                ComponentInfo(
                    name=entry["name"],
                    kind=entry["kind"],
                    target=entry["target"],
                    summary=entry.get("summary", ""),
                    plugin=data.get("plugin", plugin),
                    distribution=distribution,
                    version=int(entry.get("version", 1)),
                    status=entry.get("status", "ready"),
                    params=params,
                    catalogue=catalogue,
                )
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"components[{i}] is malformed ({e!r})") from None
    kinds = data.get("kinds") or {}
    return components, kinds


@lru_cache(maxsize=None)
def type_string_error(type_string: str) -> str:
    """"" when a (non-component) type string is in the catalogue's grammar, else why not.

    Only evaluates the string (no pydantic: checking every parameter of a component costs microseconds).
    """
    try:
        value = ParamSpec("_", type_string).python_type()
    except Exception as e:  # NameError ('integr'), SyntaxError, a bad subscript
        return f"{type(e).__name__}: {e}"
    if value is None or value is Any or isinstance(value, type) or typing.get_origin(value) is not None:
        return ""
    return f"{value!r} is not a type"


# --------------------------------------------------------------------------- generation from code


def type_to_string(annotation: Any, kind_of_class: typing.Callable[[type], Optional[str]]) -> str:
    """A constructor annotation → the catalogue's type string."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "Any"
    if annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = type_to_string(rest[0], kind_of_class) if len(rest) == 1 else (
            f"Union[{', '.join(type_to_string(a, kind_of_class) for a in rest)}]"
        )
        return f"Optional[{inner}]" if len(rest) < len(args) else inner
    if origin is not None:
        name = {list: "list", dict: "dict", tuple: "tuple"}.get(origin)
        if name is None and getattr(origin, "__name__", "") in ("Sequence", "MutableSequence"):
            name = "list"
        if name is None and getattr(origin, "__name__", "") in ("Mapping", "MutableMapping"):
            name = "dict"
        if name is None:
            raise TypeError(f"unsupported annotation {annotation!r}")
        return f"{name}[{', '.join(type_to_string(a, kind_of_class) for a in args)}]"
    if isinstance(annotation, type):
        if annotation in (int, float, bool, str, list, dict, tuple):
            return annotation.__name__
        kind = kind_of_class(annotation)
        if kind:
            return f"component:{kind}"
    raise TypeError(f"unsupported annotation {annotation!r} (use builtins, typing forms or a kind's interface)")


def yaml_safe(value: Any) -> Any:
    """``value`` with tuples as lists (a default as YAML and JSON write it)."""
    if isinstance(value, (tuple, list)):
        return [yaml_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_safe(v) for k, v in value.items()}
    return value


def docstring_args(doc: Optional[str]) -> dict[str, str]:
    """The one-line descriptions of a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    if not doc:
        return out
    lines = inspect.cleandoc(doc).splitlines()
    in_args, indent, current = False, None, None
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args, indent = True, None
            continue
        if not in_args:
            continue
        if not line.strip():
            continue
        this_indent = len(line) - len(line.lstrip())
        if indent is None:
            indent = this_indent
        if this_indent < indent or (this_indent == 0 and line.rstrip().endswith(":")):
            break
        m = re.match(r"\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
        if this_indent == indent and m:
            current = m.group(1).lstrip("*")
            out[current] = m.group(2).strip()
        elif current:
            out[current] = (out[current] + " " + line.strip()).strip()
    return out


def summary_of(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def params_from_class(cls: type, kind_of_class: typing.Callable[[type], Optional[str]]) -> dict[str, dict[str, Any]]:
    """The catalogue ``params`` section for ``cls`` from its ``__init__`` signature and docstrings."""
    init = cls.__init__
    hints = typing.get_type_hints(init)
    helps = {**docstring_args(cls.__doc__), **docstring_args(init.__doc__)}
    params: dict[str, dict[str, Any]] = {}
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        entry: dict[str, Any] = {"type": type_to_string(hints.get(name, p.annotation), kind_of_class)}
        if p.default is not inspect.Parameter.empty:
            entry["default"] = yaml_safe(p.default)
        if helps.get(name):
            entry["help"] = helps[name]
        params[name] = entry
    return params


def regenerate(data: dict[str, Any], load_class: typing.Callable[[str], type],
               kind_of_class: typing.Callable[[type], Optional[str]]) -> dict[str, Any]:
    """A catalogue with ``summary`` and ``params`` of every ready component regenerated from code."""
    out = dict(data)
    components = []
    for entry in data.get("components", []):
        entry = dict(entry)
        if entry.get("status", "ready") == "ready":
            cls = load_class(entry["target"])
            entry["summary"] = summary_of(cls) or entry.get("summary", "")
            entry["params"] = params_from_class(cls, kind_of_class)
        components.append(entry)
    out["components"] = components
    return out
