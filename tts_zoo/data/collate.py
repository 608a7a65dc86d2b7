"""Batching samples: sort by mel length (longest first) and pad, as the reference ``Collater``.

The first eight fields of :class:`Batch` are the reference's return value, in its order
(``waves, texts, input_lengths, ref_texts, ref_lengths, mels, output_lengths, ref_mels``); the
speaker ids, paths and (with F0 labels) the padded F0 follow. The OOV guard drops token ids
``>= n_symbols`` (an embedding table smaller than the frontend's symbol table would otherwise index
out of range), counting them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from tts_zoo.data.dataset import Sample

logger = logging.getLogger(__name__)

__all__ = ["Batch", "Collater"]


class Batch(NamedTuple):
    """A padded batch, items sorted by mel length, longest first. Shapes: B items, T tokens, F frames."""

    waves: list[Tensor]  # B × [S_b] float32 (the padded 24 kHz waves, unpadded across the batch)
    texts: Tensor  # [B, T] long, 0-padded
    input_lengths: Tensor  # [B] long
    ref_texts: Tensor  # [B, T'] long: the OOD texts
    ref_lengths: Tensor  # [B] long
    mels: Tensor  # [B, 80, F] float32, 0-padded
    output_lengths: Tensor  # [B] long (mel frames)
    ref_mels: Tensor  # [B, 80, ref_frames] float32, 0-padded
    speakers: Tensor  # [B] long
    ref_speakers: Tensor  # [B] long
    paths: list[str]
    f0: Optional[Tensor] = None  # [B, F] float32 Hz: 0 unvoiced or padding, NaN = label missing; None without labels

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "Batch":
        """The batch with every tensor (and each wave) on ``device``."""
        moved = [
            [w.to(device, non_blocking=non_blocking) for w in v] if name == "waves"
            else v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v
            for name, v in zip(self._fields, self)
        ]
        return Batch(*moved)


class Collater:
    """Samples → :class:`Batch`.

    Args:
        n_symbols: token ids at or above this are dropped (None: keep all).
        ref_frames: width of ``ref_mels`` (reference: 192).
    """

    def __init__(self, n_symbols: Optional[int] = None, ref_frames: int = 192):
        self.n_symbols = n_symbols
        self.ref_frames = ref_frames
        self.dropped_tokens = 0

    def _guard(self, tokens: Tensor) -> Tensor:
        if self.n_symbols is None:
            return tokens
        keep = tokens < self.n_symbols
        if not bool(keep.all()):
            n = int((~keep).sum())
            self.dropped_tokens += n
            logger.warning("dropped %d token id(s) >= n_symbols=%d (%d so far)", n, self.n_symbols, self.dropped_tokens)
            tokens = tokens[keep]
        return tokens

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        order = sorted(range(len(samples)), key=lambda i: -samples[i].mel.shape[-1])  # stable: ties keep order
        samples = [samples[i] for i in order]
        texts = [self._guard(s.tokens) for s in samples]
        ood = [self._guard(s.ood_tokens) for s in samples]
        n, n_mels = len(samples), samples[0].mel.shape[0]
        mels = torch.zeros(n, n_mels, max(s.mel.shape[-1] for s in samples))
        ref_mels = torch.zeros(n, n_mels, self.ref_frames)
        padded_texts = torch.zeros(n, max(len(t) for t in texts), dtype=torch.long)
        padded_ood = torch.zeros(n, max(len(t) for t in ood), dtype=torch.long)
        for b, s in enumerate(samples):
            mels[b, :, : s.mel.shape[-1]] = s.mel
            ref = s.ref_mel[:, : self.ref_frames]
            ref_mels[b, :, : ref.shape[-1]] = ref
            padded_texts[b, : len(texts[b])] = texts[b]
            padded_ood[b, : len(ood[b])] = ood[b]
        return Batch(
            waves=[s.wave for s in samples],
            texts=padded_texts,
            input_lengths=torch.tensor([len(t) for t in texts], dtype=torch.long),
            ref_texts=padded_ood,
            ref_lengths=torch.tensor([len(t) for t in ood], dtype=torch.long),
            mels=mels,
            output_lengths=torch.tensor([s.mel.shape[-1] for s in samples], dtype=torch.long),
            ref_mels=ref_mels,
            speakers=torch.tensor([s.speaker for s in samples], dtype=torch.long),
            ref_speakers=torch.tensor([s.ref_speaker for s in samples], dtype=torch.long),
            paths=[s.path for s in samples],
            f0=self._f0(samples, mels.shape[-1]),
        )

    @staticmethod
    def _f0(samples: Sequence[Sample], n_frames: int) -> Optional[Tensor]:
        if all(s.f0 is None for s in samples):
            return None
        f0 = torch.zeros(len(samples), n_frames)
        for b, s in enumerate(samples):
            if s.f0 is None:  # an item without labels in a labelled batch: treat as missing
                f0[b] = float("nan")
            else:
                f0[b, : s.f0.shape[-1]] = s.f0
        return f0
