"""Loading a model's weights with one copy of them in memory (``checkpoint.load_model`` uses it).

The plain way — build the model (random weights), then ``load_state_dict`` from the checkpoint — holds
three copies at its peak: the random weights, the file's pages (safetensors memory-maps the file, and
every page copied from stays resident while the map lives) and the weights. At StyleTTS 2's official
widths (0.5 GiB of weights) that peak was 1.6 GiB for a process that then needs 0.9 GiB. Here:

* :func:`parameters_on_meta` builds the modules with their parameters on the ``meta`` device (shapes
  only: no memory, no random initialisation, which is also most of the build time); buffers are built
  as usual, because a non-persistent buffer (a window, position ids) is not in a checkpoint;
* :func:`read_tensors` reads the wanted tensors of a safetensors file with ordinary reads, each into
  its own new tensor (no memory map: nothing stays resident beside the copies, and the tensors a
  checkpoint holds but the model does not want — discriminators, optimizer moments — are never read);
* the model then takes those tensors as its parameters (``load_state_dict(assign=True)``), and
  :func:`check_materialized` makes sure that nothing was left on ``meta``; a model loaded for
  training gets its weight norms' cached weights back (:func:`refresh_weight_norm`).

The numbers are the file's bytes, exactly as ``safetensors`` would give them.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

import torch
from torch import nn

__all__ = ["parameters_on_meta", "read_tensors", "check_materialized", "refresh_weight_norm"]

# The safetensors format's dtype names (https://github.com/huggingface/safetensors, "Format").
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, every ``nn.Parameter`` a module registers is moved to the ``meta`` device.

    Constructors run unchanged (their ``torch.empty`` is never touched, so it costs no resident memory,
    and initialisers on meta tensors do nothing); buffers stay real. The parameters must then be
    replaced (``load_state_dict(..., assign=True)``). Patches ``nn.Module.register_parameter`` for the
    block's duration: not for use while other threads build modules.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param) -> None:
        if type(param) is nn.Parameter and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def read_tensors(path: Union[str, Path], keys: Iterable[str], device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    """The tensors ``keys`` of the safetensors file ``path``, each read into a new tensor on ``device``.

    The format: an 8-byte little-endian header length N, N bytes of JSON (``{name: {dtype, shape,
    data_offsets: [begin, end]}}``, offsets relative to the end of the header), then the data, little-
    endian and C-contiguous. Raises ``KeyError`` for a key the file lacks, ``ValueError`` for a dtype
    outside the table or a short read.
    """
    with open(path, "rb", buffering=0) as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        start = 8 + size
        out = {}
        for key in keys:
            entry = header[key]
            if entry["dtype"] not in _DTYPES:
                raise ValueError(f"{path}: tensor {key!r} has dtype {entry['dtype']}, which this reader does not know")
            tensor = torch.empty(entry["shape"], dtype=_DTYPES[entry["dtype"]])
            begin, end = entry["data_offsets"]
            if end - begin != tensor.numel() * tensor.element_size():
                raise ValueError(f"{path}: tensor {key!r}: {end - begin} bytes for shape {entry['shape']}")
            if tensor.numel():
                _read_into(f, start + begin, memoryview(tensor.view(-1).view(torch.uint8).numpy()), path)
            out[key] = tensor if torch.device(device).type == "cpu" else tensor.to(device)
    return out


def _read_into(f, offset: int, buffer: memoryview, path: Union[str, Path]) -> None:
    f.seek(offset)
    done = 0
    while done < len(buffer):  # a raw read may return fewer bytes than asked
        n = f.readinto(buffer[done:])
        if not n:
            raise ValueError(f"{path}: file ends inside a tensor (truncated checkpoint?)")
        done += n


def check_materialized(module: nn.Module, source: object) -> None:
    """Raise ``RuntimeError`` naming every parameter or buffer still on ``meta`` (a constructor that
    derived a tensor from a parameter's value while the parameters were on meta)."""
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{source}: after loading, still without values: {', '.join(left)}")


def refresh_weight_norm(module: nn.Module) -> None:
    """Recompute the weight that every old-style weight norm (``nn.utils.weight_norm``) below
    ``module`` caches between calls: built on meta it is a shape only until the next forward.
    Inference folds weight norm away instead (``prepare_for_inference``) and skips this copy."""
    from torch.nn.utils.weight_norm import WeightNorm

    for child in module.modules():
        for hook in child._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm):
                setattr(child, hook.name, hook.compute_weight(child))
