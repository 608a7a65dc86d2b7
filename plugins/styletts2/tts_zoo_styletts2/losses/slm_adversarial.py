"""SLM adversarial training with differentiable durations (StyleTTS 2, the reference's ``Modules/slmadv.py``).

Li et al. 2023 (StyleTTS 2), sections 3.2.2 and 3.3: speech is generated end to end from text (styles
from the diffusion sampler, durations from the predictor made differentiable by a Gaussian-kernel
soft alignment) and judged by the WavLM discriminator; its generator loss trains PL-BERT, the
prosody predictor and the diffusion model, its discriminator loss the WavLM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.audio import length_to_mask
from tts_zoo.interfaces import Loss
from tts_zoo_styletts2.discriminators.wavlm import WavLMDiscriminator
from tts_zoo_styletts2.losses.slm import WavLMDiscriminatorLoss, WavLMGeneratorLoss


def soft_alignment(logits: Tensor, sig: float = 1.5) -> Tensor:
    """Differentiable token → frame alignment of one item (StyleTTS 2, section 3.3, "differentiable
    duration modeling"; the reference's Gaussian-kernel upsampling).

    logits [n, max_dur] (duration bins of n tokens) → attention [n, L], softmax over tokens, where
    L = round(Σ sigmoid(logits)) frames (of 2 mel frames). With p = sigmoid(logits), d = Σ_bins p,
    centres c = cumsum(d) - d / 2, and the kernel h[i, t] = exp(-(t - (L - c_i))² / (2 sig²)) over
    t = 0 … L-1: the logits of token i are convolved with h[i] (a depthwise conv1d, padding L - 1,
    first L outputs kept) and a softmax over the tokens gives each frame's attention.
    L is piecewise constant in the logits; everything else is differentiable.
    """
    p = torch.sigmoid(logits)
    dur = p.sum(-1)
    length = int(torch.round(p.sum()).item())
    if length < 1:
        raise ValueError("soft_alignment: the predicted durations sum to less than one frame")
    n = logits.shape[0]
    t = torch.arange(length, device=logits.device, dtype=logits.dtype).expand(n, length)
    centres = torch.cumsum(dur, dim=0) - dur / 2
    h = torch.exp(-0.5 * torch.square(t - (length - centres.unsqueeze(-1))) / sig**2)
    out = F.conv1d(logits.unsqueeze(0), h.unsqueeze(1), padding=length - 1, groups=n)[..., :length]
    return F.softmax(out.squeeze(0), dim=0)


class SLMAdversarialOutput(NamedTuple):
    """What one SLM adversarial step gives: the WavLM-head loss (None on steps without a
    discriminator update), the generator loss, and the generated clips [B', 1, S'] (detached)."""

    discriminator_loss: Optional[Tensor]
    generator_loss: Tensor
    generated: Tensor


class SLMAdversarialLoss(Loss):
    """SLM adversarial loss with differentiable durations (StyleTTS 2's end-to-end SLM training).

    Li et al. 2023 (StyleTTS 2), sections 3.2.2 / 3.3; the reference's ``SLMAdversarialLoss`` and the
    gradient rules of its ``train_second.py``. One call (``forward``):

    1. PL-BERT features of the texts (in-distribution or OOD); the style is the target style
       ``s_trg`` (in-distribution text, with probability 1/2) or sampled by the style diffusion
       (3 or 4 ADPM2 steps, ``embedding_mask_proba`` 0.1; reference style as features if multispeaker).
    2. Duration logits → :func:`soft_alignment` per item → acoustic (text encoder, no gradient) and
       prosodic (duration encoder) features spread over the frames.
    3. Random clips of ``mel_len`` = clamp(min(L)/2 - 1, min_len/2, max_len/2) frames (items whose
       predicted or true length is too short are skipped; at most ``batch_percentage`` of the batch)
       → F0 / energy → decoder → generated speech. Fewer than two clips: returns None.
    4. Every ``skip_update`` steps, the WavLM-head loss (LSGAN) against real clips or, half of the
       time, against the decoder's reconstruction ``y_rec_gt_pred`` with two L1 regularisers (length
       invariance of the head, and real vs reconstructed); always the LSGAN generator loss.

    After ``generator_loss.backward()`` the stage calls :meth:`scale_gradients` (the reference's
    ``thresh`` / ``scale`` rule) before stepping PL-BERT, the predictor and the diffusion model.

    Model attributes used: ``plbert`` (forward + ``project``), ``predictor`` (``predict_durations``,
    ``predict_f0_energy``), ``text_encoder``, ``decoder``, ``diffusion`` (``sample``).

    Args:
        min_len: shortest clip, in mel frames.
        max_len: longest clip, in mel frames.
        batch_percentage: largest share of the batch turned into clips (memory).
        skip_update: update the WavLM head every this many steps (config ``slmadv_params.iter``).
        thresh: above this predictor gradient norm, all gradients are divided by it.
        scale: gradient factor of the duration LSTM / projection and of the diffusion model.
        sig: width (frames) of the Gaussian kernel of the soft alignment.
        in_distribution_style_proba: chance of using the target style instead of a sampled one for in-distribution text.
        sampler_steps: the diffusion sampler takes between these numbers of steps (inclusive).
    """

    def __init__(
        self,
        min_len: int = 400,
        max_len: int = 500,
        batch_percentage: float = 0.5,
        skip_update: int = 10,
        thresh: float = 5.0,
        scale: float = 0.01,
        sig: float = 1.5,
        in_distribution_style_proba: float = 0.5,
        sampler_steps: list[int] = (3, 4),
    ):
        super().__init__()
        self.min_len = min_len
        self.max_len = max_len
        self.batch_percentage = batch_percentage
        self.skip_update = skip_update
        self.thresh = thresh
        self.scale = scale
        self.sig = sig
        self.in_distribution_style_proba = in_distribution_style_proba
        self.sampler_steps = tuple(sampler_steps)
        self.lsgan_discriminator = WavLMDiscriminatorLoss()
        self.lsgan_generator = WavLMGeneratorLoss()

    # -- random choices (CPU draws: the same on every device) -----------------------------------

    @staticmethod
    def _randint(low: int, high: int, generator: Optional[torch.Generator]) -> int:
        """Uniform integer in [low, high)."""
        device = generator.device if generator is not None else "cpu"
        return int(torch.randint(low, high, (1,), generator=generator, device=device).item())

    @staticmethod
    def _coin(p: float, generator: Optional[torch.Generator]) -> bool:
        device = generator.device if generator is not None else "cpu"
        return bool(torch.rand((), generator=generator, device=device).item() < p)

    # -- the steps -------------------------------------------------------------------------------

    def _style(self, model: nn.Module, bert_out: Tensor, use_ind: bool, s_trg: Tensor,
               ref_s: Optional[Tensor], generator: Optional[torch.Generator]) -> Tensor:
        if use_ind and self._coin(self.in_distribution_style_proba, generator):
            return s_trg
        num_steps = self._randint(self.sampler_steps[0], self.sampler_steps[1] + 1, generator)
        device = generator.device if generator is not None else s_trg.device
        noise = torch.randn(s_trg.shape, generator=generator, device=device, dtype=s_trg.dtype).to(s_trg.device)
        styles = model.diffusion.sample(
            noise.unsqueeze(1), bert_out, features=ref_s, num_steps=num_steps, embedding_scale=1.0,
            embedding_mask_proba=0.1, generator=generator,
        )
        return styles.squeeze(1)

    def _clip(self, wave: Any, start: int, frames: int, samples_per_frame: int, device: torch.device) -> Tensor:
        wave = torch.as_tensor(wave).reshape(-1)
        return wave[start * samples_per_frame : (start + frames) * samples_per_frame].to(device)

    def forward(
        self,
        model: nn.Module,
        discriminator: WavLMDiscriminator,
        step: int,
        y_rec_gt: Tensor,
        y_rec_gt_pred: Tensor,
        waves: Sequence[Tensor] | Tensor,
        mel_lengths: Tensor,
        texts: Tensor,
        text_lengths: Tensor,
        use_ind: bool,
        s_trg: Tensor,
        ref_s: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Optional[SLMAdversarialOutput]:
        """One SLM adversarial step.

        Args:
            model: the StyleTTS 2 model (attributes listed in the class docstring).
            discriminator: the SLM discriminator (frozen WavLM + the head being trained).
            step: the training step index (the head is updated when ``(step + 1) % skip_update == 0``).
            y_rec_gt: real clips of the main step [B, 1, S].
            y_rec_gt_pred: their reconstruction by the decoder [B, 1, S].
            waves: the batch's full waveforms (one [S_i] each, or padded [B, S]).
            mel_lengths: mel frames of each wave [B].
            texts: token ids [B, T] (the batch's texts or out-of-distribution ones).
            text_lengths: [B].
            use_ind: whether ``texts`` are the batch's own (then ``s_trg`` may stand in for a sampled style).
            s_trg: target styles [B, 2·style_dim] (detached).
            ref_s: reference styles for a multispeaker diffusion model [B, 2·style_dim], else None.
            generator: random choices, noise and clip positions (on the model's device; None: torch's
                global generators).
        """
        device = texts.device
        text_mask = length_to_mask(text_lengths, texts.shape[1]).to(device)
        bert_out = model.plbert(texts, (~text_mask).int())
        d_en = model.plbert.project(bert_out)

        s_preds = self._style(model, bert_out, use_ind, s_trg, ref_s, generator)
        style_dim = s_preds.shape[-1] // 2
        s_dur = s_preds[:, style_dim:]

        # Differentiable durations: soft alignment of every item, zero-padded to a common length.
        logits, encoded = model.predictor.predict_durations(d_en, s_dur, text_lengths, text_mask)
        alignments = [soft_alignment(lg[:n], self.sig) for lg, n in zip(logits, text_lengths.tolist())]
        lengths = [a.shape[-1] for a in alignments]
        frames, tokens = max(lengths), texts.shape[1]
        attn = torch.stack([F.pad(a, (0, frames - a.shape[1], 0, tokens - a.shape[0])) for a in alignments])

        with torch.no_grad():
            t_en = model.text_encoder(texts, text_lengths, text_mask)
        asr_pred = t_en @ attn  # [B, C, frames]
        p_pred = encoded.transpose(1, 2) @ attn  # [B, C + S, frames]

        mel_len = max(int(min(lengths) / 2 - 1), self.min_len // 2)
        mel_len = min(mel_len, self.max_len // 2)

        # Random clips of mel_len frames from the generated features and from the real waves.
        spf = getattr(model.decoder, "samples_per_frame", 600)
        sp, en, p_en, wav = [], [], [], []
        for i, length in enumerate(lengths):
            length_gt = int(mel_lengths[i]) // 2
            if length_gt <= mel_len or length <= mel_len:
                continue
            sp.append(s_preds[i])
            start = self._randint(0, length - mel_len, generator)
            en.append(asr_pred[i, :, start : start + mel_len])
            p_en.append(p_pred[i, :, start : start + mel_len])
            start = self._randint(0, length_gt - mel_len, generator)
            wav.append(self._clip(waves[i], start, mel_len, spf, device))
            if len(wav) >= self.batch_percentage * len(waves):  # bound the memory of long clips
                break
        if len(sp) <= 1:
            return None

        sp, en, p_en = torch.stack(sp), torch.stack(en), torch.stack(p_en)
        wav = torch.stack(wav).float().unsqueeze(1)
        f0_fake, n_fake = model.predictor.predict_f0_energy(p_en, sp[:, style_dim:])
        y_pred = model.decoder(en, f0_fake, n_fake, sp[:, :style_dim])

        d_loss = None
        if (step + 1) % self.skip_update == 0:
            d_loss = self._discriminator_loss(discriminator, wav, y_pred.detach(), y_rec_gt.detach(),
                                              y_rec_gt_pred.detach(), generator)

        scores = discriminator.head(discriminator.head_input(discriminator.hidden_states(y_pred)))
        return SLMAdversarialOutput(d_loss, self.lsgan_generator(scores), y_pred.detach())

    def _discriminator_loss(self, disc: WavLMDiscriminator, wav: Tensor, y_pred: Tensor, y_rec_gt: Tensor,
                            y_rec_gt_pred: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        """The WavLM head's LSGAN loss; half of the time against the reconstructions, with the
        reference's length-invariance and reconstruction-artifact L1 regularisers."""
        if self._randint(0, 2, generator) != 0:
            return self.lsgan_discriminator(disc.score(wav), disc.score(y_pred))

        real = y_rec_gt_pred  # reconstructed speech (other lengths): regularise against length
        crop = min(real.shape[-1], y_pred.shape[-1])
        longer = real if real.shape[-1] > y_pred.shape[-1] else y_pred
        cropped = longer[..., :crop]
        out_crop, out_full = disc.score(cropped), disc.score(longer)
        loss_reg = F.l1_loss(out_crop, out_full[..., : out_crop.shape[-1]])
        use_crop = self._randint(0, 2, generator) == 0
        if longer is real:
            d_loss = self.lsgan_discriminator(disc.score(cropped if use_crop else real), disc.score(y_pred))
        else:
            d_loss = self.lsgan_discriminator(disc.score(real), disc.score(cropped if use_crop else y_pred))
        d_loss = d_loss + loss_reg
        # The head should not tell real speech from its reconstruction.
        return d_loss + F.l1_loss(disc.score(y_rec_gt), disc.score(y_rec_gt_pred))

    @torch.no_grad()
    def scale_gradients(self, model: nn.Module) -> float:
        """The reference's gradient rule after ``generator_loss.backward()``: if the predictor's
        gradient norm exceeds ``thresh``, divide every gradient of ``model`` by it; then multiply the
        gradients of the duration LSTM and projection and of the diffusion model by ``scale``.
        Returns the predictor's gradient norm (before scaling)."""
        grads = [p.grad for p in model.predictor.parameters() if p.grad is not None and p.requires_grad]
        norm = float(sum(g.norm(2).item() ** 2 for g in grads) ** 0.5)
        if norm > self.thresh:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(1 / norm)
        for module in (model.predictor.duration_proj, model.predictor.lstm, model.diffusion):
            for p in module.parameters():
                if p.grad is not None:
                    p.grad.mul_(self.scale)
        return norm
