"""Plugin discovery: entry points → catalogues → components, kinds and the plugins that failed.

Each entry point of the group ``tts_zoo.plugins`` names a package whose ``registry.yaml`` is the
plugin's catalogue. Reading it imports the package (whose ``__init__`` stays light) and nothing else.
A plugin that fails to load (import error, bad YAML, malformed catalogue) is recorded with a one-line
reason, so that listing shows it and every lookup of a name it may provide can say so.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from tts_zoo.catalogue import ComponentInfo, parse_catalogue
from tts_zoo.errors import did_you_mean
from tts_zoo.kinds import CORE_KINDS, Kind

ENTRY_POINT_GROUP = "tts_zoo.plugins"
CATALOGUE_FILE = "registry.yaml"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~8x faster start-up


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to load (or a catalogue entry left out); shown by ``list-components``, never fatal."""

    plugin: str
    distribution: str
    error: str


@dataclass(frozen=True)
class PluginSource:
    """Where a catalogue comes from: an entry point (``module``) or, for tests, ready ``data``."""

    plugin: str
    distribution: str
    module: Optional[str] = None
    data: Optional[Mapping[str, Any]] = None

    def read(self) -> Any:
        if self.data is not None:
            return self.data
        text = importlib.resources.files(self.module).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
        return yaml.load(text, Loader=_YAML_LOADER)

    @property
    def where(self) -> str:
        """The catalogue file, as error messages name it (call after a successful ``read``)."""
        if self.module is None:
            return f"the catalogue of plugin '{self.plugin}' ({self.distribution})"
        return str(importlib.resources.files(self.module).joinpath(CATALOGUE_FILE))


def entry_point_sources() -> list[PluginSource]:
    """Every installed plugin, from entry-point metadata (imports nothing but the plugin package)."""
    seen, sources = set(), []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        if (ep.name, ep.value, dist) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value, dist))
        sources.append(PluginSource(plugin=ep.name, distribution=dist, module=ep.value.split(":")[0]))
    return sources


@dataclass
class Discovery:
    """What reading every plugin's catalogue found."""

    kinds: dict[str, Kind]
    components: list[ComponentInfo] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)  # failed plugins + rejected entries
    failed: list[BrokenPlugin] = field(default_factory=list)  # catalogue unreadable: components unknown
    rejected: dict[str, str] = field(default_factory=dict)  # entry name -> why it was left out
    loaded: set[str] = field(default_factory=set)  # distributions whose catalogue was read


def discover(sources: Iterable[PluginSource]) -> Discovery:
    """Read every plugin's catalogue; a plugin that fails is recorded, never raised."""
    found = Discovery(kinds=dict(CORE_KINDS))
    parsed: list[tuple[PluginSource, list[ComponentInfo]]] = []
    for source in sources:
        try:
            infos, extra_kinds = parse_catalogue(source.read(), source.plugin, source.distribution, source.where)
        except Exception as e:  # a broken plugin must never break the CLI
            reason = " ".join(f"{type(e).__name__}: {e}".split())  # one line (YAML errors span several)
            found.failed.append(BrokenPlugin(source.plugin, source.distribution, reason))
            continue
        for name, k in extra_kinds.items():
            found.kinds.setdefault(name, Kind(name, k.get("interface", ""), k.get("summary", "")))
        parsed.append((source, infos))
        found.loaded.add(source.distribution)
    found.broken.extend(found.failed)
    # A kind is core or declared (by any plugin, under 'kinds:'); any other is a typo, which must not
    # quietly make a new kind: the entry is left out and named wherever it is asked for.
    for source, infos in parsed:
        for c in infos:
            if c.kind in found.kinds:
                found.components.append(c)
                continue
            why = (f"{c.catalogue}: component '{c.name}' has unknown kind '{c.kind}'{did_you_mean(c.kind, found.kinds)} "
                   f"(kinds: {', '.join(found.kinds)}; a plugin that adds a kind declares it under 'kinds:')")
            found.rejected[c.name] = why
            found.broken.append(BrokenPlugin(source.plugin, source.distribution, why))
    return found

