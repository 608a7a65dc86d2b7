"""Recipes: YAML files that name components and configure data, training and synthesis.

A recipe is validated as a whole before any data is touched or weight allocated, and every problem
is reported at once with its file:line, dotted key, what was expected and a suggestion.

- ``extends: base.yaml`` (relative to the recipe) loads a base recipe and deep-merges this one onto
  it (mappings merge key by key; a component block that names another component replaces the base's
  block; lists and scalars replace). ``extends: pkg://some_package/recipes/base.yaml`` names a recipe
  shipped inside an installed package (its import name, then the path inside it; found with
  ``importlib.resources``), so a plugin's recipe can build on another package's.
- Overrides use dotted keys with YAML values: ``train.max_steps=10``, ``model.decoder.component=hifigan``.
- ``model`` and each ``train.stages`` entry are component blocks ``{component: name, **params}``;
  their keys are the component's constructor arguments (see ``tts-zoo show NAME``).
"""

from __future__ import annotations

import copy
import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from tts_zoo.errors import Location, RecipeError, RecipeIssue, did_you_mean


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the training data is and how it is batched (manifests come from ``tts-zoo prepare``)."""

    train: Optional[str] = Field(None, description="training manifest (JSONL) written by `tts-zoo prepare`")
    val: Optional[str] = Field(None, description="validation manifest (JSONL)")
    ood_texts: Optional[str] = Field(None, description="out-of-distribution texts for SLM adversarial training")
    prepare: Optional[dict[str, Any]] = Field(
        None, description="how to make the manifests when missing: `tts-zoo prepare` arguments (corpus, source, ...)"
    )
    sample_rate: int = Field(24000, description="audio sample rate the model works at")
    batch_size: int = Field(16, gt=0, description="utterances per batch and process: a step with torchrun trains on "
                                                   "batch_size × processes × train.accumulate utterances")
    max_frames: int = Field(400, gt=0, description="longest training crop in mel frames (the reference's max_len)")
    min_frames: int = Field(80, ge=0, description="shorter clips are skipped (the style encoder needs >= 65)")
    ref_frames: int = Field(192, gt=0, description="length of the same-speaker reference clip in mel frames")
    num_workers: int = Field(2, ge=0, description="data-loading worker processes")
    cache_audio: bool = Field(False, description="keep every clip's wave and log-mel in memory after its first read "
                                                 "(no decoding or STFT in later epochs and stages; ~0.5 MB per 3.6 s "
                                                 "clip, a copy per worker): for corpora that fit in memory")
    bucketing: bool = Field(True, description="length-bucketed batches (less padding)")
    f0_labels: Optional[dict[str, Any]] = Field(
        None, description="pitch tracker that labels the data with F0, cached beside each manifest (Batch.f0): "
                          "a wave pitch_extractor block, e.g. {component: dsp_pitch, method: dio}; null = no labels")


class OptimizerConfig(_Strict):
    """One AdamW per module, as in the reference: per-module learning rates, and by default the betas its
    never-stepped OneCycleLR leaves in effect (beta1 0.85 where it wraps a module); a constant rate."""

    lr: float = Field(1e-4, gt=0, description="learning rate of the acoustic modules")
    bert_lr: float = Field(1e-5, gt=0, description="learning rate of PL-BERT")
    ft_lr: float = Field(1e-5, gt=0, description="learning rate of the decoder and style encoders in stage 2")
    betas: Optional[tuple[float, float]] = Field(
        None, description="AdamW betas of every group a stage does not fix itself (stage 2's PL-BERT keeps (0.9, 0.99)); "
                          "null = the reference's effective betas, see reference_onecycle_beta1")
    reference_onecycle_beta1: bool = Field(
        True, description="with betas null: beta1 0.85 for the groups the reference wraps in OneCycleLR (built, never "
                          "stepped, it replaces AdamW's beta1 by its base momentum 0.85: every stage-1 group; in stage 2 "
                          "all but PL-BERT (0.9) and the decoder/acoustic style encoder (reset to 0.0)), beta2 0.99; "
                          "false = the reference's nominal (0.0, 0.99) everywhere")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    eps: float = Field(1e-9, gt=0, description="AdamW epsilon")
    grad_clip: Optional[float] = Field(None, gt=0, description="clip each optimizer group's gradient norm (None = no clipping)")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning-rate schedule within a stage (the reference's is constant)")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up at the start of each stage")


class TrainConfig(_Strict):
    """The generic training loop's settings; ``stages`` are the family's Stage components, run in order."""

    output_dir: str = Field("runs/{name}", description="run directory ({name} = the recipe's name)")
    seed: int = Field(0, description="global seed")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 = bfloat16 autocast of the forward passes (fp16 overflows in StyleTTS 2's losses)")
    max_steps: Optional[int] = Field(None, gt=0, description="stop after this many steps in total (None = stages' epochs; "
                                                             "a stage's own limit is train.stages.N.max_steps)")
    accumulate: int = Field(1, gt=0, description="gradient accumulation: one optimizer step per N batches (each "
                                                 "loss divided by N: the update of one batch N times larger)")
    log_every: int = Field(10, gt=0, description="log losses every N steps")
    save_every: int = Field(1000, gt=0, description="write a checkpoint every N steps (and at the end of each epoch)")
    keep_checkpoints: int = Field(3, gt=0, description="how many recent checkpoints to keep")
    max_bad_steps: int = Field(10, gt=0, description="stop after this many consecutive non-finite losses")
    max_weight_abs: Optional[float] = Field(
        1e4, gt=0, description="exploded weights: training stops (and nothing is saved) when a parameter's absolute "
                               "value exceeds this (trained StyleTTS 2 weights stay below ~10); null = no limit")
    reuse_freed_memory: bool = Field(
        True, description="keep memory that torch frees for the next step instead of returning it to the kernel "
                          "(glibc; see tts_zoo/memory.py): full-width StyleTTS 2 stage-1 steps 10.9 instead of 15.8 s, peak RSS within 2 %")
    init_from: Optional[str] = Field(
        None, description="checkpoint whose weights start a new run (e.g. a stage-1 run for a stage-2 recipe); loaded strictly")
    stages: list[dict[str, Any]] = Field(default_factory=list, description="Stage components, run in order")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


class SynthesisConfig(_Strict):
    """Defaults for ``tts-zoo synthesize`` with a model trained from this recipe."""

    alpha: float = Field(0.3, ge=0, le=1, description="acoustic style: weight of the sampled style vs the reference")
    beta: float = Field(0.7, ge=0, le=1, description="prosodic style: weight of the sampled style vs the reference")
    diffusion_steps: int = Field(5, gt=0, description="style-diffusion sampler steps")
    embedding_scale: float = Field(1.0, gt=0, description="classifier-free guidance scale")


class Recipe(_Strict):
    """A whole recipe. ``model`` is a component block of kind 'model'."""

    name: str = Field(..., description="short name, used for the run directory")
    description: str = Field("", description="what this recipe is for")
    allow_import_paths: bool = Field(False, description="allow 'module:Class' component names (unregistered code)")
    model: dict[str, Any] = Field(..., description="the model: {component: name, **constructor arguments}")
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    source: Optional[str] = Field(None, exclude=True, description="the file the recipe was read from (set by the loader)")


# Keys that recipes no longer take → what to write instead. They never did anything, so a stored recipe
# (a checkpoint's) that still holds one loses it silently; a recipe file that sets one is refused.
REMOVED_KEYS: dict[str, str] = {
    "synthesis.sampler": "synthesis.sampler was removed: set model.sampler: {component: NAME}",
}


def drop_removed_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored recipe written before a key of ``REMOVED_KEYS`` went, without that key."""
    data = copy.deepcopy(dict(data))
    for dotted in REMOVED_KEYS:
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return data


# ------------------------------------------------------------------------------------ YAML with lines


def _compose(text: str, file: str) -> tuple[Any, dict[str, Location]]:
    """Parse YAML and remember the line of every dotted key (``a.b.0.c``)."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = Location(file, mark.line + 1 if mark else None)
        raise RecipeError([RecipeIssue(loc, "", f"invalid YAML: {getattr(e, 'problem', e)}")]) from None
    locations: dict[str, Location] = {}
    constructor = yaml.SafeLoader("")

    def convert(node: Any, path: str) -> Any:
        locations.setdefault(path, Location(file, node.start_mark.line + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in node.value:
                if k.value == "<<":  # YAML merge key: copy the referenced mapping(s) first
                    for m in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                        out.update(convert(m, path))
                    continue
                child = f"{path}.{k.value}" if path else str(k.value)
                locations[child] = Location(file, k.start_mark.line + 1)
                out[k.value] = convert(v, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    return (convert(root, "") if root is not None else {}), locations


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        if "component" in over and over.get("component") != base.get("component"):
            return copy.deepcopy(over)  # another component: the base's keys would not fit it
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def read_recipe_file(path: Union[str, Path], _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, Location]]:
    """Read a recipe file, resolving ``extends`` chains; returns (data, locations)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError([RecipeIssue(Location(str(path)), "", "recipe file not found (check the path; recipes live in recipes/)")])
    if path.resolve() in _seen:
        raise RecipeError([RecipeIssue(Location(str(path)), "extends", "circular 'extends' chain")])
    data, locations = _compose(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise RecipeError([RecipeIssue(Location(str(path), 1), "", "a recipe is a YAML mapping (name:, model:, data:, train:)")])
    parent = data.pop("extends", None)
    if parent is None:
        return data, locations
    if not isinstance(parent, str):
        raise RecipeError([RecipeIssue(locations.get("extends"), "extends", "expected a path to a base recipe")])
    base = _base_recipe_path(parent, path, locations.get("extends"))
    base_data, base_locations = read_recipe_file(base, _seen + (path.resolve(),))
    return _merge(base_data, data), {**base_locations, **locations}


PACKAGE_SCHEME = "pkg://"  # extends: pkg://<import package>/<path inside it>


def _base_recipe_path(parent: str, recipe: Path, where: Optional[Location]) -> Path:
    """The file an ``extends:`` value names: a path relative to ``recipe``, or ``pkg://package/path``
    inside an installed package (a package installed as files, as pip does; not a zip)."""
    if not parent.startswith(PACKAGE_SCHEME):
        return recipe.parent / parent
    package, _, inner = parent[len(PACKAGE_SCHEME):].partition("/")

    def fail(message: str) -> RecipeError:
        return RecipeError([RecipeIssue(where, "extends", message)])

    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as e:
        if e.name and (package + ".").startswith(e.name + "."):  # the package itself (or its parent) is missing
            raise fail(f"package '{package}' is not installed ({parent}); install it, or write "
                       f"{PACKAGE_SCHEME}<import package>/<path inside it>") from None
        raise fail(f"package '{package}' failed to import: {e}") from None
    except Exception as e:  # an error inside the package's __init__, an empty or invalid name
        raise fail(f"package '{package}' failed to import ({parent}): {type(e).__name__}: {e}") from None
    target = root.joinpath(inner) if inner else None
    if target is None or not target.is_file():
        raise fail(f"no recipe '{inner}' in package '{package}' ({root}); write {PACKAGE_SCHEME}{package}/<path inside it>")
    return Path(str(target))


def apply_overrides(data: dict[str, Any], overrides: Iterable[str], locations: dict[str, Location]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    data = copy.deepcopy(data)
    issues = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            issues.append(RecipeIssue(Location(f"override '{item}'"), "", "expected KEY=VALUE, e.g. train.max_steps=10"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                issues.append(RecipeIssue(Location(f"override '{item}'"), key, f"'{part}' is not a mapping or list index"))
                break
        else:
            last = parts[-1]
            if isinstance(node, list) and last.isdigit() and int(last) < len(node):
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                issues.append(RecipeIssue(Location(f"override '{item}'"), key, "cannot set this key"))
                continue
            locations[key] = Location(f"override '{item}'")
    if issues:
        raise RecipeError(issues)
    return data


# ------------------------------------------------------------------------------------ validation


def _locator(locations: Mapping[str, Location], default: Location) -> Any:
    def locate(key: str) -> Location:
        while key:
            if key in locations:
                return locations[key]
            key = key.rpartition(".")[0]
        return default

    return locate


def validate_recipe_data(
    data: Mapping[str, Any],
    locations: Optional[Mapping[str, Location]] = None,
    source: str = "<recipe>",
    registry: Any = None,
    allow_import_paths: bool = False,
) -> Recipe:
    """Validate recipe data completely (schema + every component block); raise one RecipeError
    listing every problem."""
    from tts_zoo import registry as registry_module

    reg = registry or registry_module.default
    locate = _locator(locations or {}, Location(source))
    issues: list[RecipeIssue] = []
    recipe: Optional[Recipe] = None
    try:
        recipe = Recipe.model_validate(dict(data))
    except pydantic.ValidationError as e:
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden" and key in REMOVED_KEYS:
                issues.append(RecipeIssue(locate(key), "", REMOVED_KEYS[key]))
                continue
            if err["type"] == "extra_forbidden":
                parent_key, _, name = key.rpartition(".")
                known = _fields_at(parent_key)
                msg = f"unknown key{did_you_mean(name, known)} (valid keys: {', '.join(known)})"
            elif err["type"] == "missing":
                msg = "missing required key"
            else:
                msg = f"{err['msg'].lower()} (got {err.get('input')!r})"
            issues.append(RecipeIssue(locate(key), key, msg))
    allow = allow_import_paths or bool(data.get("allow_import_paths", False))
    if "model" in data:
        reg.check_component(data["model"], "model", "model", issues, locate, allow)
    f0_block = data.get("data", {}).get("f0_labels") if isinstance(data.get("data"), Mapping) else None
    if f0_block is not None:
        reg.check_component(f0_block, "data.f0_labels", "pitch_extractor", issues, locate, allow)
    stages = data.get("train", {}).get("stages", []) if isinstance(data.get("train"), Mapping) else []
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        reg.check_component(stage, f"train.stages.{i}", "stage", issues, locate, allow)
    if issues:
        raise RecipeError(sorted(issues, key=_issue_order))
    assert recipe is not None
    recipe.source = source
    return recipe


def _issue_order(issue: RecipeIssue) -> tuple[str, int]:
    loc = issue.location
    return (loc.file, loc.line or 0) if loc else ("", 0)


def _fields_at(dotted: str) -> list[str]:
    model: Any = Recipe
    for part in dotted.split(".") if dotted else []:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def load_recipe(
    recipe: Union[str, Path, Mapping[str, Any]],
    overrides: Iterable[str] = (),
    registry: Any = None,
    allow_import_paths: bool = False,
) -> Recipe:
    """A recipe path or dict (+ dotted overrides) → a validated :class:`Recipe`."""
    if isinstance(recipe, Mapping):
        data, locations, source = dict(recipe), {}, "<recipe>"
    else:
        data, locations = read_recipe_file(recipe)
        source = str(recipe)
    data = apply_overrides(data, overrides, locations)
    return validate_recipe_data(data, locations, source, registry, allow_import_paths)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (saved in run directories and checkpoints)."""
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude={"source"}), sort_keys=False, allow_unicode=True)
