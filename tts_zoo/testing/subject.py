"""The component under test: how the kit makes instances of it, and the helpers every check uses.

A :class:`Subject` is made from a registered name (``subject("vocoder", "istftnet", dim_in=16)``:
built through the registry, so the recipe's validation runs too), from a class and its constructor
arguments (``subject(MyVocoder, dim_in=16)``) or from an instance (``subject(my_vocoder)``: checks
work on deep copies and never change it).

The contract's input widths (a vocoder's channels, a duration model's style width, ...) are read from
``sizes`` when given, else from the constructor arguments named in :data:`SIZE_ARGS` (the values the
component was built with, defaults included; for an instance, its attributes of those names).
"""

from __future__ import annotations

import copy
import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from tts_zoo.catalogue import REQUIRED, ComponentInfo
from tts_zoo.registry import Registry

# contract size → the constructor arguments that give it, per kind flavour (first found wins)
SIZE_ARGS: dict[str, dict[str, tuple[str, ...]]] = {
    "text_encoder": {"n_symbols": ("n_symbols", "vocab_size")},
    "language_model": {"n_symbols": ("vocab_size", "n_symbols")},
    "style_diffusion": {"embedding_features": ("embedding_features",)},
    "duration_model": {"channels": ("d_hid", "channels"), "style_dim": ("style_dim",)},
    "vocoder": {"channels": ("dim_in", "channels"), "style_dim": ("style_dim",)},
    "aligner": {"n_mels": ("input_dim", "n_mels"), "n_symbols": ("n_token", "n_symbols")},
}
DEFAULT_SIZES = {"n_mels": 80}  # the project's log-mel (tts_zoo.audio.log_mel) has 80 bands


@dataclass
class Subject:
    """A component under test. ``make()`` returns a fresh instance built with torch and Python seeded
    (the same seed gives the same weights); ``kwargs`` are its resolved constructor arguments."""

    kind: str
    cls: type
    label: str
    factory: Callable[[], Any]
    kwargs: dict[str, Any]
    info: Optional[ComponentInfo]
    registry: Registry
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def flavour(self) -> str:
        """The kind, told apart where one kind has two contracts (style encoder / style diffusion)."""
        from tts_zoo.interfaces import StyleDiffusion, StyleEncoder

        if issubclass(self.cls, StyleDiffusion):
            return "style_diffusion"
        if issubclass(self.cls, StyleEncoder):
            return "style_encoder"
        if self.kind == "pitch_extractor":
            return f"pitch_extractor_{getattr(self.cls, 'input_kind', 'mel')}"
        return self.kind

    def make(self, seed: int = 0) -> Any:
        seed_all(seed)
        return self.factory()

    def size(self, name: str) -> int:
        """A width of the contract's inputs (see the module docstring)."""
        if name in self.sizes:
            return int(self.sizes[name])
        for arg in SIZE_ARGS.get(self.flavour, {}).get(name, ()):
            if isinstance(self.kwargs.get(arg), int):
                return self.kwargs[arg]
        if name in DEFAULT_SIZES:
            return DEFAULT_SIZES[name]
        args = SIZE_ARGS.get(self.flavour, {}).get(name, ())
        raise ValueError(f"{self.label}: the check needs the {self.flavour} contract's '{name}'; found no constructor "
                         f"argument {' or '.join(repr(a) for a in args) or 'for it'}: pass sizes={{'{name}': N}}")


def subject(component: Any, name: Optional[str] = None, /, *, registry: Optional[Registry] = None,
            sizes: Optional[Mapping[str, int]] = None, **kwargs: Any) -> Subject:
    """A :class:`Subject` from ``(kind, name, **kwargs)``, ``(cls, **kwargs)`` or an instance."""
    from tts_zoo import registry as registry_module

    reg = registry if registry is not None else registry_module.default
    sizes = dict(sizes or {})
    if isinstance(component, str):
        if name is None:
            raise TypeError("subject(kind, name, **kwargs): name the component, e.g. subject('vocoder', 'istftnet')")
        info = reg.resolve(name, component)
        resolved = {p.name: p.default for p in info.params if p.default != REQUIRED} | kwargs
        block = {"component": name, **kwargs}
        return Subject(info.kind, reg.load_class(info), f"{info.kind} '{name}'",
                       lambda: reg.build_component(block, info.kind), resolved, info, reg, sizes)
    if name is not None:
        raise TypeError("a name goes with a kind: subject('vocoder', 'istftnet'), not with a class or an instance")
    cls = component if isinstance(component, type) else type(component)
    kind = reg.kind_of_class(cls)
    if kind is None:
        raise TypeError(f"{cls.__qualname__} implements no kind's interface (subclass one of tts_zoo.interfaces)")
    params = inspect.signature(cls.__init__).parameters
    if isinstance(component, type):
        defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
        resolved, factory = defaults | kwargs, lambda: cls(**kwargs)
    else:
        if kwargs:
            raise TypeError("constructor arguments go with a class or a registered name, not with an instance")
        resolved = {n: getattr(component, n) for n in params if n != "self" and hasattr(component, n)}
        factory = lambda: copy.deepcopy(component)  # noqa: E731 - the checks never touch the caller's object
    return Subject(kind, cls, f"{kind} {cls.__qualname__}", factory, resolved, catalogue_entry(reg, cls), reg, sizes)


def catalogue_entry(reg: Registry, cls: type) -> Optional[ComponentInfo]:
    """The latest catalogue entry whose target is ``cls`` (None when no installed plugin lists it)."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    found = [c for c in reg.components if c.target == target]
    return max(found, key=lambda c: c.version) if found else None


# ---------------------------------------------------------------- helpers shared by the checks


def seed_all(seed: int = 0) -> None:
    """Seed torch and Python's ``random`` (components that draw noise or dropout use them)."""
    torch.manual_seed(seed)
    random.seed(seed)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> Tensor:
    """Standard normal values that depend only on ``seed`` (drawn in float64 on the CPU, then cast),
    so the same inputs reach every dtype and device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def assert_shape(what: str, x: Any, shape: tuple[int, ...], dtype: Optional[torch.dtype] = None) -> None:
    """``x`` is a finite tensor of ``shape`` (and ``dtype``)."""
    assert isinstance(x, Tensor), f"{what}: expected a tensor, got {type(x).__name__}"
    assert tuple(x.shape) == tuple(shape), f"{what}: shape {list(x.shape)}, the contract says {list(shape)}"
    if dtype is not None:
        assert x.dtype == dtype, f"{what}: dtype {x.dtype}, expected {dtype} (the inputs' dtype)"
    if x.is_floating_point():
        assert bool(torch.isfinite(x).all()), f"{what}: has NaN/Inf values"


def assert_gradients(what: str, loss: Tensor, inputs: Mapping[str, Tensor], module: Any = None) -> None:
    """Back-propagate ``loss``; each named input and (when ``module`` has trainable parameters) the
    parameters must receive a finite, nonzero gradient."""
    assert loss.requires_grad, (f"{what}: the output carries no gradient (computed under torch.no_grad() / "
                                "inference_mode, or detached); the contract says gradients flow through it")
    loss.backward()
    for name, x in inputs.items():
        assert x.grad is not None and bool(x.grad.abs().sum() > 0), (
            f"{what}: no gradient reaches '{name}' (detached, or computed under torch.no_grad()?)")
        assert bool(torch.isfinite(x.grad).all()), f"{what}: the gradient w.r.t. '{name}' has NaN/Inf values"
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad] if module is not None else []
    if params:
        grads = [(n, p.grad) for n, p in params if p.grad is not None]
        assert any(bool(g.abs().sum() > 0) for _, g in grads), f"{what}: no gradient reaches the parameters"
        bad = [n for n, g in grads if not bool(torch.isfinite(g).all())]
        assert not bad, f"{what}: NaN/Inf gradients in {bad[:5]}"


def weighted_sum(outputs: Any, seed: int = 99) -> Tensor:
    """A scalar that depends on every element of ``outputs`` (tensors, or nested lists/tuples of
    them) with fixed random weights, so no gradient cancels by symmetry."""
    if isinstance(outputs, Tensor):
        if not outputs.is_floating_point():
            return outputs.new_zeros((), dtype=torch.float32)
        w = randn(*outputs.shape, seed=seed, dtype=outputs.dtype, device=outputs.device)
        return (outputs * w).sum()
    return sum((weighted_sum(o, seed + i) for i, o in enumerate(outputs) if o is not None), torch.zeros(()))
