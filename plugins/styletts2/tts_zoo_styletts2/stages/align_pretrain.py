"""Text-aligner pretraining: train StyleTTS 2's ASR-CNN aligner from nothing on any prepared corpus.

The reference trains this model separately (yl4579/AuxiliaryASR, ``trainer.py``) and ships the result
as ``Utils/ASR``; without those files (another language, no download) stage 1 would start from a random
aligner and never find an alignment. This stage does the same training inside a tts-zoo recipe, on the
recipe's own data, so that ``stages: [styletts2_align_pretrain, styletts2_stage1, ...]`` trains from
nothing (or a separate run's result is loaded with ``text_aligner.weights``).

Shapes: B batch, T tokens, F mel frames, F/2 aligner frames.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.audio import length_to_mask
from tts_zoo.interfaces import Stage, StepContext
from tts_zoo_styletts2.aligner.monotonic import mask_from_lens, maximum_path
from tts_zoo_styletts2.losses.aligner import AlignerS2SLoss
from tts_zoo_styletts2.stages.common import ctc_loss, ctc_path, ctc_targets, require_modules, step_limit


def guided_attention_weights(text_lengths: Tensor, frame_lengths: Tensor, n_text: int, n_frames: int,
                             sigma: float) -> Tensor:
    """Penalty map of guided attention (Tachibana et al. 2017, "Efficiently trainable text-to-speech
    system based on deep convolutional networks with guided attention"): W[b, t, f] =
    1 − exp(−(t/T_b − f/F_b)² / (2σ²)) inside the item's lengths, 0 outside. → [B, n_text, n_frames]."""
    t = torch.arange(n_text, device=text_lengths.device).float().view(1, -1, 1) / text_lengths.view(-1, 1, 1).float()
    f = torch.arange(n_frames, device=text_lengths.device).float().view(1, 1, -1) / frame_lengths.view(-1, 1, 1).float()
    weights = 1.0 - torch.exp(-((t - f) ** 2) / (2.0 * sigma**2))
    inside = mask_from_lens(weights, text_lengths, frame_lengths)
    return weights * inside


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two token lists (substitutions, insertions, deletions cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def ctc_token_error_rate(ctc_logits: Tensor, batch: Any) -> Tensor:
    """Token error rate of greedy CTC decoding (best token per frame, repeats merged, blanks dropped)
    against the text without its framing: the aligner's skill as a phoneme recognizer (AuxiliaryASR's
    validation "wer", on tokens)."""
    targets, target_lengths = ctc_targets(batch.texts, batch.input_lengths)
    best = ctc_logits.argmax(-1)
    errors = 0
    for row, n_frames, target, n in zip(best, (batch.output_lengths // 2).tolist(), targets, target_lengths.tolist()):
        decoded = torch.unique_consecutive(row[:n_frames])
        errors += edit_distance(decoded[decoded != 0].tolist(), target[:n].tolist())
    return torch.tensor(errors / max(1, int(target_lengths.sum())))


def focus_rate(attention: Tensor, text_lengths: Tensor, frame_lengths: Tensor) -> Tensor:
    """Mean over frames of the largest attention weight a frame gives any token (FastSpeech's focus
    rate, on the frame axis: 1 = every frame attends to one token, 1/T = uniform). attention [B, T, F/2]."""
    per_frame = attention.max(dim=1).values  # [B, F/2]
    inside = (~length_to_mask(frame_lengths, attention.shape[-1])).float()  # the mask is True on padding
    return (per_frame * inside).sum() / inside.sum()


def path_agreement(attention: Tensor, text_lengths: Tensor, frame_lengths: Tensor) -> Tensor:
    """Fraction of frames whose most-attended token is the token the monotonic path (MAS) gives them:
    1 for a clean monotonic attention, low for a smeared or non-monotonic one."""
    mask = mask_from_lens(attention, text_lengths, frame_lengths)
    path = maximum_path(attention * mask, mask)
    agree = (attention.argmax(dim=1) == path.argmax(dim=1)).float()
    inside = (~length_to_mask(frame_lengths, attention.shape[-1])).float()
    return (agree * inside).sum() / inside.sum()


class AlignerPretrainStage(Stage):
    """Text-aligner pretraining: CTC + attention-decoder cross-entropy (+ guided attention), from nothing.

    The reference's auxiliary ASR training (yl4579/AuxiliaryASR ``trainer.py``: loss = CTC on the CNN's
    frame logits + cross-entropy of the teacher-forced attention decoder; the loop's
    ``train.optimizer.grad_clip`` clips the gradient norm where the reference clipped values at 5)
    on the recipe's corpus, with one addition for training from scratch in minutes: the guided-attention
    loss of Tachibana et al. 2017 pulls the decoder's attention towards the diagonal, so that it becomes
    monotonic in a few hundred steps instead of a few thousand (``lambda_guide: 0`` turns it off and gives
    exactly the reference's objective). CTC targets are the text ids without the framing pad 0, which is
    CTC's blank.

    Trained: the text aligner only. Logged: ``ctc``, ``s2s``, ``guide``; validation adds the CTC head's
    greedy token error rate, the attention's focus rate and its agreement with the monotonic path (both
    → 1 as the alignment sharpens) and the decoder's token accuracy. ``benchmarks/alignment.py`` measures
    the resulting word boundaries against espeak-ng's own timings.

    Args:
        epochs: Epochs of this stage.
        lambda_ctc: Weight of the CTC loss.
        lambda_s2s: Weight of the attention decoder's cross-entropy.
        lambda_guide: Weight of the guided-attention loss (0 = the reference's objective).
        guide_sigma: Width of the guided-attention diagonal, as a fraction of the lengths (Tachibana et al.: 0.2).
        guide_target: What the attention is guided towards: "diagonal" (Tachibana et al.), or "ctc": after the warm-up, the CTC head's own forced alignment (MAS over its log-probabilities), which teaches the decoder where each token really is.
        batch_size: Items per batch in this stage (None = the recipe's data.batch_size); the aligner is small, larger batches train it faster.
        lr: Learning rate of this stage (None = train.optimizer.lr).
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
        ctc_warmup_epochs: Epochs at the start that train the CNN with the CTC loss alone (no attention decoder: several times cheaper per step); from scratch, CTC first leaves its plateau, then the decoder learns to attend on features that already tell phonemes apart.
    """

    def __init__(
        self,
        epochs: int = 50,
        lambda_ctc: float = 1.0,
        lambda_s2s: float = 1.0,
        lambda_guide: float = 10.0,
        guide_sigma: float = 0.2,
        guide_target: Literal["diagonal", "ctc"] = "diagonal",
        ctc_warmup_epochs: int = 0,
        batch_size: Optional[int] = None,
        lr: Optional[float] = None,
        max_steps: Optional[int] = None,
    ):
        self.epochs = epochs
        self.max_steps = step_limit(max_steps)
        self.weights = {"ctc": lambda_ctc, "s2s": lambda_s2s, "guide": lambda_guide}
        self.guide_sigma = guide_sigma
        self.guide_target = guide_target
        self.ctc_warmup_epochs = ctc_warmup_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.s2s_loss = AlignerS2SLoss()

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        require_modules(model, "styletts2_align_pretrain", ("text_aligner",))

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        group: dict[str, Any] = {"params": list(model.text_aligner.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        return {"text_aligner": group}

    def _losses(self, model: nn.Module, batch: Any) -> tuple[dict[str, Tensor], Any, Tensor]:
        texts, text_lengths, mels = batch.texts, batch.input_lengths, batch.mels
        frame_lengths = batch.output_lengths // 2
        n_frames = (mels.shape[-1] + 1) // 2
        out = model.text_aligner(mels, length_to_mask(frame_lengths, n_frames), texts)
        terms = {"ctc": ctc_loss(out.ctc_logits, batch),
                 "s2s": self.s2s_loss(out.s2s_logits, texts, text_lengths)}
        attention = out.attention[:, 1:]  # drop the SOS row, as stage 1 does: [B, T, F/2]
        if self.weights["guide"]:
            if self.guide_target == "ctc":
                path = ctc_path(out.ctc_logits, texts, text_lengths, frame_lengths)
                w = mask_from_lens(path, text_lengths, frame_lengths) * (1.0 - path)
            else:
                w = guided_attention_weights(text_lengths, frame_lengths, attention.shape[1], attention.shape[2], self.guide_sigma)
            # attention mass off the target, per token (each row sums to 1): 0 = all on it, → 1 = none
            terms["guide"] = (attention * w).sum() / text_lengths.sum()
        return terms, out, frame_lengths

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, Tensor]:
        if ctx.epoch < self.ctc_warmup_epochs:
            ctc = ctc_loss(model.text_aligner.frame_logits(batch.mels), batch)
            return {"loss": self.weights["ctc"] * ctc, "ctc": ctc.detach()}
        terms, _, _ = self._losses(model, batch)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    def validation_step(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        terms, out, frame_lengths = self._losses(model, batch)
        attention, lengths = out.attention[:, 1:], batch.input_lengths
        predicted = out.s2s_logits.argmax(-1)
        correct = sum(float((p[:n] == t[:n]).float().mean()) for p, t, n in zip(predicted, batch.texts, lengths.tolist()))
        return {**terms, "ctc_token_error": ctc_token_error_rate(out.ctc_logits, batch),
                "focus_rate": focus_rate(attention, lengths, frame_lengths),
                "path_agreement": path_agreement(attention, lengths, frame_lengths),
                "token_accuracy": torch.tensor(correct / len(lengths))}

    def examples(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        _, out, frame_lengths = self._losses(model, batch)
        n_text, n_frames = int(batch.input_lengths[0]), int(frame_lengths[0])
        return {"image/attention": out.attention[0, 1 : n_text + 1, :n_frames]}
