"""Monotonic alignment search and the attention post-processing of StyleTTS 2 training.

Monotonic alignment search (MAS; Kim et al. 2020, Glow-TTS) finds, for each item, the path through
a [T_text, T_frames] score matrix that maximises the summed score under the constraints: every
frame maps to exactly one token, the path starts at (0, 0) and ends at (t_text-1, t_frames-1), and
the token index never decreases and advances by at most one per frame. StyleTTS 2 (Li et al. 2023,
3.2.2) runs it on the text aligner's soft attention to get a hard alignment and the token durations.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from monotonic_alignment_search import maximum_path_cython
from torch import Tensor


def mask_from_lens(values: Tensor, text_lengths: Tensor, frame_lengths: Tensor) -> Tensor:
    """values [B, T_text, T_frames], lengths [B] → mask [B, T_text, T_frames] in values' dtype,
    1 where both the token and the frame lie inside their item's lengths."""
    _, n_text, n_frames = values.shape
    text_ok = torch.arange(n_text, device=values.device) < text_lengths.to(values.device).unsqueeze(1)
    frame_ok = torch.arange(n_frames, device=values.device) < frame_lengths.to(values.device).unsqueeze(1)
    return (text_ok.unsqueeze(2) & frame_ok.unsqueeze(1)).to(values.dtype)


def maximum_path(values: Tensor, mask: Tensor) -> Tensor:
    """Monotonic alignment search. values, mask [B, T_text, T_frames] → path [B, T_text, T_frames]
    (0/1, values' dtype and device).

    Lengths are read from the mask (``mask.sum(1)[:, 0]`` tokens, ``mask.sum(2)[:, 0]`` frames);
    scores accumulate in float32; on a tie while backtracking the path stays on the current token.
    This is the reference's layout and tie rule (resemble-ai ``monotonic_align``); the Cython core
    of the ``monotonic-alignment-search`` package computes exactly that (it runs on the CPU).
    """
    if values.shape != mask.shape or values.dim() != 3:
        raise ValueError(f"maximum_path: values {tuple(values.shape)} and mask {tuple(mask.shape)} must be equal [B, T, F]")
    with torch.no_grad():
        # The Cython core needs C-contiguous float32 buffers.
        path = maximum_path_cython(values.detach().float().contiguous(), mask.detach().float().contiguous())
    return path.to(device=values.device, dtype=values.dtype)


class MonotonicAlignment(NamedTuple):
    """Post-processed aligner attention (all [B, T, F/2] except ``durations`` [B, T])."""

    attention: Tensor  # soft attention without the SOS row (stage 1: zero outside the lengths)
    mask: Tensor  # mask_from_lens of the attention (float, 1 = inside)
    path: Tensor  # hard monotonic alignment (0/1)
    durations: Tensor  # frames per token, path.sum(-1) (the duration target d_gt)


def monotonic_alignment(
    s2s_attn: Tensor, text_lengths: Tensor, frame_lengths: Tensor, *, zero_padding: bool = False
) -> MonotonicAlignment:
    """The training loops' attention post-processing (train_first.py / train_second.py).

    Drops the decoder's SOS row of ``s2s_attn`` [B, T+1, F/2]; with ``zero_padding`` (stage 1) zeroes
    the entries outside the text and frame lengths (out of place; the gradient flows into the kept
    entries, as the reference's in-place fill does); runs MAS within
    ``mask_from_lens(attn, text_lengths, frame_lengths)``. ``frame_lengths`` are aligner frames:
    mel lengths // 2 ** n_down (n_down = 1).
    """
    attention = s2s_attn[:, 1:]
    mask = mask_from_lens(attention, text_lengths, frame_lengths)
    if zero_padding:
        attention = attention.masked_fill(mask == 0, 0.0)
    path = maximum_path(attention, mask)
    return MonotonicAlignment(attention, mask, path, path.sum(-1))
