"""Provenance: what a checkpoint records so that its components rebuild exactly.

A recipe names components in a short form (``decoder: {component: istftnet, dim_in: 64}``): the latest
version, from whichever package provides the name, with the code's defaults for every key it leaves
out. Each of these may change after a checkpoint is written (a plugin that registers the same name is
installed, a ``version: 2`` entry appears, a default changes in the code). So a checkpoint also stores,
for every component block of its recipe (``model``, ``data.f0_labels``, ``train.stages.N``) and every
sub-component inside them:

- the **resolved block**: the same block with the name qualified by its distribution and pinned to its
  version (``tts-zoo:istftnet.v1``) and every argument the catalogue declares written out, defaults
  included — taken from the constructor's signature, which is what built the model;
- a **provider row**: dotted key, name, kind, version, distribution and the distribution's version,
  target — for people, and for the one-line error when that distribution is not installed.

Loading builds the model from its resolved block, so a later default, version or clash cannot change
an old model. The other blocks (stages, F0 labeller) are recorded for people and reruns, but a loaded
checkpoint validates them in their short form: a stage's arguments changing must not make old models
unloadable for synthesis. A ``weights`` argument (a pretrained-initialisation path) is left out: the
checkpoint carries the weights. A default that JSON cannot hold is left out too (the constructor's
default applies, as in the short form). Old checkpoints have no record and load from their short recipe.

The record, JSON in the checkpoint header under ``provenance``::

    {"format": 1,
     "blocks": {"model": {"component": "tts-zoo:styletts2.v1", "decoder": {"component": "tts-zoo:istftnet.v1", ...}, ...},
                "train.stages.0": {...}},
     "components": [{"key": "model", "component": "styletts2", "kind": "model", "version": 1,
                     "distribution": "tts-zoo", "distribution_version": "0.1.0", "target": "..."}, ...]}
"""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Optional

from tts_zoo.catalogue import yaml_safe
from tts_zoo.errors import CheckpointError, TTSZooError

FORMAT = 1
IMPORT_PATH = "(import path)"  # the distribution of an unregistered module:Class component

logger = logging.getLogger(__name__)


def recipe_blocks(recipe: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(dotted key, kind, block) of every top-level component block of a validated ``Recipe``."""
    blocks = [("model", "model", recipe.model)]
    if recipe.data.f0_labels is not None:
        blocks.append(("data.f0_labels", "pitch_extractor", recipe.data.f0_labels))
    blocks += [(f"train.stages.{i}", "stage", stage) for i, stage in enumerate(recipe.train.stages)]
    return blocks


def record(recipe: Any, registry: Any) -> dict[str, Any]:
    """The provenance record of a validated ``Recipe`` (resolved by ``registry``, the one that built it).

    A block the registry cannot resolve (a model object handed to the trainer with a recipe that names
    no registered component) is left out of the record, with a warning once: its checkpoint keeps the
    weights and the short recipe, as before the record existed."""
    rows: list[dict[str, Any]] = []
    blocks = {}
    for key, kind, block in recipe_blocks(recipe):
        block_rows: list[dict[str, Any]] = []
        try:
            blocks[key] = _resolve(block, kind, key, registry, recipe.allow_import_paths, block_rows)
        except TTSZooError as e:
            _warn_once(f"{key} is not recorded for an exact rebuild: {' '.join(str(e).split())}")
            continue
        rows += block_rows
    return {"format": FORMAT, "blocks": blocks, "components": rows}


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _resolve(block: Mapping[str, Any], kind: str, key: str, registry: Any, allow_import_paths: bool,
             rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One block → its resolved block (sub-components resolved in turn); appends provider rows (pre-order)."""
    info = registry.info_for(block["component"], kind, allow_import_paths)
    signature = inspect.signature(registry.load_class(info).__init__).parameters
    registered = info.distribution != IMPORT_PATH
    rows.append({"key": key, "component": info.name, "kind": info.kind, "version": info.version,
                 "distribution": info.distribution,
                 "distribution_version": distribution_version(info.distribution) if registered else None,
                 "target": info.target})
    resolved: dict[str, Any] = {"component": f"{info.distribution}:{info.versioned_name}" if registered else info.target}
    for p in info.params:
        if p.name == "weights" and not p.component_kind:
            continue
        if p.name in block:
            value = block[p.name]
        elif p.name in signature and signature[p.name].default is not inspect.Parameter.empty:
            value = signature[p.name].default
        elif not p.required:
            value = p.default
        else:  # a required argument the block lacks: validation has already refused it
            continue
        if p.component_kind and isinstance(value, Mapping):
            resolved[p.name] = _resolve(value, p.component_kind, f"{key}.{p.name}", registry, allow_import_paths, rows)
        elif _json_safe(value := yaml_safe(value)):
            resolved[p.name] = value
    return resolved


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@lru_cache(maxsize=None)
def distribution_version(distribution: str) -> Optional[str]:
    """The installed version of a distribution (None when it has no metadata, e.g. a test catalogue)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def distributions(rec: Mapping[str, Any]) -> list[str]:
    """The distributions that provided the recorded components (import paths left out), in order."""
    return list(dict.fromkeys(r["distribution"] for r in rec.get("components", []) if r["distribution"] != IMPORT_PATH))


def check_providers(rec: Mapping[str, Any], registry: Any, where: str) -> None:
    """Raise a CheckpointError, one line per distribution, when a recorded component's distribution is
    not installed (with the ``pip install`` that fixes it) or its plugin failed to load (with the reason)."""
    problems = []
    for dist in distributions(rec):
        if dist in registry.loaded_distributions:
            continue
        row = next(r for r in rec["components"] if r["distribution"] == dist)  # the first (outermost) one
        message = registry.failed_message(row["component"], row["kind"], dist)
        if not message:
            made_by = " ".join(x for x in (dist, row.get("distribution_version")) if x)
            message = (f"component '{row['component']}' ({row['kind']}) was made by package {made_by}, "
                       f"which is not installed: pip install {dist}")
        problems.append(f"{where}: {message}")
    if problems:
        raise CheckpointError("\n".join(problems))


def with_resolved_model(data: Mapping[str, Any], rec: Mapping[str, Any]) -> dict[str, Any]:
    """Stored recipe data whose ``model`` block is the recorded, resolved one (when recorded)."""
    out = copy.deepcopy(dict(data))
    if "model" in rec["blocks"]:
        out["model"] = copy.deepcopy(rec["blocks"]["model"])
    return out
