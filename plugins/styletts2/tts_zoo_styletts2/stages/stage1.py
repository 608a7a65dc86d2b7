"""StyleTTS 2 stage 1: acoustic pre-training (the reference's train_first.py)."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.errors import TTSZooError
from tts_zoo.interfaces import Stage, StepContext
from tts_zoo_styletts2.losses.adversarial import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss
from tts_zoo_styletts2.losses.aligner import AlignerMonoLoss, AlignerS2SLoss
from tts_zoo_styletts2.losses.slm import WavLMFeatureLoss
from tts_zoo_styletts2.losses.stft import MultiResolutionSTFTLoss
from tts_zoo_styletts2.stages.common import (
    AlignmentSource, align, crop, detached, discriminators, full_length_example, judge, module_groups, prosody_targets,
    require_modules, slm_feature_loss, step_limit, training_clips, weighted,
)

TRAINED = ("text_encoder", "style_encoder", "decoder", "text_aligner")


class StyleTTS2Stage1(Stage):
    """StyleTTS 2 stage 1: acoustic pre-training (reconstruction, TMA aligner, adversarial).

    Li et al. 2023 (StyleTTS 2), section 3.2.2 / appendix; the reference's ``train_first.py``. Each
    step: the text aligner's attention over the mel (its monotonic path by MAS; half of the time the
    soft attention instead) spreads the text encoder's features over the frames; on a random clip
    (≤ ``data.max_frames`` mel frames) the decoder reconstructs the speech from them, the real F0
    (pitch extractor, frozen) and energy, and the acoustic style of another clip of the utterance
    (multispeaker) or of the clip itself. Losses: the multi-resolution mel loss; from ``tma_epoch`` on
    (transferable monotonic aligner training), also the aligner's s2s and monotonic losses, the
    MPD/MSD generator loss (after a discriminator step) and, when the model has a WavLM
    discriminator, WavLM feature matching.

    Trained: text encoder, acoustic style encoder and decoder (every step); text aligner and MPD/MSD
    from ``tma_epoch``. PL-BERT, the prosody predictor and encoder, the diffusion model and the pitch
    extractor do not change (the reference steps the pitch extractor too, but no gradient reaches it).
    Every group is one the reference wraps in its never-stepped OneCycleLR (``onecycle_beta1``: AdamW
    beta1 0.85 unless the recipe sets train.optimizer.betas). The discriminator step comes before the
    generator's losses, as in the reference; when those turn out non-finite and the step is skipped,
    the loop undoes the discriminators' update too (``rollback``), so a skipped step changes nothing.

    Args:
        epochs: Epochs of this stage (the reference's epochs_1st).
        lambda_mel: Weight of the multi-resolution mel loss (before tma_epoch it is the only loss, unweighted, as in the reference).
        lambda_gen: Weight of the MPD + MSD generator loss; 0 leaves the discriminators out (several times faster on a CPU).
        lambda_slm: Weight of the WavLM feature-matching loss (needs the model's slm_discriminator).
        tma_epoch: Epoch from which the text aligner is trained with the TMA losses (the reference's TMA_epoch).
        lambda_mono: Weight of the monotonic alignment loss.
        lambda_s2s: Weight of the aligner's sequence-to-sequence loss.
        alignment: Where the monotonic path comes from: "attention" (MAS over the aligner's attention, the reference) or "ctc" (MAS over its CTC head's log-probabilities: for an aligner pretrained from scratch in minutes by styletts2_align_pretrain; the hard path is then used on every step and the aligner is not trained further, so no s2s/mono losses).
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
        lr: Learning rate of this stage's groups (None = train.optimizer.lr); the demo trains stage 1 faster than stage 2.
        lambda_body_mel: Weight of an L1 loss between the decoder body's linear mel read-out (model.decoder.mel_head_bins > 0; see StyleTTS2Decoder.mel_from_body) and the clip's log-mel (not in the reference; 0 = off). From nothing on a CPU budget it teaches the body the speech content several times faster than the waveform's mel loss alone.
        generator_epoch: Epochs before this one train the decoder body through the mel read-out only, without running the waveform generator (~5x cheaper steps; needs lambda_body_mel > 0); from it on, the full step.
    """

    manual_optimization = True

    def __init__(
        self,
        epochs: int = 200,
        lambda_mel: float = 5.0,
        lambda_gen: float = 1.0,
        lambda_slm: float = 1.0,
        tma_epoch: int = 50,
        lambda_mono: float = 1.0,
        lambda_s2s: float = 1.0,
        alignment: AlignmentSource = "attention",
        max_steps: Optional[int] = None,
        lr: Optional[float] = None,
        lambda_body_mel: float = 0.0,
        generator_epoch: int = 0,
    ):
        if generator_epoch > 0 and lambda_body_mel <= 0:
            raise ValueError(f"styletts2_stage1: generator_epoch {generator_epoch} trains the decoder body through its "
                             "mel read-out alone; set lambda_body_mel > 0 (e.g. 5) or generator_epoch: 0")
        self.epochs = epochs
        self.lr = lr
        self.generator_epoch = generator_epoch
        self.max_steps = step_limit(max_steps)
        self.tma_epoch = tma_epoch
        self.alignment = alignment
        self.weights = {"mel": lambda_mel, "mono": lambda_mono, "s2s": lambda_s2s, "gen": lambda_gen, "slm": lambda_slm,
                        "body_mel": lambda_body_mel}
        self.max_frames = 400
        self.stft = MultiResolutionSTFTLoss()
        self.generator_loss = GeneratorAdversarialLoss()
        self.discriminator_loss = DiscriminatorAdversarialLoss()
        self.s2s_loss = AlignerS2SLoss()
        self.mono_loss = AlignerMonoLoss()
        self.slm_loss = WavLMFeatureLoss()

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        require_modules(model, "styletts2_stage1", ("text_aligner", "pitch_extractor"))
        self.max_frames = recipe.data.max_frames
        if self.weights["body_mel"] and getattr(model.decoder, "mel_head", None) is None:
            raise TTSZooError("styletts2_stage1.lambda_body_mel needs the decoder's mel read-out: "
                              "set model.decoder.mel_head_bins: 80 (or lambda_body_mel: 0)")

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        own_lr = {} if self.lr is None else {"lr": self.lr}
        groups = module_groups(model, TRAINED, onecycle_beta1=True, **own_lr)
        if self.weights["gen"]:
            groups.update(module_groups(model, tuple(discriminators(model)), onecycle_beta1=True, rollback=True, **own_lr))
        return groups

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, Tensor]:
        clips = training_clips(batch, self.max_frames, ctx)  # lengths agreed over DDP ranks
        if clips is None:
            return {}
        tma = ctx.epoch >= self.tma_epoch
        model.pitch_extractor.eval()  # frozen: its BatchNorm statistics must not drift (the reference leaves it in train mode)
        out, aln, text_mask = align(model, batch, zero_padding=True, source=self.alignment)
        t_en = model.text_encoder(batch.texts, batch.input_lengths, text_mask)
        use_soft = bool(torch.randint(0, 2, ()).item())  # the reference's 50 % soft / 50 % monotonic attention
        asr = t_en @ (aln.attention if use_soft else aln.path)
        en = crop(asr, clips.starts, clips.frames)
        f0, energy = prosody_targets(model, clips.gt)
        style = model.style_encoder((clips.st if model.multispeaker else clips.gt).unsqueeze(1))
        body, f0_curve = model.decoder.generator_input(en, f0, energy, style)
        terms: dict[str, Any] = {}
        if self.weights["body_mel"]:
            terms["body_mel"] = body_mel_loss(model.decoder, body, clips.gt)
        if ctx.epoch < self.generator_epoch:  # the body alone, through its mel read-out
            loss = self.weights["body_mel"] * terms["body_mel"]
            ctx.backward(loss, terms)
            ctx.step("text_encoder", "style_encoder", "decoder")
            return detached({"loss": loss, **terms})
        y_rec = model.decoder.generator(body, style, f0_curve)

        discs = discriminators(model) if self.weights["gen"] else {}
        if tma and discs:
            d_loss = self.discriminator_loss(judge(discs, clips.wav, y_rec.detach()))
            ctx.backward(d_loss, {"disc": d_loss})
            ctx.step(*discs)
            terms["disc"] = d_loss.detach()
            ctx.zero_grad()

        terms["mel"] = self.stft(y_rec, clips.wav)
        train_aligner = tma and self.alignment == "attention"
        if tma:
            if train_aligner:
                terms["s2s"] = self.s2s_loss(out.s2s_logits, batch.texts, batch.input_lengths)
                terms["mono"] = self.mono_loss(aln.attention, aln.path)
            if discs:
                terms["gen"] = self.generator_loss(judge(discs, clips.wav, y_rec, for_generator=True))
            if model.slm_discriminator is not None:
                terms["slm"] = slm_feature_loss(model, self.slm_loss, clips.wav, y_rec)
            loss = weighted(terms, self.weights)
        else:
            loss = terms["mel"] + self.weights["body_mel"] * terms.get("body_mel", 0.0)
        ctx.backward(loss, terms)
        ctx.step("text_encoder", "style_encoder", "decoder", *(("text_aligner",) if train_aligner else ()))
        return detached({"loss": loss, **terms})

    def validation_step(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        """The reference's validation: mel loss of a reconstruction through the soft attention, with
        the clip's own style."""
        clips = training_clips(batch, self.max_frames)
        if clips is None:
            return {}
        _, aln, text_mask = align(model, batch, zero_padding=True, source=self.alignment)
        asr = model.text_encoder(batch.texts, batch.input_lengths, text_mask) @ aln.attention
        f0, energy = prosody_targets(model, clips.gt)
        style = model.style_encoder(clips.gt.unsqueeze(1))
        body, f0_curve = model.decoder.generator_input(crop(asr, clips.starts, clips.frames), f0, energy, style)
        out = {"mel": self.stft(model.decoder.generator(body, style, f0_curve), clips.wav)}
        if self.weights["body_mel"]:
            out["body_mel"] = body_mel_loss(model.decoder, body, clips.gt)
        return out

    def examples(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        _, aln, text_mask = align(model, batch, zero_padding=True, source=self.alignment)
        asr = model.text_encoder(batch.texts, batch.input_lengths, text_mask) @ aln.attention
        n_text, n_frames = int(batch.input_lengths[0]), int(batch.output_lengths[0]) // 2
        return {**full_length_example(model, batch, asr), "image/attention": aln.attention[0, :n_text, :n_frames]}


def body_mel_loss(decoder: nn.Module, body: Tensor, mel: Tensor) -> Tensor:
    """L1 between the decoder body's mel read-out of the generator input ``body`` [B, C, 2F] and the
    clip's normalised log-mel ``mel`` [B, n_mels, 2F] (see StyleTTS2Decoder.mel_from_body)."""
    predicted = decoder.mel_from_body(body)
    if predicted.shape != mel.shape:
        raise TTSZooError(f"decoder mel read-out {tuple(predicted.shape)} does not match the clips' mel {tuple(mel.shape)}: "
                          f"set model.decoder.mel_head_bins to the data's mel bins ({mel.shape[1]})")
    return F.l1_loss(predicted, mel)
