"""The component registry: discovery, lookup, validation and building.

Plugins register through the ``tts_zoo.plugins`` entry-point group; each entry point names a
package whose ``registry.yaml`` catalogue lists its components (see ``tts_zoo.catalogue``). Listing,
``show`` and validation read only entry-point metadata and catalogues: nothing is imported (and
torch is not loaded) until a component is built.

Names: ``istftnet`` (the latest version), ``istftnet.v1`` (a pinned version), ``tts-zoo:istftnet``
(qualified by distribution). When two distributions register the same name, an unqualified name means
the built-in one (``tts-zoo``'s), else the first distribution by name; the others are reached by their
qualified names and a one-time warning lists them, so installing a plugin never changes what an
existing recipe builds (checkpoints record qualified, pinned names: ``tts_zoo.provenance``).

Typical use::

    from tts_zoo import registry
    model = registry.build("recipes/demo.yaml")                 # a recipe path, dict or Recipe
    vocoder = registry.build_component({"component": "istftnet", "dim_in": 32})
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property, lru_cache
from typing import Any, Optional

from tts_zoo.catalogue import ComponentInfo, ParamSpec, params_from_class, summary_of, type_string_error
from tts_zoo.discovery import (  # noqa: F401 - BrokenPlugin, PluginSource, ... are part of this module's API
    CATALOGUE_FILE,
    ENTRY_POINT_GROUP,
    BrokenPlugin,
    Discovery,
    PluginSource,
    discover,
    entry_point_sources,
)
from tts_zoo.errors import (
    CatalogueError,
    ComponentBuildError,
    ComponentImportError,
    ComponentNotImplementedError,
    Location,
    RecipeError,
    RecipeIssue,
    UnknownComponentError,
    did_you_mean,
)
from tts_zoo.kinds import Kind

BUILTIN_DISTRIBUTION = "tts-zoo"  # wins a name clash (see provider_rank)

logger = logging.getLogger(__name__)

Locate = Callable[[str], Optional[Location]]


def provider_rank(distribution: str) -> tuple[bool, str]:
    """Order of the providers of one name: the built-in distribution first, then by name."""
    return (distribution != BUILTIN_DISTRIBUTION, distribution)


class Registry:
    """Components of every installed plugin. ``Registry(sources=[...])`` builds one for tests."""

    def __init__(self, sources: Optional[Iterable[PluginSource]] = None):
        self._sources = list(sources) if sources is not None else None
        self._warned: set[tuple[str, str]] = set()  # clashes already reported (kind, name)

    # ---------------------------------------------------------------- discovery

    @cached_property
    def _found(self) -> Discovery:
        return discover(self._sources if self._sources is not None else entry_point_sources())

    @property
    def components(self) -> list[ComponentInfo]:
        return self._found.components

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugins that failed to load, and catalogue entries left out (what ``list-components`` reports)."""
        return self._found.broken

    @property
    def failed(self) -> list[BrokenPlugin]:
        """Plugins whose catalogue could not be read at all (import error, bad YAML): their components are unknown."""
        return self._found.failed

    @property
    def kinds(self) -> dict[str, Kind]:
        return self._found.kinds

    @property
    def distributions(self) -> set[str]:
        return {c.distribution for c in self.components}

    @property
    def loaded_distributions(self) -> set[str]:
        """Distributions whose catalogue was read (even one that registers nothing)."""
        return self._found.loaded

    def list(self, kind: Optional[str] = None) -> list[ComponentInfo]:
        """Components sorted by kind and name (every version)."""
        if kind is not None and kind not in self.kinds:
            raise UnknownComponentError(f"unknown kind '{kind}'{did_you_mean(kind, self.kinds)}; kinds: {', '.join(self.kinds)}")
        found = [c for c in self.components if kind is None or c.kind == kind]
        return sorted(found, key=lambda c: (list(self.kinds).index(c.kind) if c.kind in self.kinds else 99, c.name, c.version))

    # ---------------------------------------------------------------- lookup

    def resolve(self, name: str, kind: Optional[str] = None) -> ComponentInfo:
        """``name`` (optionally ``dist:`` qualified and/or ``.vN`` versioned) → its catalogue entry. Several
        providers: the built-in, else the first by distribution name (``provider_rank``), warned once."""
        dist, _, bare = name.rpartition(":")
        pinned = re.fullmatch(r"(.+)\.v(\d+)", bare)
        base, version = (pinned.group(1), int(pinned.group(2))) if pinned else (bare, None)
        candidates = [
            c for c in self.components
            if c.name == base and (kind is None or c.kind == kind) and (not dist or c.distribution == dist)
        ]
        if version is not None:
            candidates = [c for c in candidates if c.version == version]
        if not candidates:
            if base in self._found.rejected:  # left out for a catalogue error: say that, not "unknown"
                raise CatalogueError(self._found.rejected[base])
            raise UnknownComponentError(self._unknown_message(base, kind, version, dist))
        by_dist: dict[str, ComponentInfo] = {}
        for c in candidates:  # the latest version per distribution
            if c.distribution not in by_dist or c.version > by_dist[c.distribution].version:
                by_dist[c.distribution] = c
        kinds_found = {c.kind for c in by_dist.values()}
        if len(kinds_found) > 1:
            raise UnknownComponentError(
                f"'{name}' names components of several kinds ({', '.join(sorted(kinds_found))}); say which kind"
            )
        providers = sorted(by_dist, key=provider_rank)
        if len(providers) > 1:
            self._warn_clash(by_dist[providers[0]], name, providers)
        return by_dist[providers[0]]

    def _warn_clash(self, chosen: ComponentInfo, name: str, providers: list[str]) -> None:
        """Once per (kind, name): which provider an unqualified name means and how to reach the others."""
        if (chosen.kind, chosen.name) in self._warned:
            return
        self._warned.add((chosen.kind, chosen.name))
        others = " or ".join(f"'{d}:{chosen.name}'" for d in providers[1:])
        logger.warning(f"{chosen.kind.replace('_', ' ')} '{chosen.name}' is provided by {', '.join(providers)}: "
                       f"'{name}' means '{providers[0]}:{chosen.name}' (built-in first, then by package name); "
                       f"write {others} for another")

    def failed_message(self, name: str, kind: Optional[str], distribution: str = "") -> str:
        """"component 'x' may come from plugin 'p' (dist) which failed to load: why" for every plugin
        that failed to load (only ``distribution``'s, when given); "" when none did."""
        failed = [b for b in self.failed if not distribution or b.distribution == distribution]
        if not failed:
            return ""
        what = f"component '{name}'" + (f" ({kind})" if kind else "")
        return f"{what} may come from " + "; or from ".join(
            f"plugin '{b.plugin}' ({b.distribution}) which failed to load: {b.error}" for b in failed)

    def _unknown_message(self, name: str, kind: Optional[str], version: Optional[int], dist: str) -> str:
        what = kind.replace("_", " ") if kind else "component"
        same_name = [c for c in self.components if c.name == name]
        if same_name and version is not None and (kind is None or any(c.kind == kind for c in same_name)):
            versions = ", ".join(f"v{c.version}" for c in same_name)
            return f"{what} '{name}' has no version v{version} (available: {versions})"
        if dist and self.failed_message(name, kind, dist):
            return self.failed_message(name, kind, dist)
        if same_name and dist:
            return f"{what} '{name}' is not provided by '{dist}' (provided by: {', '.join(sorted({c.distribution for c in same_name}))})"
        if same_name and kind and all(c.kind != kind for c in same_name):
            return f"'{name}' is a {same_name[0].kind.replace('_', ' ')}, not a {what}"
        if not same_name and not dist and self.failed:  # a plugin that failed to load is the likelier cause than a typo
            return self.failed_message(name, kind)
        names = sorted({c.name for c in self.components if kind is None or c.kind == kind})
        return f"unknown {what} '{name}'{did_you_mean(name, names)} (available: {', '.join(names) or 'none'})"

    # ---------------------------------------------------------------- import

    def load_class(self, info: ComponentInfo) -> type:
        """Import the component's class (the first moment its module, and torch, are imported)."""
        if info.plugin == "(import path)":  # an unregistered class the user opted in to (raw_component)
            return _import_target(info.target)
        if info.status != "ready":
            raise ComponentNotImplementedError(
                f"{info.kind.replace('_', ' ')} '{info.name}' ({info.plugin}) is registered but not implemented yet"
            )
        cls = _import_target(info.target)
        interface = self.kinds[info.kind].interface if info.kind in self.kinds else ""
        if interface and not issubclass(cls, _import_target(interface)):
            raise ComponentImportError(f"{info.target} does not implement {interface} (kind '{info.kind}')")
        return cls

    def kind_of_class(self, cls: type) -> Optional[str]:
        """The most specific kind whose interface ``cls`` implements (None if none)."""
        best: Optional[tuple[str, type]] = None
        for kind in self.kinds.values():
            if not kind.interface:
                continue
            iface = _import_target(kind.interface)
            if issubclass(cls, iface) and (best is None or issubclass(iface, best[1])):
                best = (kind.name, iface)
        return best[0] if best else None

    def raw_component(self, target: str) -> ComponentInfo:
        """An unregistered class given as ``module:Class`` (only when the user opts in)."""
        cls = _import_target(target)
        kind = self.kind_of_class(cls) or "unknown"
        params = tuple(ParamSpec(name=n, **p) for n, p in params_from_class(cls, self.kind_of_class).items())
        return ComponentInfo(name=target, kind=kind, target=target, summary=summary_of(cls), plugin="(import path)",
                             distribution="(import path)", params=params)

    # ---------------------------------------------------------------- validation

    def check_component(
        self,
        spec: Any,
        key: str,
        kind: Optional[str],
        issues: list[RecipeIssue],
        locate: Locate = lambda key: None,
        allow_import_paths: bool = False,
    ) -> Optional[dict[str, Any]]:
        """Validate one ``{component: name, **params}`` block (recursively); append every problem to
        ``issues``. Returns the block with parameter values coerced to their declared types."""
        what = kind.replace("_", " ") if kind else "component"
        if not isinstance(spec, Mapping) or "component" not in spec:
            issues.append(RecipeIssue(locate(key), key, f"expected a mapping with a 'component' key naming a {what}"))
            return None
        name = spec["component"]
        ckey = f"{key}.component" if key else "component"
        if not isinstance(name, str):
            issues.append(RecipeIssue(locate(ckey), ckey, f"expected a {what} name (a string), got {name!r}"))
            return None
        try:
            info = self.info_for(name, kind, allow_import_paths)
        except (UnknownComponentError, CatalogueError, ImportError, AttributeError, ValueError) as e:
            issues.append(RecipeIssue(locate(ckey), ckey, str(e)))
            return None
        problem = self._catalogue_problem(info)
        if problem:
            issues.append(RecipeIssue(locate(ckey), ckey, problem))
            return None
        checked: dict[str, Any] = {"component": name}
        declared = info.param
        for pkey, value in spec.items():
            if pkey == "component":
                continue
            dotted = f"{key}.{pkey}" if key else pkey
            p = declared.get(pkey)
            if p is None:
                hint = did_you_mean(pkey, declared)
                valid = ", ".join(declared) or "none"
                issues.append(RecipeIssue(locate(dotted), dotted, f"unknown key for {what} '{info.name}'{hint} (valid keys: {valid})"))
                continue
            if p.component_kind:
                if value is None and p.optional:
                    checked[pkey] = None
                else:
                    checked[pkey] = self.check_component(value, dotted, p.component_kind, issues, locate, allow_import_paths)
                continue
            ok, coerced, message = _check_value(p, value, info)
            if ok:
                checked[pkey] = coerced
            else:
                issues.append(RecipeIssue(locate(dotted), dotted, message))
        for p in info.params:
            if p.required and p.name not in spec:
                dotted = f"{key}.{p.name}" if key else p.name
                issues.append(RecipeIssue(locate(key), dotted, f"missing required key '{p.name}' ({p.type}) for {what} '{info.name}'"))
        return checked

    def _catalogue_problem(self, info: ComponentInfo) -> str:
        """Why ``info``'s catalogue entry cannot validate a block ("" when it can): a parameter type
        outside the grammar or naming an unknown kind. One line naming the plugin's file."""
        for p in info.params:
            kind = p.component_kind
            if kind:
                why = "" if kind in self.kinds else f"unknown kind '{kind}'{did_you_mean(kind, self.kinds)}"
            else:
                why = type_string_error(p.type)
            if why:
                return _bad_type_message(info, p, why)
        return ""

    def info_for(self, name: str, kind: Optional[str], allow_import_paths: bool = False) -> ComponentInfo:
        """A recipe's component name (registered, qualified, pinned, or ``module:Class`` when allowed) → its entry."""
        prefix, _, bare = name.rpartition(":")
        if prefix and prefix not in self.distributions:  # "package.module:Class", not "dist:name"
            failed = self.failed_message(bare, kind, prefix)  # "dist:name" of a plugin that failed to load
            if failed:
                raise UnknownComponentError(failed)
            known = self.loaded_distributions | {b.distribution for b in self.failed}  # for the did-you-mean
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", prefix):  # "tts-zoo-vocos:vocos": a package name
                raise UnknownComponentError(f"'{name}': no installed package '{prefix}' registers components"
                                            f"{did_you_mean(prefix, known)} (pip install {prefix})")
            if not allow_import_paths:
                # "mypkg:name" reads as an import path, but may be meant as a package's qualified name
                raise UnknownComponentError(
                    f"'{name}' is an import path; recipes name registered components "
                    "(register it in a plugin, or opt in with --allow-import-paths / allow_import_paths=True); "
                    f"as a qualified name: no installed package '{prefix}' registers components{did_you_mean(prefix, known)}"
                )
            return self.raw_component(name)
        return self.resolve(name, kind)

    def validate_component(self, spec: Any, kind: Optional[str] = None, allow_import_paths: bool = False) -> dict[str, Any]:
        issues: list[RecipeIssue] = []
        checked = self.check_component(spec, "", kind, issues, allow_import_paths=allow_import_paths)
        if issues:
            raise RecipeError(issues)
        assert checked is not None
        return checked

    # ---------------------------------------------------------------- building

    def build_component(self, spec: Mapping[str, Any], kind: Optional[str] = None, allow_import_paths: bool = False,
                        key: str = "") -> Any:
        """Validate ``{component: name, **params}`` and build it (sub-components first). ``key`` is the
        block's dotted key in its recipe (``model``), which a constructor error names."""
        return self._instantiate(self.validate_component(spec, kind, allow_import_paths), kind, allow_import_paths, key)

    def _instantiate(self, checked: Mapping[str, Any], kind: Optional[str], allow_import_paths: bool,
                     key: str = "") -> Any:
        info = self.info_for(checked["component"], kind, allow_import_paths)
        cls = self.load_class(info)
        kwargs = {}
        for pkey, value in checked.items():
            if pkey == "component":
                continue
            p = info.param[pkey]
            if p.component_kind and value is not None:
                value = self._instantiate(value, p.component_kind, allow_import_paths, f"{key}.{pkey}" if key else pkey)
            kwargs[pkey] = value
        try:
            return cls(**kwargs)
        except ComponentBuildError:  # a constructor that builds components itself: already named
            raise
        except (ValueError, TypeError) as e:  # arguments that validate one by one but not together
            where = f"{key}: " if key else ""
            detail = " ".join(str(e).split())  # one line
            raise ComponentBuildError(f"{where}{info.kind.replace('_', ' ')} '{checked['component']}' ({info.target}) "
                                      f"rejected its arguments: {type(e).__name__}: {detail}") from e

    def build(self, recipe: Any, overrides: Iterable[str] = (), allow_import_paths: bool = False) -> Any:
        """Build the model of a recipe (a path, a dict or a validated ``Recipe``), or rebuild a model
        from a tts-zoo checkpoint directory (weights loaded, eval mode)."""
        from tts_zoo.recipe import Recipe, load_recipe

        if isinstance(recipe, (str, os.PathLike)):
            from tts_zoo.checkpoint import is_checkpoint, load_model

            if is_checkpoint(recipe):
                return load_model(recipe, for_inference=False, registry=self)
        if not isinstance(recipe, Recipe):
            recipe = load_recipe(recipe, overrides=overrides, registry=self, allow_import_paths=allow_import_paths)
        allow = allow_import_paths or recipe.allow_import_paths
        try:
            return self.build_component(recipe.model, "model", allow, key="model")
        except ComponentBuildError as e:
            if not recipe.source or recipe.source == "<recipe>":
                raise
            raise ComponentBuildError(f"{recipe.source}: {e}") from e.__cause__


def _bad_type_message(info: ComponentInfo, p: ParamSpec, why: str) -> str:
    return (f"{info.catalogue or info.plugin}: component '{info.name}' ({info.kind}), parameter '{p.name}': "
            f"invalid type '{p.type}' ({why}); the plugin ({info.distribution}) should regenerate its params "
            "with `tts-zoo catalogue`")


def _check_value(p: ParamSpec, value: Any, info: ComponentInfo) -> tuple[bool, Any, str]:
    """(ok, coerced value, message) for a plain parameter value."""
    import pydantic

    try:
        adapter = _adapter(p.type)
    except Exception as e:  # pydantic cannot make a schema of it: the catalogue's fault, not the recipe's
        return False, None, _bad_type_message(info, p, f"{type(e).__name__}: {' '.join(str(e).split())}")
    try:
        return True, adapter.validate_python(value), ""
    except pydantic.ValidationError as e:
        detail = e.errors()[0]
        where = "".join(f"[{x}]" for x in detail["loc"]) if detail["loc"] else ""
        return False, None, f"expected {p.type}, got {value!r}{(' (at ' + where + ')') if where else ''}: {detail['msg'].lower()}"


@lru_cache(maxsize=None)
def _adapter(type_string: str) -> Any:
    import pydantic

    return pydantic.TypeAdapter(ParamSpec("_", type_string).python_type())


@lru_cache(maxsize=None)
def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ComponentImportError(f"cannot import '{module}' for {target}: {e}") from e
    for part in attr.split(".") if attr else []:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ComponentImportError(f"'{module}' has no attribute '{attr}' ({target})") from None
    return obj


# The process-wide registry of installed plugins, and module-level shortcuts to it.
default = Registry()


def build(recipe: Any, overrides: Iterable[str] = (), allow_import_paths: bool = False) -> Any:
    """Build a recipe's model: ``registry.build("recipes/demo.yaml")``."""
    return default.build(recipe, overrides, allow_import_paths)


def build_component(spec: Mapping[str, Any], kind: Optional[str] = None, allow_import_paths: bool = False,
                    key: str = "") -> Any:
    """Build one component from ``{component: name, **params}`` (``key``: its dotted recipe key, for errors)."""
    return default.build_component(spec, kind, allow_import_paths, key)


def resolve(name: str, kind: Optional[str] = None) -> ComponentInfo:
    return default.resolve(name, kind)


def list_components(kind: Optional[str] = None) -> list[ComponentInfo]:
    return default.list(kind)
