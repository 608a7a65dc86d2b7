"""Checks shared by every ``nn.Module`` kind, given its :class:`Contract` (how to call it).

- ``contract``: the kind's call on seeded inputs, in eval mode, gives the shapes and dtypes of the
  contract (the kind's own ``check`` asserts them).
- ``gradients``: in train mode, a scalar made of every output back-propagates a finite, nonzero
  gradient to the parameters and to the inputs the contract names (``grad_inputs``).
- ``state_dict_round_trip``: the state dict written as a tts-zoo checkpoint (safetensors) and loaded
  strictly into a fresh instance (built the same way, its weights then scrambled) gives the same
  outputs; no tensor is a plain attribute (one a checkpoint would not carry).
- ``dtype_round_trip``: after ``.double()`` the component runs on float64 inputs and gives finite
  float64 outputs; ``.float()`` back gives the float32 outputs again.
- ``device_round_trip`` (only where CUDA is available): the same with ``.cuda()`` and ``.cpu()``.

The float64 and CUDA outputs are not compared with the float32 CPU ones: a component that draws
noise draws other numbers there (and a phase taken from a near-zero STFT bin, as iSTFTNet's source
takes, amplifies any rounding), so only the round trip back is held to equality.

Outputs are compared in eval mode with torch and ``random`` seeded before every call, so components
that draw noise (a decoder's source phase, say) compare like deterministic ones.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tts_zoo.testing.subject import Subject, assert_gradients, seed_all, weighted_sum

Inputs = dict[str, Any]


@dataclass(frozen=True)
class Contract:
    """How the kit calls one kind: ``inputs(subject, module, dtype, device)`` makes seeded inputs
    (floating tensors in ``dtype``), ``call(module, inputs)`` runs the contract's method(s), ``check(subject,
    module, inputs, outputs)`` asserts the contract's shapes/dtypes/units; besides the parameters,
    the inputs named in ``grad_inputs`` must receive a gradient."""

    inputs: Callable[[Subject, Any, torch.dtype, Any], Inputs]
    call: Callable[[Any, Inputs], Any]
    check: Callable[[Subject, Any, Inputs, Any], None]
    grad_inputs: tuple[str, ...] = ()


def flat(outputs: Any) -> list[Tensor]:
    """Every tensor in nested lists/tuples (NamedTuples included), in order; None dropped."""
    if isinstance(outputs, Tensor):
        return [outputs]
    if outputs is None:
        return []
    return [t for o in outputs for t in flat(o)]


def run(contract: Contract, module: Any, s: Subject, dtype: torch.dtype = torch.float32,
        device: Any = "cpu") -> tuple[Inputs, Any]:
    """(inputs, outputs) of the contract's call in eval mode, seeded, without autograd."""
    module.eval()
    inputs = contract.inputs(s, module, dtype, device)
    seed_all(0)
    with torch.no_grad():
        return inputs, contract.call(module, inputs)


def check_contract(contract: Contract, s: Subject) -> None:
    module = s.make()
    contract.check(s, module, *run(contract, module, s))


def check_gradients(contract: Contract, s: Subject) -> None:
    module = s.make()
    module.train()
    inputs = contract.inputs(s, module, torch.float32, "cpu")
    for name in contract.grad_inputs:
        inputs[name] = inputs[name].detach().requires_grad_(True)
    seed_all(0)
    outputs = contract.call(module, inputs)
    assert_gradients("in train mode, the outputs", weighted_sum(outputs),
                     {n: inputs[n] for n in contract.grad_inputs}, module)


def assert_same(what: str, got: Any, expected: Any, atol: float) -> None:
    """Equal structure, shapes and values (within ``atol``)."""
    got, expected = flat(got), flat(expected)
    assert len(got) == len(expected), f"{what}: {len(got)} output tensors, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, f"{what}: output {i} has shape {list(a.shape)}, expected {list(b.shape)}"
        if not b.is_floating_point():
            assert torch.equal(a.cpu(), b.cpu()), f"{what}: output {i} differs"
            continue
        a, b = a.detach().cpu().double(), b.detach().cpu().double()
        worst = float((a - b).abs().max()) if b.numel() else 0.0
        assert worst <= atol, f"{what}: output {i} differs by {worst:.3g} (max |value| {float(b.abs().max()):.3g})"


def scramble(module: Any) -> None:
    """Overwrite every floating tensor of the state dict, so that only a real load restores them."""
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)


def reload(s: Subject, module: Any) -> Any:
    """A fresh instance (built the same way, so anything outside the state dict, such as a frozen
    pretrained LM, matches; its weights then scrambled) with ``module``'s state dict loaded strictly
    from a tts-zoo checkpoint."""
    from tts_zoo.checkpoint import load_checkpoint, load_state_strict, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "ckpt", module.state_dict(), "", {})
        state = load_checkpoint(Path(tmp) / "ckpt").state_dict
    fresh = s.make()
    scramble(fresh)
    load_state_strict(fresh, state, "the state dict")
    return fresh


def _recomputed(module: Any) -> set[str]:
    """Tensor attributes a forward pre-hook recomputes from parameters (torch's hook-based
    weight_norm / spectral_norm keep ``weight`` so), and non-leaf ones (computed from parameters)."""
    hooked = {getattr(h, "name", None) for h in module._forward_pre_hooks.values()}
    return hooked | {n for n, v in vars(module).items() if isinstance(v, Tensor) and v.grad_fn is not None}


def check_state_dict_round_trip(contract: Contract, s: Subject) -> None:
    module = s.make()
    plain = [f"{prefix}.{name}".lstrip(".") for prefix, m in module.named_modules()
             for name, value in vars(m).items() if isinstance(value, Tensor) and name not in _recomputed(m)]
    assert not plain, (f"tensor attributes outside the state dict: {plain[:5]} (checkpoints would not carry "
                       "them: register_buffer(...), persistent=False for constants)")
    expected = run(contract, module, s)[1]
    fresh = reload(s, module)
    assert_same("outputs after a state-dict round trip (save, fresh instance, load)",
                run(contract, fresh, s)[1], expected, atol=1e-6)


def check_round_trip(contract: Contract, s: Subject, there: Callable[[Any], Any], back: Callable[[Any], Any],
                dtype: torch.dtype, device: str) -> None:
    module = s.make()
    expected = run(contract, module, s)[1]
    got = run(contract, there(module), s, dtype, device)[1]
    for i, t in enumerate(flat(got)):
        assert t.device.type == device, f"output {i} is on {t.device}, expected {device}"
        assert not t.is_floating_point() or t.dtype == dtype, (
            f"output {i} is {t.dtype}, expected {dtype} (a constant or a cast fixed inside the component?)")
        assert not t.is_floating_point() or bool(torch.isfinite(t).all()), f"output {i} has NaN/Inf values on {dtype} {device}"
    assert_same(f"outputs after the round trip to {dtype} on {device} and back", run(contract, back(module), s)[1],
                expected, atol=1e-6)


def module_checks(contract: Contract) -> dict[str, Callable[[Subject], None]]:
    """The named checks of a module kind."""
    checks: dict[str, Callable[[Subject], None]] = {
        "contract": lambda s: check_contract(contract, s),
        "gradients": lambda s: check_gradients(contract, s),
        "state_dict_round_trip": lambda s: check_state_dict_round_trip(contract, s),
        "dtype_round_trip": lambda s: check_round_trip(contract, s, lambda m: m.double(), lambda m: m.float(),
                                                       torch.float64, "cpu"),
    }
    if torch.cuda.is_available():
        checks["device_round_trip"] = lambda s: check_round_trip(contract, s, lambda m: m.cuda(), lambda m: m.cpu(),
                                                                 torch.float32, "cuda")
    return checks
