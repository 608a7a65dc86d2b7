"""A toy model component: every token becomes a short sine beep. Shows how a model plugin looks."""

from __future__ import annotations

from typing import Any, Optional

import torch

from tts_zoo.interfaces import Sampler, TextFrontend, TTSModel


class _Letters(TextFrontend):
    symbols = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)]

    def phonemize(self, text: str) -> str:
        return text.lower()

    def encode(self, phonemes: str) -> list[int]:
        return [self.symbols.index(c) for c in phonemes if c in self.symbols]


class SineTTS(TTSModel):
    """A toy model that says every token as a short sine beep (shows a model plugin).

    Args:
        sampler: A sampler, to show nested components (unused by the toy).
        sample_rate: Output sample rate in Hz.
        beep_ms: Length of one token's beep in milliseconds.
    """

    def __init__(self, sampler: Optional[Sampler] = None, sample_rate: int = 24000, beep_ms: float = 60.0):
        super().__init__()
        self.sampler = sampler
        self.sample_rate = sample_rate
        self.beep = int(sample_rate * beep_ms / 1000)
        self.frontend = _Letters()

    @torch.inference_mode()
    def synthesize(self, tokens: torch.Tensor, style: Optional[torch.Tensor] = None, **options: Any) -> torch.Tensor:
        t = torch.arange(self.beep) / self.sample_rate
        beeps = [torch.sin(2 * torch.pi * (200 + 20 * int(tok)) * t) * (int(tok) > 0) for tok in tokens.flatten()]
        return torch.cat(beeps) if beeps else torch.zeros(0)
