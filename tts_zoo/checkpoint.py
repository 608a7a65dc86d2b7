"""The tts-zoo checkpoint: a self-describing directory, no pickle.

::

    step_00001000/
      model.safetensors      weights; header metadata: format, resolved recipe, provenance (every
                             component's qualified, pinned name, all its arguments and the package
                             that provided it: tts_zoo.provenance), text frontend (symbols, espeak
                             version), package versions (the providing plugins' included)
      recipe.yaml            the resolved recipe in its short form, for people (the header is authoritative)
      training.safetensors   optional: optimizer/scheduler state, RNG states, step/epoch/stage,
                             data position — what `tts-zoo train` needs to resume

``registry.build(path)`` rebuilds the model from the header alone, from the provenance record when
there is one (so installing a plugin or changing a default does not change an old model). Writes are
atomic: everything goes to a temporary sibling directory that is renamed into place, so a killed
process leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tts_zoo.errors import CheckpointError, MissingWeightsError

FORMAT = "tts-zoo/1"
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
RECIPE_FILE = "recipe.yaml"


@dataclass
class Checkpoint:
    """What a checkpoint holds once read (``training`` is None for a model-only checkpoint)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    recipe_yaml: str
    info: dict[str, Any]
    training: Optional[dict[str, Any]] = field(default=None)
    provenance: Optional[dict[str, Any]] = field(default=None)  # None in checkpoints older than the record


def package_versions(distributions: Iterable[str] = ()) -> dict[str, str]:
    """Python's and the main packages' versions, plus those of ``distributions`` (the plugins that
    provided the model's components)."""
    out = {"python": platform.python_version()}
    for name in ("tts-zoo", "torch", "transformers", "phonemizer", "espeakng-loader", *distributions):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------ nested state <-> flat tensors


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor/ndarray in a nested structure by a reference; collect them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten_state(k, f"{prefix}.k{i}", tensors), flatten_state(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ------------------------------------------------------------------ save / load


def _shared_free(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage: store each as its own contiguous copy."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        ident = (v.untyped_storage().data_ptr(), v.storage_offset())
        out[k] = v.clone().contiguous() if ident in seen or not v.is_contiguous() else v
        seen.add(ident)
    return out


def save_checkpoint(
    path: Union[str, Path],
    state_dict: dict[str, torch.Tensor],
    recipe_yaml: str,
    info: dict[str, Any],
    training: Optional[dict[str, Any]] = None,
    provenance: Optional[dict[str, Any]] = None,
) -> Path:
    """Write a checkpoint directory atomically. ``info`` is JSON-able (frontend, ...); ``provenance``
    is a ``tts_zoo.provenance.record``."""
    from tts_zoo.provenance import distributions

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary directory
    try:
        header = {"format": FORMAT, "recipe": recipe_yaml, "info": json.dumps(info, ensure_ascii=False),
                  "versions": json.dumps(package_versions(distributions(provenance or {})))}
        if provenance is not None:
            header["provenance"] = json.dumps(provenance, ensure_ascii=False)
        save_file(_shared_free(state_dict), str(tmp / MODEL_FILE), metadata=header)
        (tmp / RECIPE_FILE).write_text(recipe_yaml, encoding="utf-8")
        if training is not None:
            tensors: dict[str, torch.Tensor] = {}
            skeleton = flatten_state(training, "t", tensors)
            save_file(tensors, str(tmp / TRAINING_FILE), metadata={"format": FORMAT, "skeleton": json.dumps(skeleton)})
        if path.exists():  # replace: move the old one aside first so the rename is atomic
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def is_checkpoint(path: Union[str, Path]) -> bool:
    p = Path(path)
    return (p / MODEL_FILE).is_file() or (p.is_file() and p.name.endswith(".safetensors"))


def load_checkpoint(path: Union[str, Path], with_training: bool = False, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint directory (or its model.safetensors)."""
    p = Path(path)
    model_file = p / MODEL_FILE if p.is_dir() else p
    if not model_file.is_file():
        raise CheckpointError(f"{path}: no tts-zoo checkpoint here (expected a directory with {MODEL_FILE})")
    try:
        with safe_open(str(model_file), framework="pt", device=device) as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{model_file}: unreadable checkpoint ({e})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{model_file}: not a {FORMAT} checkpoint (format {header.get('format')!r})")
    ckpt = Checkpoint(path=model_file.parent, state_dict=state, recipe_yaml=header["recipe"],
                      info=json.loads(header.get("info", "{}")))
    ckpt.info["versions"] = json.loads(header.get("versions", "{}"))
    if "provenance" in header:
        ckpt.provenance = json.loads(header["provenance"])
    training_file = model_file.parent / TRAINING_FILE
    if with_training and training_file.is_file():
        with safe_open(str(training_file), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            skeleton = json.loads((f.metadata() or {})["skeleton"])
        ckpt.training = unflatten_state(skeleton, tensors)
    return ckpt


def read_submodule_state(path: Union[str, Path], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of one submodule of a checkpoint's model (keys ``<prefix>.<key>``, returned as
    ``<key>``), read without loading the rest: how a component's ``weights:`` takes its part of an
    earlier run (e.g. an aligner pretrained once, reused by models of other widths)."""
    model_file = Path(path) / MODEL_FILE if Path(path).is_dir() else Path(path)
    if not model_file.is_file():
        raise MissingWeightsError(f"{path}: no tts-zoo checkpoint here (expected a directory with {MODEL_FILE})")
    start = prefix.rstrip(".") + "."
    try:
        with safe_open(str(model_file), framework="pt", device="cpu") as f:
            state = {k[len(start):]: f.get_tensor(k) for k in f.keys() if k.startswith(start)}
    except Exception as e:
        raise CheckpointError(f"{model_file}: unreadable checkpoint ({e})") from None
    if not state:
        raise CheckpointError(f"{model_file}: the checkpoint's model has no '{prefix.rstrip('.')}' weights")
    return state


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Any, assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with a one-line CheckpointError naming every missing,
    unexpected and misshapen key (``source``: the file / module being loaded, for the message).
    A DataParallel ``module.`` prefix is stripped first. ``assign``: the tensors become the
    parameters (no copy; see ``tts_zoo.lean_load``)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} (file {list(state[k].shape)}, model {list(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = [f"{what}: {', '.join(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)) if keys]
    if problems:
        raise CheckpointError(f"{source}: does not match {type(module).__name__} — " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=assign)


# ------------------------------------------------------------------ whole models


def _without_pretrained_paths(block: Any) -> Any:
    """A component block minus every ``weights:`` init path (the checkpoint carries the weights)."""
    if isinstance(block, dict):
        return {k: _without_pretrained_paths(v) for k, v in block.items() if k != "weights"}
    if isinstance(block, list):
        return [_without_pretrained_paths(v) for v in block]
    return block


def model_info(model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint records about a model besides its recipe: the text frontend's symbols and
    settings (espeak version!) so that tokens mean the same thing at synthesis time."""
    info: dict[str, Any] = {"model_class": f"{type(model).__module__}:{type(model).__qualname__}"}
    frontend = getattr(model, "frontend", None)
    if frontend is not None:
        info["frontend"] = {"class": type(frontend).__qualname__, "symbols": list(frontend.symbols), **frontend.describe()}
    return info


def save_model(path: Union[str, Path], model: torch.nn.Module, recipe: Any, training: Optional[dict[str, Any]] = None,
               extra_info: Optional[dict[str, Any]] = None, registry: Any = None) -> Path:
    """Save a model built from ``recipe`` (a ``tts_zoo.recipe.Recipe``) by ``registry`` (default: the
    installed plugins') as a checkpoint directory, with its provenance record."""
    from tts_zoo import provenance, registry as registry_module
    from tts_zoo.recipe import dump_recipe

    record = provenance.record(recipe, registry or registry_module.default)
    recipe = recipe.model_copy(update={"model": _without_pretrained_paths(recipe.model)})
    return save_checkpoint(path, model.state_dict(), dump_recipe(recipe), {**model_info(model), **(extra_info or {})},
                           training, record)


def stored_recipe(ckpt: Checkpoint, registry: Any = None) -> Any:
    """The checkpoint's recipe, validated (a ``tts_zoo.recipe.Recipe``). With a provenance record its
    model block is the resolved one (qualified, pinned, every argument), after a check that every
    providing package is installed and loads; an older checkpoint's short recipe is used as it is. Keys
    that recipes no longer take but older checkpoints hold (they never did anything) are dropped first."""
    import yaml

    from tts_zoo import provenance, registry as registry_module
    from tts_zoo.recipe import drop_removed_keys, validate_recipe_data

    reg = registry or registry_module.default
    data = drop_removed_keys(yaml.safe_load(ckpt.recipe_yaml) or {})
    if ckpt.provenance is not None:
        provenance.check_providers(ckpt.provenance, reg, str(ckpt.path))
        data = provenance.with_resolved_model(data, ckpt.provenance)
    return validate_recipe_data(data, source=str(ckpt.path), registry=reg)


def load_model(path: Union[str, Path], for_inference: bool = True, device: str = "cpu", registry: Any = None) -> torch.nn.Module:
    """Rebuild a model from a checkpoint alone (its recipe), load its weights strictly, and return
    it in eval mode. ``for_inference`` lets the model class drop training-only parts first
    (``TTSModel.inference_block``), so e.g. no discriminator weights need to exist."""
    from tts_zoo import registry as registry_module

    from tts_zoo import lean_load

    reg = registry or registry_module.default
    ckpt = load_checkpoint(path)  # memory-mapped, untouched: only the header and the key list are read
    recipe = stored_recipe(ckpt, reg)
    block = recipe.model
    if for_inference:
        cls = reg.load_class(reg.info_for(block["component"], "model", recipe.allow_import_paths))
        block = cls.inference_block(block)
    with lean_load.parameters_on_meta():  # one copy of the weights in memory: the file's (lean_load)
        model = reg.build_component(block, "model", recipe.allow_import_paths)
    # Only the weights the inference build has no place for, inside the parts whose block the model
    # class changed (a dropped discriminator, a language model's pretraining heads), are skipped;
    # everything else is strict (a missing weight is always an error).
    changed = {k for k, v in block.items() if v != recipe.model.get(k)}
    own = model.state_dict()
    keys = [k for k in ckpt.state_dict if k in own or k.split(".", 1)[0] not in changed]
    del own
    model_file = Path(path) / MODEL_FILE if Path(path).is_dir() else Path(path)
    load_state_strict(model, lean_load.read_tensors(model_file, keys, device), ckpt.path, assign=True)
    lean_load.check_materialized(model, ckpt.path)
    if not for_inference:
        lean_load.refresh_weight_norm(model)
    model.checkpoint_info = ckpt.info
    model.recipe = recipe  # the resolved recipe it was built from (synthesis defaults, ...)
    return model.to(device).eval()
