"""Tiny components for registry/recipe tests (no model family needed)."""

from __future__ import annotations

from typing import Literal, Optional

from tts_zoo.interfaces import TTSModel, Vocoder


class ToyVocoder(Vocoder):
    """A vocoder that returns zeros.

    Args:
        channels: Input channels.
        rates: Upsampling rates.
        mode: How to upsample.
    """

    def __init__(self, channels: int = 4, rates: list[int] = (10, 6), mode: Literal["nearest", "linear"] = "nearest"):
        super().__init__()
        if channels <= 0:  # a constraint the catalogue's type cannot express (for constructor-error tests)
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels, self.rates, self.mode = channels, list(rates), mode

    def forward(self, aligned, f0, energy, style):  # pragma: no cover - never called
        raise NotImplementedError


class ToyModel(TTSModel):
    """A model made of one vocoder.

    Args:
        vocoder: The vocoder.
        hidden: Width.
        post: An optional second vocoder.
    """

    def __init__(self, vocoder: Vocoder, hidden: int, post: Optional[Vocoder] = None):
        super().__init__()
        self.vocoder, self.hidden, self.post = vocoder, hidden, post

    def synthesize(self, tokens, style=None, **options):  # pragma: no cover
        raise NotImplementedError


class NotAVocoder:
    """Claims to be a vocoder in a catalogue but is not."""

    def __init__(self):
        pass
