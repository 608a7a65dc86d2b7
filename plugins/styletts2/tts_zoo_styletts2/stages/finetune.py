"""StyleTTS 2 fine-tuning of a whole model on a new voice (the reference's train_finetune.py)."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from torch import Tensor, nn

from tts_zoo.interfaces import StepContext
from tts_zoo_styletts2.losses.aligner import AlignerMonoLoss, AlignerS2SLoss
from tts_zoo_styletts2.stages.common import (
    MIN_CLIP_MEL_FRAMES, AlignmentSource, align, clip_lengths, crop, crop_waves, detached, module_groups,
    prosody_targets, random_starts, require_modules, weighted,
)
from tts_zoo_styletts2.stages.stage2 import StyleTTS2Stage2

# Besides stage 2's, the modules train_finetune.py runs in train mode (dropout on).
ALSO_IN_TRAIN_MODE = ("text_aligner", "text_encoder")


class StyleTTS2Finetune(StyleTTS2Stage2):
    """StyleTTS 2 fine-tuning: stage 2 from a full model, with the aligner and text encoder trained too.

    Li et al. 2023 (StyleTTS 2); the reference's ``train_finetune.py`` / ``Configs/config_ft.yml``
    (e.g. the LibriTTS model fine-tuned on an hour of LJSpeech). Start from a complete model
    (``train.init_from``: ``tts-zoo import-styletts2 --keep-training-modules`` or a stage-2 run). Each
    step is stage 2's (:class:`~tts_zoo_styletts2.stages.stage2.StyleTTS2Stage2`) with these differences:

    - the text aligner runs with gradient and the text encoder's features [B, C, T] are spread over
      the frames by its soft attention or by the monotonic (MAS) path, half of the time each (as in
      stage 1); both learn from the mel loss, the aligner also from the TMA losses (s2s, mono ×10);
    - the acoustic and prosodic styles come from the training clip itself (no other clip of the
      utterance), and the decoder always reconstructs the recording (it trains from epoch 0);
    - MPD/MSD discriminator + generator losses and WavLM feature matching (when the model has a
      WavLM discriminator) from epoch 0; the style diffusion from ``diff_epoch``, SLM adversarial
      training (stage 2's) from ``joint_epoch``.

    Trained every step: PL-BERT (bert_lr, betas 0.9/0.99, weight decay 0.01) and its projection, the
    predictor, the prosodic style encoder, the text encoder and the text aligner (lr), the decoder and
    the acoustic style encoder (ft_lr, betas (0.0, 0.99)), MPD/MSD (lr); the diffusion (lr) from
    ``diff_epoch``; the WavLM head (lr) from ``joint_epoch``. Never: the pitch extractor (its F0 is the
    target). Groups the reference wraps in its never-stepped OneCycleLR get beta1 0.85 (``onecycle_beta1``).
    σ_d, skipped steps and the SLM adversarial step as in stage 2. With ``alignment: ctc`` the path
    comes from the aligner's CTC head, which is not trained further (no s2s/mono losses), as in stage 1.

    Args:
        epochs: Epochs of fine-tuning (config_ft.yml: 50, for about an hour of speech).
        lambda_mel: Weight of the multi-resolution mel reconstruction loss.
        lambda_gen: Weight of the MPD + MSD generator loss; 0 leaves the discriminators out (several times faster on a CPU).
        diff_epoch: Epoch from which the style diffusion is trained.
        joint_epoch: Epoch from which SLM adversarial (joint) training starts.
        lambda_slm: Weight of the WavLM feature-matching loss (needs the model's slm_discriminator).
        lambda_mono: Weight of the aligner's monotonic loss (TMA).
        lambda_s2s: Weight of the aligner's sequence-to-sequence loss (TMA).
        lambda_f0: Weight of the F0 reconstruction loss.
        lambda_norm: Weight of the energy reconstruction loss.
        lambda_dur: Weight of the duration L1 loss.
        lambda_ce: Weight of the duration cross-entropy loss.
        lambda_sty: Weight of the style reconstruction loss.
        lambda_diff: Weight of the diffusion (EDM) loss.
        slmadv_min_len: SLM adversarial: shortest sampled segment (frames).
        slmadv_max_len: SLM adversarial: longest sampled segment (frames).
        slmadv_batch_percentage: SLM adversarial: fraction of the batch used (memory).
        slmadv_iter: SLM adversarial: update the WavLM discriminator every N iterations.
        slmadv_thresh: SLM adversarial: above this predictor gradient norm, every gradient is divided by it.
        slmadv_scale: SLM adversarial: gradient factor of the duration projection / LSTM and of the diffusion model.
        slmadv_sig: SLM adversarial: width of the Gaussian kernel of the differentiable durations.
        alignment: Where the monotonic path comes from: "attention" (the reference; the aligner is fine-tuned) or "ctc" (the aligner's CTC forced alignment, the aligner stays fixed; for models trained with alignment ctc).
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
    """

    def __init__(
        self,
        epochs: int = 50,
        lambda_mel: float = 5.0,
        lambda_gen: float = 1.0,
        diff_epoch: int = 10,
        joint_epoch: int = 30,
        lambda_slm: float = 1.0,
        lambda_mono: float = 1.0,
        lambda_s2s: float = 1.0,
        lambda_f0: float = 1.0,
        lambda_norm: float = 1.0,
        lambda_dur: float = 1.0,
        lambda_ce: float = 20.0,
        lambda_sty: float = 1.0,
        lambda_diff: float = 1.0,
        slmadv_min_len: int = 400,
        slmadv_max_len: int = 500,
        slmadv_batch_percentage: float = 0.5,
        slmadv_iter: int = 10,
        slmadv_thresh: float = 5.0,
        slmadv_scale: float = 0.01,
        slmadv_sig: float = 1.5,
        alignment: AlignmentSource = "attention",
        max_steps: Optional[int] = None,
    ):
        super().__init__(
            epochs=epochs, lambda_mel=lambda_mel, lambda_gen=lambda_gen, diff_epoch=diff_epoch, joint_epoch=joint_epoch,
            lambda_slm=lambda_slm, lambda_f0=lambda_f0, lambda_norm=lambda_norm, lambda_dur=lambda_dur,
            lambda_ce=lambda_ce, lambda_sty=lambda_sty, lambda_diff=lambda_diff, slmadv_min_len=slmadv_min_len,
            slmadv_max_len=slmadv_max_len, slmadv_batch_percentage=slmadv_batch_percentage, slmadv_iter=slmadv_iter,
            slmadv_thresh=slmadv_thresh, slmadv_scale=slmadv_scale, slmadv_sig=slmadv_sig,
            init_predictor_encoder=False,  # a fine-tuned model already has its own prosodic style encoder
            alignment=alignment, max_steps=max_steps)
        self.weights.update(mono=lambda_mono, s2s=lambda_s2s)
        self.train_aligner = alignment == "attention"
        self.s2s_loss, self.mono_loss = AlignerS2SLoss(), AlignerMonoLoss()

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        require_modules(model, "styletts2_finetune", ("text_aligner", "pitch_extractor"))
        self.max_frames = recipe.data.max_frames

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        groups = super().parameter_groups(model, config)
        trained = ("text_encoder", "text_aligner") if self.train_aligner else ("text_encoder",)
        groups.update(module_groups(model, trained, onecycle_beta1=True))
        return groups

    @staticmethod
    def _set_modes(model: nn.Module) -> None:
        StyleTTS2Stage2._set_modes(model)
        for name in ALSO_IN_TRAIN_MODE:
            getattr(model, name).train()

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, Tensor]:
        frames, _ = clip_lengths(batch.output_lengths, self.max_frames, ctx)  # agreed over DDP ranks
        if 2 * frames < MIN_CLIP_MEL_FRAMES:
            return {}
        self._set_modes(model)
        diffusion_on, joint = ctx.epoch >= self.diff_epoch, ctx.epoch >= self.joint_epoch
        texts, text_lengths = batch.texts, batch.input_lengths
        with torch.no_grad():
            ref = model.compute_style(batch.ref_mels) if model.multispeaker and diffusion_on else None
        out, aln, text_mask = align(model, batch, zero_padding=False, source=self.alignment)
        t_en = model.text_encoder(texts, text_lengths, text_mask)
        use_soft = self.train_aligner and bool(torch.randint(0, 2, ()).item())  # 50 % soft / 50 % monotonic
        asr = t_en @ (aln.attention if use_soft else aln.path)  # [B, C, F/2]

        gs, s_dur = self._global_styles(model, batch)
        s_trg = torch.cat([gs, s_dur], dim=-1).detach()
        sigma_data = model.diffusion.batch_sigma_data(s_trg) if diffusion_on else contextlib.nullcontext()
        with sigma_data:
            bert_dur = model.plbert(texts, attention_mask=(~text_mask).int())
            terms: dict[str, Any] = self._diffusion_losses(model, s_trg, bert_dur, ref) if diffusion_on else {}
            d_en = model.plbert.project(bert_dur)
            logits, encoded = model.predictor.predict_durations(d_en, s_dur, text_lengths, text_mask)

            starts = random_starts(batch.output_lengths, frames)
            en, p_en = crop(asr, starts, frames), crop(encoded.transpose(1, 2) @ aln.path, starts, frames)
            gt, wav = crop(batch.mels, starts, frames, 2), crop_waves(batch.waves, starts, frames)
            style, s_dur_clip = model.style_encoder(gt.unsqueeze(1)), model.predictor_encoder(gt.unsqueeze(1))
            f0_real, energy_real = prosody_targets(model, gt)
            with torch.no_grad():  # the SLM adversarial part's reconstruction with the real F0
                y_rec_gt_pred = model.decoder(en, f0_real, energy_real, style)
            f0_fake, energy_fake = model.predictor.predict_f0_energy(p_en, s_dur_clip)
            y_rec = model.decoder(en, f0_fake, energy_fake, style)
            terms["f0"] = self.f0_loss(f0_real, f0_fake)
            terms["norm"] = self.energy_loss(energy_real, energy_fake)

            terms.update(self._decoder_losses(model, ctx, wav, y_rec, adversarial=True))  # MPD/MSD from epoch 0
            terms["ce"] = self.duration_bce(logits, aln.durations, text_lengths)
            terms["dur"] = self.duration_l1(logits, aln.durations, text_lengths)
            if self.train_aligner:
                terms["s2s"] = self.s2s_loss(out.s2s_logits, texts, text_lengths)
                terms["mono"] = self.mono_loss(aln.attention, aln.path)
            loss = weighted(terms, self.weights)
            ctx.backward(loss, terms)
            ctx.step("bert", "bert_encoder", "predictor", "predictor_encoder", "style_encoder", "decoder",
                     "text_encoder", *(("text_aligner",) if self.train_aligner else ()),
                     *(("diffusion",) if diffusion_on else ()))

            if joint and model.slm_discriminator is not None:
                terms.update(self._slm_adversarial(model, batch, ctx, wav, y_rec_gt_pred, s_trg, ref))
            return detached({"loss": loss, **terms})
