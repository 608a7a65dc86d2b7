"""StyleTTS 2 stage 2: style diffusion, prosody and adversarial training (the reference's train_second.py)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Optional

import torch
from torch import Tensor, nn

from tts_zoo.audio import log_mel
from tts_zoo.interfaces import Stage, StepContext
from tts_zoo_styletts2.losses.adversarial import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss
from tts_zoo_styletts2.losses.prosody import (
    DurationBCELoss, DurationL1Loss, EnergyReconstructionLoss, F0ReconstructionLoss, StyleReconstructionLoss,
)
from tts_zoo_styletts2.losses.slm import WavLMFeatureLoss
from tts_zoo_styletts2.losses.slm_adversarial import SLMAdversarialLoss
from tts_zoo_styletts2.losses.stft import MultiResolutionSTFTLoss
from tts_zoo_styletts2.stages.common import (
    MIN_CLIP_MEL_FRAMES, AlignmentSource, align, clip_lengths, crop, crop_waves, detached, discriminators, judge,
    module_groups, prosody_targets, random_starts, require_modules, slm_feature_loss, step_limit, training_clips,
    weighted, weights_fixed,
)

logger = logging.getLogger(__name__)

# The reference's fixed optimizer settings for PL-BERT in stage 2 (train_second.py).
BERT_BETAS = (0.9, 0.99)
BERT_WEIGHT_DECAY = 0.01
IN_TRAIN_MODE = ("predictor", "plbert", "mpd", "msd")  # everything else runs in eval mode, as in the reference


class StyleTTS2Stage2(Stage):
    """StyleTTS 2 stage 2: style diffusion, prosody and SLM adversarial training.

    Li et al. 2023 (StyleTTS 2), sections 3.2 and 3.3; the reference's ``train_second.py``. The text
    aligner, text encoder and pitch extractor from stage 1 are frozen and give the monotonic
    alignment, the durations to learn and the F0 targets. Each step:

    - global styles of every utterance (both style encoders on the whole mel) are the diffusion
      targets; from ``diff_epoch`` on, the style diffusion learns them (EDM loss) and a style sampled
      in 3-4 ADPM2 steps is pulled towards them (style reconstruction loss);
    - PL-BERT → duration predictor (duration BCE + L1 losses against the MAS durations); on a random
      clip, F0 and energy are predicted from the prosodic style of another clip of the utterance (F0
      and energy losses) and, from ``decoder_epoch`` (0 in the reference), the decoder speaks the clip
      (mel loss) — against the decoder's own reconstruction before ``joint_epoch`` (the decoder is
      still fixed), against the recording after;
    - from ``diff_epoch``, MPD/MSD discriminator + generator losses; WavLM feature matching whenever the
      model has a WavLM discriminator; from ``joint_epoch``, SLM adversarial training with
      differentiable durations (skipped cleanly without a WavLM discriminator).

    Trained: PL-BERT (bert_lr, betas 0.9/0.99, weight decay 0.01) and its projection, the predictor
    and the prosodic style encoder (lr) every step; the diffusion model (lr) from ``diff_epoch``; MPD/MSD
    (lr) from ``diff_epoch``; the decoder and the acoustic style encoder (ft_lr) from ``joint_epoch``;
    the WavLM head (lr) from ``joint_epoch``. At the start of the stage the prosodic style encoder is
    initialised as a copy of the acoustic one (the reference's ``predictor_encoder = deepcopy(style_encoder)``).
    AdamW betas as the reference leaves them: PL-BERT's own, the decoder's and acoustic style
    encoder's reset to (0.0, 0.99), every other group wrapped in its never-stepped OneCycleLR
    (``onecycle_beta1``: beta1 0.85) — unless the recipe sets train.optimizer.betas.

    σ_d: from ``diff_epoch`` the whole step runs with the batch's σ_d (the std of its target styles;
    :meth:`StyleDiffusion.batch_sigma_data`), as the reference sets it before every step; the
    diffusion's running estimate (used for sampling outside training) takes it in only when the step
    completes. Skipped steps: the discriminator updates (MPD/MSD, and the WavLM head in the SLM
    adversarial part) are undone by the loop when a later loss or gradient of the same step is
    non-finite (``rollback``). The SLM adversarial part comes after the step's main update: a
    non-finite value there skips only that part (the main update stays, the step is logged as skipped).
    Multi-process: the clip lengths are the shortest over every rank's batch, and the SLM adversarial
    part is skipped on every rank when one rank's batch gives too few clips for it (``ctx.agree``).

    Args:
        epochs: Epochs of this stage (the reference's epochs_2nd).
        lambda_mel: Weight of the multi-resolution mel reconstruction loss.
        lambda_gen: Weight of the MPD + MSD generator loss; 0 leaves the discriminators out (several times faster on a CPU).
        diff_epoch: Epoch from which the style diffusion is trained.
        joint_epoch: Epoch from which SLM adversarial (joint) training starts.
        decoder_epoch: Epoch from which the decoder speaks in this stage (mel, MPD/MSD and WavLM losses of speech made with the predicted F0 and energy); before it the predictor learns durations, F0 and energy from their own losses only, without a decoder pass (not in the reference, which starts at 0: several times cheaper per step, and the mel loss's gradient in the predictor's shared encoder otherwise keeps a fresh predictor's durations at their mean for hundreds of steps).
        lambda_slm: Weight of the WavLM feature-matching loss.
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
        init_predictor_encoder: Start the prosodic style encoder as a copy of the acoustic one (off to fine-tune a stage-2 model).
        data_init: Data-dependent initialisation on the stage's first batch, for a predictor that starts untrained (not in the reference): the duration head's biases set to the log-odds of the batch's P(duration > k), and, with init_predictor_encoder, the copied prosodic style encoder's output divided by its styles' RMS. Without it a fast from-scratch stage 1 (styles of RMS ~25) and the collapse of the fresh head's max_dur/2 units saturate the predictor's LSTMs, and the durations stay at their mean.
        alignment: Where the monotonic path and the duration targets come from: "attention" (the reference) or "ctc" (the aligner's CTC forced alignment; use the same as in stage 1).
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
    """

    manual_optimization = True

    def __init__(
        self,
        epochs: int = 100,
        lambda_mel: float = 5.0,
        lambda_gen: float = 1.0,
        diff_epoch: int = 20,
        joint_epoch: int = 50,
        decoder_epoch: int = 0,
        lambda_slm: float = 1.0,
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
        init_predictor_encoder: bool = True,
        data_init: bool = False,
        alignment: AlignmentSource = "attention",
        max_steps: Optional[int] = None,
    ):
        self.epochs = epochs
        self.max_steps = step_limit(max_steps)
        self.diff_epoch = diff_epoch
        self.joint_epoch = joint_epoch
        self.decoder_epoch = decoder_epoch
        self.init_predictor_encoder = init_predictor_encoder
        self.data_init = data_init
        self._init_pending = False
        self.alignment = alignment
        self.weights = {"mel": lambda_mel, "f0": lambda_f0, "ce": lambda_ce, "norm": lambda_norm, "dur": lambda_dur,
                        "gen": lambda_gen, "slm": lambda_slm, "sty": lambda_sty, "diff": lambda_diff}
        self.max_frames = 400
        self.stft = MultiResolutionSTFTLoss()
        self.generator_loss = GeneratorAdversarialLoss()
        self.discriminator_loss = DiscriminatorAdversarialLoss()
        self.slm_loss = WavLMFeatureLoss()
        self.duration_bce, self.duration_l1 = DurationBCELoss(), DurationL1Loss()
        self.f0_loss, self.energy_loss = F0ReconstructionLoss(), EnergyReconstructionLoss()
        self.style_loss = StyleReconstructionLoss()
        self.slmadv = SLMAdversarialLoss(slmadv_min_len, slmadv_max_len, slmadv_batch_percentage, slmadv_iter,
                                         slmadv_thresh, slmadv_scale, slmadv_sig)

    # ------------------------------------------------------------------ set-up

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        require_modules(model, "styletts2_stage2", ("text_aligner", "pitch_extractor"))
        self.max_frames = recipe.data.max_frames
        self._init_pending = self.data_init and not resumed
        if not resumed and self.init_predictor_encoder:
            source, target = model.style_encoder.state_dict(), model.predictor_encoder.state_dict()
            if {k: v.shape for k, v in source.items()} == {k: v.shape for k, v in target.items()}:
                model.predictor_encoder.load_state_dict(source)
            else:
                logger.warning("styletts2_stage2: the prosodic style encoder differs from the acoustic one in "
                               "shape; it keeps its own weights (init_predictor_encoder needs equal encoders)")

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        plbert = model.plbert
        projection = getattr(plbert, "bert_encoder", None)
        body = [p for n, p in plbert.named_parameters() if not n.startswith("bert_encoder.")] if projection is not None \
            else list(plbert.parameters())
        groups = {"bert": {"params": body, "lr": config.bert_lr, "betas": BERT_BETAS, "weight_decay": BERT_WEIGHT_DECAY}}
        if projection is not None:
            groups["bert_encoder"] = {"params": list(projection.parameters()), "onecycle_beta1": True}
        groups.update(module_groups(model, ("predictor", "predictor_encoder", "diffusion"), onecycle_beta1=True))
        groups.update(module_groups(model, ("style_encoder", "decoder"), lr=config.ft_lr))
        discs = (*(discriminators(model) if self.weights["gen"] else ()), "slm_discriminator")
        groups.update(module_groups(model, discs, onecycle_beta1=True, rollback=True))
        return groups

    # ------------------------------------------------------------------ training

    @staticmethod
    def _set_modes(model: nn.Module) -> None:
        model.eval()
        for name in IN_TRAIN_MODE:
            if getattr(model, name, None) is not None:
                getattr(model, name).train()

    @staticmethod
    def _global_styles(model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        """(acoustic [B, S], prosodic [B, S]) styles of each whole utterance, one at a time (the
        encoders pool over time: padding would change the result). The acoustic one is only ever a
        (detached) diffusion target, so it carries no gradient; the prosodic one feeds the predictor."""
        acoustic, prosodic = [], []
        for b, n in enumerate(batch.output_lengths.tolist()):
            mel = batch.mels[b : b + 1, :, :n].unsqueeze(1)
            prosodic.append(model.predictor_encoder(mel))
            with torch.no_grad():
                acoustic.append(model.style_encoder(mel))
        return torch.cat(acoustic), torch.cat(prosodic)

    def _initialise_from(self, model: nn.Module, batch: Any, durations: Tensor, ctx: StepContext) -> None:
        """``data_init``, once, before the stage's first update, from statistics summed (durations) or
        maximised (style RMS) over the DDP ranks, so that every rank initialises alike."""
        self._init_pending = False
        max_dur = model.predictor.duration_proj.linear_layer.out_features
        inner = [d[1 : n - 1] for d, n in zip(durations, batch.input_lengths.tolist())]  # as the L1 loss scores them
        tokens = torch.cat(inner).long()
        exceed = (tokens.view(-1, 1) > torch.arange(max_dur, device=tokens.device).view(1, -1)).sum(0)
        counts = ctx.agree([float(len(tokens)), *exceed.tolist()], "sum")
        model.predictor.init_duration_prior(torch.tensor(counts[1:]), counts[0])
        head = getattr(model.predictor_encoder, "unshared", None)
        if self.init_predictor_encoder and isinstance(head, nn.Linear):
            _, prosodic = self._global_styles(model, batch)
            rms = ctx.agree(float(prosodic.pow(2).mean().sqrt()), "max")
            head.weight.div_(rms)
            head.bias.div_(rms)
            logger.info("styletts2_stage2: data_init: prosodic styles from RMS %.3g to 1, durations from the prior "
                        "of %d tokens (mean %.2f units)", rms, int(counts[0]), float(tokens.float().mean()))

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, Tensor]:
        clip_frames, st_frames = clip_lengths(batch.output_lengths, self.max_frames, ctx)  # agreed over DDP ranks
        if 2 * clip_frames < MIN_CLIP_MEL_FRAMES:
            return {}
        self._set_modes(model)
        diffusion_on, joint = ctx.epoch >= self.diff_epoch, ctx.epoch >= self.joint_epoch
        decoder_on = ctx.epoch >= self.decoder_epoch
        texts, text_lengths = batch.texts, batch.input_lengths
        with torch.no_grad():
            _, aln, text_mask = align(model, batch, zero_padding=False, source=self.alignment)
            asr = model.text_encoder(texts, text_lengths, text_mask) @ aln.path
            ref = model.compute_style(batch.ref_mels) if model.multispeaker and diffusion_on else None
            if self._init_pending:
                self._initialise_from(model, batch, aln.durations, ctx)

        gs, s_dur = self._global_styles(model, batch)
        s_trg = torch.cat([gs, s_dur], dim=-1).detach()
        # This batch's σ_d for the whole step (the reference's train_second.py); folded into the
        # diffusion's running estimate only if the step completes.
        sigma_data = model.diffusion.batch_sigma_data(s_trg) if diffusion_on else contextlib.nullcontext()
        with sigma_data:
            bert_dur = model.plbert(texts, attention_mask=(~text_mask).int())
            d_en = model.plbert.project(bert_dur)

            terms: dict[str, Any] = {}
            if diffusion_on:
                terms.update(self._diffusion_losses(model, s_trg, bert_dur, ref))
            logits, encoded = model.predictor.predict_durations(d_en, s_dur, text_lengths, text_mask)
            prosody = encoded.transpose(1, 2) @ aln.path  # [B, C + S, F/2]

            starts = random_starts(batch.output_lengths, clip_frames)
            st_starts = random_starts(batch.output_lengths, st_frames)
            en, p_en = crop(asr, starts, clip_frames), crop(prosody, starts, clip_frames)
            gt, wav = crop(batch.mels, starts, clip_frames, 2), crop_waves(batch.waves, starts, clip_frames)
            st = crop(batch.mels, st_starts, st_frames, 2) if model.multispeaker else gt
            s_dur_clip = model.predictor_encoder(st.unsqueeze(1))
            style = None
            if decoder_on:
                with torch.set_grad_enabled(joint):  # stepped from joint_epoch only
                    style = model.style_encoder(st.unsqueeze(1))
            f0_real, energy_real = prosody_targets(model, gt)
            y_rec_gt_pred = None
            if decoder_on:
                with torch.no_grad():
                    y_rec_gt_pred = model.decoder(en, f0_real, energy_real, style)
            f0_fake, energy_fake = model.predictor.predict_f0_energy(p_en, s_dur_clip)
            y_rec = None
            if decoder_on:
                # Before joint_epoch the decoder is fixed: its gradient reaches the predicted F0 and
                # energy, and none is computed for its own weights.
                with contextlib.nullcontext() if joint else weights_fixed(model.decoder):
                    y_rec = model.decoder(en, f0_fake, energy_fake, style)
            terms["f0"] = self.f0_loss(f0_real, f0_fake)
            terms["norm"] = self.energy_loss(energy_real, energy_fake)
            if decoder_on:
                target = wav if joint else y_rec_gt_pred  # the decoder is fixed until joint_epoch: match its own output
                terms.update(self._decoder_losses(model, ctx, target, y_rec, diffusion_on))
            terms["ce"] = self.duration_bce(logits, aln.durations, text_lengths)
            terms["dur"] = self.duration_l1(logits, aln.durations, text_lengths)
            loss = weighted(terms, self.weights)
            ctx.backward(loss, terms)
            ctx.step("bert", "bert_encoder", "predictor", "predictor_encoder",
                     *(("diffusion",) if diffusion_on else ()), *(("style_encoder", "decoder") if joint else ()))

            if joint and decoder_on and model.slm_discriminator is not None:
                terms.update(self._slm_adversarial(model, batch, ctx, wav, y_rec_gt_pred, s_trg, ref))
            return detached({"loss": loss, **terms})

    def _decoder_losses(self, model: nn.Module, ctx: StepContext, target: Tensor, y_rec: Tensor,
                        adversarial: bool) -> dict[str, Tensor]:
        """The losses of the speech decoded with the predicted F0 and energy: mel, WavLM feature matching
        and, when ``adversarial`` (stage 2: from ``diff_epoch``; fine-tuning: always), the MPD/MSD
        steps (the discriminators are updated here)."""
        terms: dict[str, Tensor] = {}
        discs = discriminators(model) if self.weights["gen"] else {}
        if adversarial and discs:
            d_loss = self.discriminator_loss(judge(discs, target, y_rec.detach()))
            ctx.backward(d_loss, {"disc": d_loss})
            ctx.step(*discs)
            ctx.zero_grad()
            terms["disc"] = d_loss.detach()
        terms["mel"] = self.stft(y_rec, target)
        if adversarial and discs:
            terms["gen"] = self.generator_loss(judge(discs, target, y_rec, for_generator=True))
        if model.slm_discriminator is not None:
            terms["slm"] = slm_feature_loss(model, self.slm_loss, target, y_rec)
        return terms

    def _diffusion_losses(self, model: nn.Module, s_trg: Tensor, bert_dur: Tensor, ref: Optional[Tensor]) -> dict[str, Tensor]:
        """EDM loss on the target styles and the L1 between them and styles sampled in 3-4 steps."""
        diffusion = model.diffusion
        num_steps = int(torch.randint(3, 5, ()).item())
        noise = torch.randn_like(s_trg).unsqueeze(1)
        s_preds = diffusion.sample(noise, bert_dur, features=ref, sampler=model.sampler, schedule=model.schedule,
                                   num_steps=num_steps, embedding_scale=1.0, embedding_mask_proba=0.1).squeeze(1)
        # The reference's single-speaker path calls the bare diffusion, which does not mask the text.
        edm = diffusion.loss(s_trg.unsqueeze(1), bert_dur, ref, embedding_mask_proba=None if model.multispeaker else 0.0)
        return {"diff": edm, "sty": self.style_loss(s_preds, s_trg)}

    def _slm_adversarial(self, model: nn.Module, batch: Any, ctx: StepContext, wav: Tensor, y_rec_gt_pred: Tensor,
                         s_trg: Tensor, ref: Optional[Tensor]) -> dict[str, Tensor]:
        """SLM adversarial step (joint training): the generator loss trains PL-BERT, the predictor and
        the diffusion (gradients scaled by the reference's rule), the discriminator loss the WavLM head.

        The reference back-propagates the generator loss, then zeroes all gradients before the head's
        backward, which discards the generator update on head-update steps; here only the head's
        gradients are cleared, so both updates happen."""
        use_ind = bool(torch.rand(()).item() < 0.5)
        texts, lengths = (batch.texts, batch.input_lengths) if use_ind else (batch.ref_texts, batch.ref_lengths)
        out = self.slmadv(model, model.slm_discriminator, ctx.global_step, wav, y_rec_gt_pred, batch.waves,
                          batch.output_lengths, texts, lengths, use_ind, s_trg, ref if model.multispeaker else None)
        if not ctx.agree(out is not None, "min"):  # too few clips on some rank's batch: skipped on every rank
            return {}
        ctx.zero_grad()
        ctx.backward(out.generator_loss, {"slm_gen": out.generator_loss})
        terms = {"slm_gen": out.generator_loss.detach()}
        if out.discriminator_loss is not None:
            ctx.zero_grad("slm_discriminator")
            ctx.backward(out.discriminator_loss, {"slm_disc": out.discriminator_loss})
            ctx.step("slm_discriminator")
            terms["slm_disc"] = out.discriminator_loss.detach()
        self.slmadv.scale_gradients(model)
        ctx.step("bert", "bert_encoder", "predictor", "diffusion")
        return terms

    # ------------------------------------------------------------------ validation

    def validation_step(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        """The reference's validation: durations (L1), and mel / F0 losses of speech decoded with the
        predicted F0 and energy on the whole of the shortest item's length."""
        clips = training_clips(batch, None)
        if clips is None:
            return {}
        _, aln, text_mask = align(model, batch, zero_padding=False, source=self.alignment)
        asr = model.text_encoder(batch.texts, batch.input_lengths, text_mask) @ aln.path
        _, s_dur = self._global_styles(model, batch)
        d_en = model.plbert.project(model.plbert(batch.texts, attention_mask=(~text_mask).int()))
        logits, encoded = model.predictor.predict_durations(d_en, s_dur, batch.input_lengths, text_mask)
        p_en = crop(encoded.transpose(1, 2) @ aln.path, clips.starts, clips.frames)
        f0_fake, energy_fake = model.predictor.predict_f0_energy(p_en, model.predictor_encoder(clips.gt.unsqueeze(1)))
        y_rec = model.decoder(crop(asr, clips.starts, clips.frames), f0_fake, energy_fake,
                              model.style_encoder(clips.gt.unsqueeze(1)))
        f0_real, _ = prosody_targets(model, clips.gt)
        return {"mel": self.stft(y_rec, clips.wav), "dur": self.duration_l1(logits, aln.durations, batch.input_lengths),
                "f0": torch.nn.functional.l1_loss(f0_real, f0_fake) / 10}

    def examples(self, model: nn.Module, batch: Any, epoch: int) -> dict[str, Tensor]:
        """Text-to-speech of the first validation sentence in its speaker's voice (its own recording
        as the reference; the diffusion sampler only once it is being trained)."""
        n_text, n_mel = int(batch.input_lengths[0]), int(batch.output_lengths[0])
        style = model.compute_style(batch.mels[:1, :, :n_mel])
        wave = model.synthesize(batch.texts[:1, :n_text], style, use_diffusion=epoch >= self.diff_epoch,
                                generator=torch.Generator(device=batch.texts.device).manual_seed(0))
        return {"audio/synthesized": wave, "audio/ground_truth": batch.waves[0].flatten(),
                "image/synthesized_mel": log_mel(wave.float())}
