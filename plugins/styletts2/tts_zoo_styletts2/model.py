"""The StyleTTS 2 model assembled from components (Li et al. 2023, "StyleTTS 2: Towards Human-Level
Text-to-Speech through Style Diffusion and Adversarial Training with Large Speech Language Models").

Inference follows the reference's demo notebooks step by step (fixtures README section 6); each step
is a method so that training stages, tests and debugging tools can call it on its own.
Shapes: B batch, T tokens, F text-aligned frames (= 2 mel frames = 600 samples), D = 2·style_dim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from tts_zoo import interfaces
from tts_zoo.audio import AudioError, length_to_mask


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
        self.style_size = 2 * self.style_dim
        # The LibriTTS notebook cuts 50 samples off the end ("weird pulse at the end of the model").
        self.end_trim_samples = 50 if multispeaker else 0

    # What the generic Synthesizer (tts_zoo.synthesize) reads besides frontend / synthesize.
    token_prefix = (0,)  # inference prepends one 0 (the pad symbol) to the text's ids
    min_reference_frames = 65  # the style encoders' 4 down-samplings + 5x5 conv need >= 65 mel frames

    @property
    def requires_reference(self) -> bool:
        """Multi-speaker models sample styles relative to a reference voice."""
        return self.multispeaker

    @property
    def max_tokens(self) -> int:
        """Longest token sequence ``synthesize`` takes (leading 0 included): PL-BERT's positions,
        and the diffusion's unconditional embedding table (512 rows in every reference model)."""
        limits = [m.max_length for m in self.diffusion.modules() if isinstance(getattr(m, "max_length", None), int)]
        config = getattr(getattr(self.plbert, "bert", None), "config", None)
        if config is not None:
            limits.append(int(config.max_position_embeddings))
        return min(limits) if limits else 512

    TRAINING_ONLY = ("text_aligner", "pitch_extractor", "mpd", "msd", "slm_discriminator")

    @classmethod
    def inference_block(cls, block: dict) -> dict:
        """The model block without the training-only modules (no WavLM or discriminator weights needed)
        and without PL-BERT's pretraining heads."""
        plbert = block.get("plbert")
        if isinstance(plbert, dict) and plbert.get("word_vocab_size") is not None:
            block = {**block, "plbert": {**plbert, "word_vocab_size": None}}
        return {**block, **{name: None for name in cls.TRAINING_ONLY}}

    # ------------------------------------------------------------------ the inference steps

    def reference_style(self, wave: Tensor) -> Tensor:
        """A reference recording [S] at 24 kHz → style [1, D], as the reference's ``compute_style``:
        leading/trailing silence trimmed (top_db 30), log-mel, both style encoders."""
        from tts_zoo.audio import log_mel, trim_silence

        wave = trim_silence(wave.flatten(), top_db=30)
        if 1 + wave.numel() // 300 < self.min_reference_frames:
            need = (self.min_reference_frames - 1) * 300 / self.sample_rate
            raise AudioError(f"reference audio has {wave.numel() / self.sample_rate:.2f} s of sound after trimming "
                             f"silence; the style encoders need at least {need:.2f} s (use a longer recording)")
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
        decoder_seed: Optional[int] = None,
        return_intermediates: bool = False,
    ) -> Tensor | Intermediates:
        """tokens [1, T] (with the leading 0) + optional reference style [1, D] → waveform [S].

        With a reference style and ``use_diffusion``, the sampled style is mixed with it (``alpha``,
        ``beta``); without diffusion the reference style is used as is; without a reference (single-
        speaker models) the sampled style is used. ``durations`` [T] sets the frames per token.
        ``generator`` draws the diffusion noise; ``decoder_seed`` seeds the decoder's noise (else
        both come from torch's global generator, in the notebook's order).
        """
        if tokens.dim() != 2 or tokens.shape[0] != 1:
            raise ValueError(f"synthesize takes tokens [1, T], got {tuple(tokens.shape)}")
        out = next(self.synthesize_chunks(
            [tokens[0]], style, alpha=alpha, beta=beta, diffusion_steps=diffusion_steps, embedding_scale=embedding_scale,
            speed=speed, durations=None if durations is None else [durations], use_diffusion=use_diffusion,
            generator=generator, decoder_seed=decoder_seed, return_intermediates=True,
        ))
        return out if return_intermediates else out.wave

    @torch.inference_mode()
    def synthesize_chunks(
        self,
        chunks: Sequence[Tensor],
        style: Optional[Tensor] = None,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        diffusion_steps: int = 5,
        embedding_scale: float = 1.0,
        speed: float = 1.0,
        durations: Optional[Sequence[Optional[Tensor]]] = None,
        use_diffusion: bool = True,
        style_carry: float = 0.7,
        batch_size: int = 8,
        generator: Optional[torch.Generator] = None,
        decoder_seed: Optional[int] = None,
        return_intermediates: bool = False,
    ) -> Iterator[Tensor | Intermediates]:
        """Long-form synthesis: token chunks [T_i] (each with its leading 0) → one waveform [S_i] per
        chunk, in order, as a generator (the caller concatenates or streams them).

        The sampled style is carried from chunk to chunk as in the reference's long-form inference
        (``LFinference``, Li et al. 2023 Algorithm 1): ``s_i = t·s_{i-1} + (1 - t)·sampled_i`` with
        t = ``style_carry``, then mixed with the reference (``alpha``, ``beta``); ``s_i`` is the style
        used for chunk i. Text encoding, style sampling and durations run on batches of up to
        ``batch_size`` chunks of similar length (the first batch is the first chunk alone, so the
        first audio comes early); each chunk is decoded on its own: the decoder's instance norms
        span the whole sequence, so padding would change its output. ``durations[i]`` [T_i] sets a
        chunk's frames per token; chunk i's decoder noise is seeded with ``decoder_seed + i``.
        """
        if durations is not None and len(durations) != len(chunks):
            raise ValueError(f"got durations for {len(durations)} chunks, but {len(chunks)} chunks")
        device = next(self.parameters()).device
        lengths_all = [int(c.numel()) for c in chunks]
        previous: Optional[Tensor] = None
        for batch in self.chunk_batches(lengths_all, batch_size):
            lengths = torch.tensor([lengths_all[i] for i in batch], device=device)
            tokens = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long, device=device)
            for j, i in enumerate(batch):
                tokens[j, : lengths_all[i]] = chunks[i].to(device).flatten()
            t_en, bert_dur, d_en, mask = self.encode_text(tokens, lengths)
            sampled = None
            if use_diffusion or style is None:
                reference = None if style is None else style.expand(len(batch), -1)
                sampled = self.sample_style(bert_dur, reference, diffusion_steps, embedding_scale, generator=generator)
            styles = []
            for j in range(len(batch)):
                current = None if sampled is None else sampled[j : j + 1]
                if current is not None and previous is not None and style_carry:
                    current = style_carry * previous + (1 - style_carry) * current
                previous = torch.cat(self.mix_style(current, style, alpha, beta), dim=-1)
                styles.append(previous)
            mixed = torch.cat(styles)
            acoustic, prosodic = mixed[:, : self.style_dim], mixed[:, self.style_dim :]
            d, logits, predicted = self.predict_durations(d_en, prosodic, lengths, mask, speed)
            for j, i in enumerate(batch):
                n = lengths_all[i]
                given = None if durations is None else durations[i]
                if given is not None:
                    given = torch.as_tensor(given, device=device).flatten()
                    if given.numel() != n:
                        raise ValueError(f"durations has {given.numel()} entries for {n} tokens")
                chunk_durations = predicted[j, :n] if given is None else given
                alignment = self.hard_alignment(chunk_durations)
                with _seeded(None if decoder_seed is None else decoder_seed + i, device):
                    wave, f0, energy = self.decode(
                        t_en[j : j + 1, :, :n], d[j : j + 1, :n], alignment, acoustic[j : j + 1], prosodic[j : j + 1]
                    )
                wave = wave.flatten()
                if return_intermediates:
                    yield Intermediates(tokens[j : j + 1, :n], mixed[j : j + 1], logits[j : j + 1, :n], chunk_durations,
                                        alignment, f0, energy, wave)
                else:
                    yield wave

    @staticmethod
    def chunk_batches(lengths: Sequence[int], batch_size: int = 8, max_padding: float = 0.3) -> list[list[int]]:
        """Group consecutive chunks into batches: the first chunk alone, then up to ``batch_size``
        chunks while padding stays under ``max_padding`` of the batch's real tokens."""
        batches: list[list[int]] = []
        for i, n in enumerate(lengths):
            batch = batches[-1] if len(batches) > 1 else None
            if batch is not None and len(batch) < batch_size:
                longest = max(max(lengths[k] for k in batch), n)
                real = sum(lengths[k] for k in batch) + n
                if longest * (len(batch) + 1) <= (1 + max_padding) * real:
                    batch.append(i)
                    continue
            batches.append([i])
        return batches

    def prepare_for_inference(self, bf16: bool = False) -> "StyleTTS2":
        """eval(), weight norm folded everywhere (the same weights, computed once instead of at every
        call), training-only modules dropped (smaller, faster).

        ``bf16``: the waveform generator's convolutions run in bfloat16 (weights converted once, each
        conv's input cast to bfloat16 and its output back to float32; everything else stays float32).
        Faster where bfloat16 matrix units exist (AMX / AVX512-BF16 CPUs, GPUs); not bit-identical:
        ``benchmarks/inference.py --bf16`` reports its speed and its MCD against float32 (official
        widths, random weights: iSTFTNet 0.26 dB at 0.7x the time; HiFi-GAN 6.4 dB, not advised).
        """
        from tts_zoo_styletts2.layers import remove_weight_norm

        self.eval()
        self.decoder.remove_weight_norm()
        remove_weight_norm(self)  # text encoder, prosody predictor
        for name in self.TRAINING_ONLY:
            setattr(self, name, None)
        if bf16:
            _bf16_convolutions(getattr(self.decoder, "generator", self.decoder))
        return self


@contextlib.contextmanager
def _seeded(seed: Optional[int], device: torch.device) -> Iterator[None]:
    """Run a block on torch's global generator seeded with ``seed``, restoring its state afterwards
    (the decoder's NSF source draws from the global generator); ``None`` = leave it alone."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _bf16_convolutions(module: torch.nn.Module) -> None:
    """Every Conv1d / ConvTranspose1d below ``module``: bfloat16 weights, its input cast to bfloat16
    and its output back to float32 (so the element-wise work around the convolutions stays float32)."""
    for conv in module.modules():
        if isinstance(conv, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)) and conv.weight.dtype != torch.bfloat16:
            conv.to(torch.bfloat16)
            conv.register_forward_pre_hook(lambda _, args: (args[0].to(torch.bfloat16), *args[1:]))
            conv.register_forward_hook(lambda _, args, out: out.float())
