"""JDC pitch-extractor pretraining from cached DSP F0 labels (yl4579/PitchExtractor's training).

Without the official ``Utils/JDC/bst.t7`` the JDC network is random and stages 1/2 get no pitch. This
stage trains it from F0 labels that a signal-processing tracker (``data.f0_labels``, e.g. WORLD DIO)
computed once per file before training (:mod:`tts_zoo.data.f0_labels`), so trained models keep the
official layout and a cheap training-time F0 (the mel → F0 network stages 1/2 call).

Shapes: B batch, F mel frames (hop 300 at 24 kHz), L crop frames.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.audio import length_to_mask
from tts_zoo.errors import TTSZooError
from tts_zoo.interfaces import Stage, StageData, StepContext
from tts_zoo_styletts2.stages.common import module_groups, require_modules, step_limit


class PitchCrops(NamedTuple):
    """Random fixed-length crops of a batch's mels and F0 labels."""

    mel: Tensor  # [B, n_mels, L]
    f0: Tensor  # [B, L] Hz: 0 = unvoiced, NaN = label missing
    known: Tensor  # [B, L] bool: inside the item and labelled


def pitch_crops(batch: Any, frames: int) -> PitchCrops:
    """One random window of ``frames`` mel frames per item (the reference's 192-frame crops); an
    item shorter than that is taken whole and the rest of its window masked out."""
    lengths = batch.output_lengths
    width = min(frames, batch.mels.shape[-1])
    starts = [int(torch.randint(0, max(1, int(n) - width + 1), ()).item()) for n in lengths]
    mel = torch.stack([batch.mels[b, :, s:s + width] for b, s in enumerate(starts)])
    f0 = torch.stack([batch.f0[b, s:s + width] for b, s in enumerate(starts)])
    inside = ~length_to_mask(lengths - torch.tensor(starts, device=lengths.device), width)
    return PitchCrops(mel, f0, inside & torch.isfinite(f0))


def f0_errors(pred: Tensor, target: Tensor, known: Tensor, silence_logits: Tensor) -> dict[str, Tensor]:
    """Validation metrics on labelled frames: ``gpe`` (share of label-voiced frames off by > 20 %),
    ``cents`` (median |error| in cents on label-voiced frames; the prediction floored at 1 Hz) and
    ``voicing_acc`` (the detector's voiced/unvoiced call vs the label, on every labelled frame)."""
    voiced = known & (target > 0)
    out = {"voicing_acc": ((silence_logits < 0) == (target > 0))[known].float().mean()}
    if voiced.any():
        ratio = pred[voiced].clamp_min(1.0) / target[voiced]
        out["gpe"] = ((ratio - 1).abs() > 0.2).float().mean()
        out["cents"] = (1200 * torch.log2(ratio)).abs().median()
    return out


class JDCPitchPretrainStage(Stage):
    """JDC pitch-extractor pretraining: F0 regression + voicing detection on DSP-tracker labels.

    As yl4579/PitchExtractor trains JDC (``trainer.py``/``train.py``, checked): random crops of
    ``crop_frames`` (192) mel frames; the regression branch is fit to the label in **linear Hz** with a
    smooth-L1 loss (``nn.SmoothL1Loss``, β = 1) weighted by ``lambda_f0`` (0.1), on every frame
    (unvoiced frames have target 0, which is what stages 1/2 feed the decoder's source); the detector
    branch's summed logits are fit to the silence label (F0 == 0) with ``BCEWithLogitsLoss``; AdamW at
    lr 3e-4 (the reference's one-cycle schedule is the recipe's business). Differences: padding frames
    and frames whose label is missing (tracker failure) are masked out instead of counted, and the
    pool block's dropout is not applied (StyleTTS 2's JDC forward never applies it).

    One addition: from random weights the regression head learns Hz values very slowly (its input is
    a BiLSTM output in [-1, 1] and AdamW moves each weight by ~lr a step: the reference needed tens of
    thousands of steps), so a fresh run multiplies the head's initial weights by ``head_init_scale``.
    Measured on a tiny JDC (widths 8-32) and gliding tones at lr 3e-4: unscaled, validation GPE is
    still 1.0 after 60 steps; scaled by 30 it is 0.02 after 100 (on 15 espeak-ng clips: 0.29 after 160).
    It is skipped on resume, and when the JDC starts from weights (its ``weights`` key or
    ``train.init_from``): set it to 1 to leave the head alone in other cases of a pretrained JDC.

    Trained: ``model.pitch_extractor`` only (BatchNorm statistics included). Needs ``data.f0_labels``;
    the labels are computed, or read from the cache, when the stage starts (:meth:`datasets`).
    Validation: ``f0`` / ``voicing`` losses on whole utterances, ``gpe``, ``cents``, ``voicing_acc``
    (:func:`f0_errors`).

    Args:
        epochs: Epochs of this stage (the reference trains 100 on VCTK).
        crop_frames: Length of the random training crops in mel frames (reference: 192).
        lambda_f0: Weight of the smooth-L1 F0 loss in Hz (reference: 0.1).
        lambda_voicing: Weight of the voicing (silence) BCE loss (reference: 1).
        lr: Learning rate of the pitch extractor (reference: 3e-4; None = train.optimizer.lr).
        head_init_scale: Factor on the F0 head's initial weights in a fresh run (1 = the reference's init).
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
    """

    def __init__(
        self,
        epochs: int = 100,
        crop_frames: int = 192,
        lambda_f0: float = 0.1,
        lambda_voicing: float = 1.0,
        lr: Optional[float] = 3e-4,
        head_init_scale: float = 30.0,
        max_steps: Optional[int] = None,
    ):
        if crop_frames < 8:
            raise ValueError(f"styletts2_pitch_pretrain: crop_frames must be at least 8, got {crop_frames}")
        self.epochs = epochs
        self.max_steps = step_limit(max_steps)
        self.crop_frames = crop_frames
        self.lambda_f0, self.lambda_voicing = lambda_f0, lambda_voicing
        self.lr = lr
        self.head_init_scale = head_init_scale

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        require_modules(model, "styletts2_pitch_pretrain", ("pitch_extractor",))
        if not hasattr(model.pitch_extractor, "forward_with_voicing"):
            raise TTSZooError("styletts2_pitch_pretrain trains a JDC pitch extractor (model.pitch_extractor: "
                              f"{{component: jdc}}), not {type(model.pitch_extractor).__name__}")
        if recipe.data.f0_labels is None:
            raise TTSZooError("styletts2_pitch_pretrain needs F0 labels: set data.f0_labels in the recipe, "
                              "e.g. {component: dsp_pitch, method: dio}")
        block = recipe.model.get("pitch_extractor") or {}
        pretrained = bool(block.get("weights")) or bool(recipe.train.init_from)
        if not resumed and not pretrained and self.head_init_scale != 1:
            with torch.no_grad():  # see the class docstring: a fresh head learns Hz far too slowly
                model.pitch_extractor.classifier.weight.mul_(self.head_init_scale)

    def datasets(self, model: nn.Module, recipe: Any) -> StageData:
        """The recipe's speech manifests with their F0 labels attached (computed here when not cached)."""
        from tts_zoo.data.collate import Collater
        from tts_zoo.data.f0_labels import F0Labels
        from tts_zoo.train.data import speech_datasets

        data = recipe.data
        train_set, val_set = speech_datasets(recipe, model.frontend)
        for dataset, manifest in ((train_set, data.train), (val_set, data.val)):
            if dataset is not None:
                dataset.f0_labels = F0Labels.for_manifest(manifest, data.f0_labels, sample_rate=dataset.sample_rate,
                                                          pad_samples=dataset.pad_samples)
        return StageData(train_set, val_set, Collater(ref_frames=data.ref_frames))

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        return module_groups(model, ("pitch_extractor",), **({"lr": self.lr} if self.lr else {}))

    def _losses(self, model: nn.Module, mel: Tensor, f0: Tensor,
                known: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """(smooth-L1 F0 and voicing BCE on the ``known`` frames, predicted F0 [B, F], silence logits [B, F])."""
        pred, silence = model.pitch_extractor.forward_with_voicing(mel.unsqueeze(1))
        target = f0.nan_to_num(0.0)
        terms = {"f0": F.smooth_l1_loss(pred[known], target[known]),
                 "voicing": F.binary_cross_entropy_with_logits(silence[known], (target[known] == 0).float())}
        return terms, pred, silence

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, Tensor]:
        if getattr(batch, "f0", None) is None:
            raise TTSZooError("styletts2_pitch_pretrain: the batch has no F0 labels (data.f0_labels)")
        crops = pitch_crops(batch, self.crop_frames)
        if not crops.known.any():  # every label in the batch missing
            return {}
        terms, _, _ = self._losses(model, crops.mel, crops.f0, crops.known)
        loss = self.lambda_f0 * terms["f0"] + self.lambda_voicing * terms["voicing"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    def validation_step(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        if getattr(batch, "f0", None) is None:
            return {}
        known = ~length_to_mask(batch.output_lengths, batch.mels.shape[-1]) & torch.isfinite(batch.f0)
        if not known.any():
            return {}
        terms, pred, silence = self._losses(model, batch.mels, batch.f0, known)
        return {**terms, **f0_errors(pred, batch.f0.nan_to_num(0.0), known, silence)}
