"""The StyleTTS 2 model assembled from components (Li et al. 2023, "StyleTTS 2: Towards Human-Level
Text-to-Speech through Style Diffusion and Adversarial Training with Large Speech Language Models").

Inference follows the reference's demo notebooks step by step (fixtures README section 6); each step
is a method so that training stages, tests and debugging tools can call it on its own.
Shapes: B batch, T tokens, F text-aligned frames (= 2 mel frames = 600 samples), D = 2·style_dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from tts_zoo import interfaces
from tts_zoo.audio import length_to_mask


@dataclass
class Intermediates:
    """Everything one synthesis computed (``--dump`` writes these)."""

    tokens: Tensor  # [1, T]
    style: Tensor  # [1, D] the style actually used: [acoustic | prosodic]
    duration_logits: Tensor  # [1, T, max_dur]
    durations: Tensor  # [T] frames per token (after speed and rounding)
    alignment: Tensor  # [T, F] hard alignment
    f0: Tensor  # [1, 2F] Hz
    energy: Tensor  # [1, 2F]
    wave: Tensor  # [S]


class StyleTTS2(interfaces.TTSModel):
    """StyleTTS 2: text → style (reference audio and/or diffusion) → durations, F0, energy → waveform.

    Args:
        frontend: Text frontend (text → phonemes → token ids).
        text_encoder: Acoustic text encoder (CNN + BiLSTM).
        plbert: Phoneme-level BERT with its projection to the text encoder's width.
        style_encoder: Acoustic style encoder (reference mel → first half of the style vector).
        predictor_encoder: Prosodic style encoder (reference mel → second half of the style vector).
        predictor: Prosody predictor (durations, F0, energy).
        decoder: Waveform decoder (HiFi-GAN or iSTFTNet).
        diffusion: Style diffusion model (text context [+ reference style] + noise → style).
        text_aligner: Text aligner used in training (monotonic alignments); None for inference-only models.
        pitch_extractor: Pitch extractor used in training (F0 targets); None for inference-only models.
        mpd: Multi-period discriminator (training only); None to drop it.
        msd: Multi-resolution spectrogram discriminator (training only); None to drop it.
        slm_discriminator: Speech-language-model (WavLM) discriminator (stage-2 training only); None to drop it.
        sampler: Diffusion sampler for the style (default: ADPM2 as in the reference).
        schedule: Noise schedule for the sampler (default: Karras, sigma 1e-4..3, rho 9).
        multispeaker: Whether the diffusion is conditioned on a reference style (LibriTTS-style models).
        pad_last_token: Frames added to the last token's predicted duration (the reference's LJSpeech notebook uses 5).
    """

    def __init__(
        self,
        frontend: interfaces.TextFrontend,
        text_encoder: interfaces.TextEncoder,
        plbert: interfaces.LanguageModel,
        style_encoder: interfaces.StyleEncoder,
        predictor_encoder: interfaces.StyleEncoder,
        predictor: interfaces.DurationModel,
        decoder: interfaces.Vocoder,
        diffusion: interfaces.StyleDiffusion,
        text_aligner: Optional[interfaces.Aligner] = None,
        pitch_extractor: Optional[interfaces.PitchExtractor] = None,
        mpd: Optional[interfaces.Discriminator] = None,
        msd: Optional[interfaces.Discriminator] = None,
        slm_discriminator: Optional[interfaces.Discriminator] = None,
        sampler: Optional[interfaces.Sampler] = None,
        schedule: Optional[interfaces.NoiseSchedule] = None,
        multispeaker: bool = False,
        pad_last_token: int = 0,
    ):
        super().__init__()
        from tts_zoo_styletts2.diffusion.samplers import ADPM2Sampler
        from tts_zoo_styletts2.diffusion.schedules import KarrasSchedule

        self.frontend = frontend
        self.text_encoder = text_encoder
        self.plbert = plbert
        self.style_encoder = style_encoder
        self.predictor_encoder = predictor_encoder
        self.predictor = predictor
        self.decoder = decoder
        self.diffusion = diffusion
        self.text_aligner = text_aligner
        self.pitch_extractor = pitch_extractor
        self.mpd = mpd
        self.msd = msd
        self.slm_discriminator = slm_discriminator
        self.sampler = sampler if sampler is not None else ADPM2Sampler()
        self.schedule = schedule if schedule is not None else KarrasSchedule()
        self.multispeaker = multispeaker
        self.pad_last_token = pad_last_token
        self.style_dim = style_encoder.style_dim

    TRAINING_ONLY = ("text_aligner", "pitch_extractor", "mpd", "msd", "slm_discriminator")

    @classmethod
    def inference_block(cls, block: dict) -> dict:
        """The model block without the training-only modules (no WavLM or discriminator weights needed)."""
        return {**block, **{name: None for name in cls.TRAINING_ONLY}}

    # ------------------------------------------------------------------ the inference steps

    def reference_style(self, wave: Tensor) -> Tensor:
        """A reference recording [S] at 24 kHz → style [1, D], as the reference's ``compute_style``:
        leading/trailing silence trimmed (top_db 30), log-mel, both style encoders."""
        from tts_zoo.audio import log_mel, trim_silence

        wave = trim_silence(wave.flatten(), top_db=30)
        device = next(self.parameters()).device
        return self.compute_style(log_mel(wave.to(device)).unsqueeze(0))

    def compute_style(self, mel: Tensor) -> Tensor:
        """Reference log-mel [B, n_mels, F_mel] → style [B, D] = [acoustic | prosodic]."""
        mel = mel.unsqueeze(1)
        return torch.cat([self.style_encoder(mel), self.predictor_encoder(mel)], dim=-1)

    def encode_text(self, tokens: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """tokens [B, T] → (t_en [B, C, T], bert_dur [B, T, H], d_en [B, C, T], padding_mask [B, T])."""
        if lengths is None:
            lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        mask = length_to_mask(lengths, tokens.shape[1]).to(tokens.device)
        t_en = self.text_encoder(tokens, lengths, mask)
        bert_dur = self.plbert(tokens, attention_mask=(~mask).int())
        d_en = self.plbert.project(bert_dur)
        return t_en, bert_dur, d_en, mask

    def sample_style(
        self,
        bert_dur: Tensor,
        reference_style: Optional[Tensor] = None,
        num_steps: int = 5,
        embedding_scale: float = 1.0,
        noise: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Sample a style [B, D] by diffusion conditioned on PL-BERT features (and, for multi-speaker
        models, on a reference style). ``noise`` [B, 1, D] defaults to a fresh draw."""
        if noise is None:
            shape = (bert_dur.shape[0], 1, 2 * self.style_dim)
            noise = torch.randn(shape, generator=generator, device=bert_dur.device, dtype=bert_dur.dtype)
        features = reference_style if self.multispeaker else None
        if self.multispeaker and features is None:
            raise ValueError("a multi-speaker model samples styles relative to a reference style: pass reference audio")
        sample = self.diffusion.sample(
            noise, embedding=bert_dur, features=features, sampler=self.sampler, schedule=self.schedule,
            num_steps=num_steps, embedding_scale=embedding_scale, generator=generator,
        )
        return sample.squeeze(1)

    def mix_style(self, sampled: Optional[Tensor], reference: Optional[Tensor], alpha: float, beta: float) -> tuple[Tensor, Tensor]:
        """(acoustic [B, sd], prosodic [B, sd]) from a sampled and/or a reference style [B, D]:
        ``alpha``/``beta`` weigh the sampled acoustic/prosodic halves against the reference's."""
        sd = self.style_dim
        if sampled is None and reference is None:
            raise ValueError("need a reference style or a sampled style")
        if reference is None:
            return sampled[:, :sd], sampled[:, sd:]
        if sampled is None:
            return reference[:, :sd], reference[:, sd:]
        acoustic = alpha * sampled[:, :sd] + (1 - alpha) * reference[:, :sd]
        prosodic = beta * sampled[:, sd:] + (1 - beta) * reference[:, sd:]
        return acoustic, prosodic

    def predict_durations(self, d_en: Tensor, prosodic: Tensor, lengths: Tensor, mask: Tensor,
                          speed: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """→ (d [B, T, C + sd], duration logits [B, T, max_dur], integer durations [B, T] ≥ 1)."""
        logits, d = self.predictor.predict_durations(d_en, prosodic, lengths, mask)
        expected = torch.sigmoid(logits).sum(dim=-1) / speed
        durations = torch.round(expected).clamp(min=1)
        if self.pad_last_token:
            last = (lengths - 1).to(durations.device)
            durations[torch.arange(len(last), device=durations.device), last] += self.pad_last_token
        return d, logits, durations

    @staticmethod
    def hard_alignment(durations: Tensor) -> Tensor:
        """Integer durations [T] → bool alignment [T, sum(durations)] (token i covers the next d_i frames)."""
        durations = durations.long()
        frame_owner = torch.repeat_interleave(torch.arange(len(durations), device=durations.device), durations)
        return frame_owner.unsqueeze(0) == torch.arange(len(durations), device=durations.device).unsqueeze(1)

    def decode(self, t_en: Tensor, d: Tensor, alignment: Tensor, acoustic: Tensor, prosodic: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Aligned features → (wave [B, 1, 600·F], F0 [B, 2F], energy [B, 2F]) for B = 1."""
        aln = alignment.unsqueeze(0).to(d.dtype)
        en = d.transpose(-1, -2) @ aln
        asr = t_en @ aln
        if getattr(self.decoder, "aligned_frame_shift", 0):  # the reference shifts HiFi-GAN inputs one frame right
            en = torch.cat([en[..., :1], en[..., :-1]], dim=-1)
            asr = torch.cat([asr[..., :1], asr[..., :-1]], dim=-1)
        f0, energy = self.predictor.predict_f0_energy(en, prosodic)
        return self.decoder(asr, f0, energy, acoustic), f0, energy

    # ------------------------------------------------------------------ the whole chain

    @torch.inference_mode()
    def synthesize(
        self,
        tokens: Tensor,
        style: Optional[Tensor] = None,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        diffusion_steps: int = 5,
        embedding_scale: float = 1.0,
        speed: float = 1.0,
        durations: Optional[Tensor] = None,
        use_diffusion: bool = True,
        generator: Optional[torch.Generator] = None,
        return_intermediates: bool = False,
    ) -> Tensor | Intermediates:
        """tokens [1, T] (with the leading 0) + optional reference style [1, D] → waveform [S].

        With a reference style and ``use_diffusion``, the sampled style is mixed with it (``alpha``,
        ``beta``); without diffusion the reference style is used as is; without a reference (single-
        speaker models) the sampled style is used. ``durations`` [T] sets the frames per token.
        """
        if tokens.dim() != 2 or tokens.shape[0] != 1:
            raise ValueError(f"synthesize takes tokens [1, T], got {tuple(tokens.shape)}")
        lengths = torch.tensor([tokens.shape[1]], device=tokens.device)
        t_en, bert_dur, d_en, mask = self.encode_text(tokens, lengths)
        sampled = None
        if use_diffusion or style is None:
            sampled = self.sample_style(bert_dur, style, diffusion_steps, embedding_scale, generator=generator)
        acoustic, prosodic = self.mix_style(sampled, style, alpha, beta)
        d, logits, predicted = self.predict_durations(d_en, prosodic, lengths, mask, speed)
        if durations is not None:
            durations = torch.as_tensor(durations, device=tokens.device).flatten()
            if durations.numel() != tokens.shape[1]:
                raise ValueError(f"durations has {durations.numel()} entries for {tokens.shape[1]} tokens")
        else:
            durations = predicted[0]
        alignment = self.hard_alignment(durations)
        wave, f0, energy = self.decode(t_en, d, alignment, acoustic, prosodic)
        wave = wave.flatten()
        if not return_intermediates:
            return wave
        return Intermediates(tokens, torch.cat([acoustic, prosodic], -1), logits, durations, alignment, f0, energy, wave)

    def prepare_for_inference(self) -> "StyleTTS2":
        """eval(), weight norm folded, training-only modules dropped (smaller, faster)."""
        self.eval()
        self.decoder.remove_weight_norm()
        for name in self.TRAINING_ONLY:
            setattr(self, name, None)
        return self
