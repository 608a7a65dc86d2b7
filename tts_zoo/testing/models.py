"""Checks of the kinds that take text: ``TextFrontend`` and the whole ``TTSModel``.

The sentence is ``sizes["text"]`` when given (a frontend for another language), else an English one.
A model is checked through the interface the generic ``tts_zoo.Synthesizer`` drives (its declared
attributes, ``reference_style``, ``synthesize``, ``prepare_for_inference``); gradients and dtype moves
are left to its components' own checks.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

import torch
from torch import Tensor

from tts_zoo.testing.modules import assert_same, reload
from tts_zoo.testing.subject import Subject, seed_all

TEXT = "The quick brown fox jumps over the lazy dog."


def _text(s: Subject) -> str:
    return str(s.sizes.get("text", TEXT))


def check_frontend_contract(s: Subject) -> None:
    frontend = s.make()
    symbols = frontend.symbols
    assert isinstance(symbols, list) and symbols and all(isinstance(x, str) for x in symbols), (
        "symbols must be a non-empty list of str (the symbol table: id = index)")
    phonemes = frontend.phonemize(_text(s))
    assert isinstance(phonemes, str) and phonemes.strip(), f"phonemize({_text(s)!r}) gave {phonemes!r}"
    ids = frontend(_text(s))
    assert isinstance(ids, list) and ids, f"frontend({_text(s)!r}) must give a non-empty list of ids, got {ids!r}"
    assert all(type(i) is int for i in ids), "token ids must be Python ints"
    bad = [i for i in ids if not 0 <= i < len(symbols)]
    assert not bad, f"ids outside the symbol table (0 .. {len(symbols) - 1}): {bad[:5]}"
    assert ids == frontend.encode(phonemes), "frontend(text) must equal encode(phonemize(text))"
    assert ids == frontend(_text(s)), "two calls on the same text give different ids"
    described = frontend.describe()
    assert isinstance(described, dict), "describe() must return a dict"
    json.dumps(described)  # stored in manifests and checkpoint headers


def _model_inputs(model: Any, s: Subject) -> tuple[Tensor, Optional[Tensor]]:
    ids = list(model.token_prefix) + model.frontend(_text(s))
    if model.max_tokens is not None:
        ids = ids[: model.max_tokens]
    style = None
    if model.requires_reference:
        t = torch.arange(model.sample_rate) / model.sample_rate  # one second of a 150 Hz tone
        style = model.reference_style(0.3 * torch.sin(2 * math.pi * 150 * t))
    return torch.tensor([ids]), style


def _synthesize(model: Any, s: Subject) -> Tensor:
    tokens, style = _model_inputs(model, s)
    seed_all(0)
    with torch.inference_mode():
        return model.synthesize(tokens, style)


def check_model_contract(s: Subject) -> None:
    from tts_zoo.interfaces import TextFrontend

    model = s.make()
    assert isinstance(model.frontend, TextFrontend), "model.frontend must be a TextFrontend"
    assert isinstance(model.sample_rate, int) and model.sample_rate > 0, "sample_rate must be a positive int (Hz)"
    assert isinstance(model.token_prefix, tuple) and all(type(i) is int for i in model.token_prefix), (
        "token_prefix must be a tuple of ints")
    assert model.max_tokens is None or (isinstance(model.max_tokens, int) and model.max_tokens > len(model.token_prefix))
    assert isinstance(model.end_trim_samples, int) and model.end_trim_samples >= 0
    assert isinstance(model.inference_block({"component": "x"}), dict), "inference_block(block) must return a dict"
    assert model.prepare_for_inference() is model and not model.training, (
        "prepare_for_inference() must return the model, in eval mode")
    tokens, style = _model_inputs(model, s)
    if style is not None and model.style_size is not None:
        assert tuple(style.shape) == (1, model.style_size), (
            f"reference_style(wave) gave {list(style.shape)}, expected [1, style_size={model.style_size}]")
    wave = _synthesize(model, s)
    assert isinstance(wave, Tensor) and wave.dim() == 1 and wave.numel() > 0, (
        f"synthesize(tokens [1, T], style) must return a waveform [S], got {getattr(wave, 'shape', wave)}")
    assert wave.is_floating_point() and bool(torch.isfinite(wave).all()), "the waveform must be finite floats"


def check_model_state_dict_round_trip(s: Subject) -> None:
    model = s.make()
    fresh = reload(s, model)  # before prepare_for_inference, which may fold weight norm
    expected = _synthesize(model.prepare_for_inference(), s)
    assert_same("synthesize after a state-dict round trip", _synthesize(fresh.prepare_for_inference(), s),
                expected, atol=1e-5)


FRONTEND_CHECKS = {"contract": check_frontend_contract}
MODEL_CHECKS = {"contract": check_model_contract, "state_dict_round_trip": check_model_state_dict_round_trip}
