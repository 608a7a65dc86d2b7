"""The contracts of the network kinds (``tts_zoo.interfaces``), as the kit calls and checks them.

Batch 2, the second item shorter where the kind takes lengths or masks. Shape letters as in
``tts_zoo.interfaces``: T tokens, F frames, S samples. Which inputs must receive a gradient follows
how StyleTTS 2 trains (Li et al. 2023): stage 2 back-propagates the decoder's losses into the
predicted F0 and energy and the aligned text features, the style reconstruction loss through the
diffusion denoiser into its input and text embedding, and the generator's adversarial loss through
every discriminator into the generated wave.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from tts_zoo.audio import length_to_mask, log_mel, log_norm
from tts_zoo.testing.modules import Contract, Inputs
from tts_zoo.testing.subject import Subject, assert_shape, randn

B = 2


def _tokens(s: Subject, length: int, seed: int) -> Tensor:
    """Token ids [B, length] in 1 .. n_symbols - 1 (0 is padding in StyleTTS 2's table)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, s.size("n_symbols"), (B, length), generator=g)


def _lengths_mask(lengths: list[int]) -> tuple[Tensor, Tensor]:
    lengths_t = torch.tensor(lengths)
    return lengths_t, length_to_mask(lengths_t)


# ---------------------------------------------------------------- text


def _text_encoder_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    lengths, mask = _lengths_mask([7, 5])
    return {"tokens": _tokens(s, 7, 1).to(device), "lengths": lengths.to(device), "padding_mask": mask.to(device)}


def _text_encoder_check(s: Subject, module: Any, x: Inputs, out: Tensor) -> None:
    assert isinstance(out, Tensor) and out.dim() == 3, f"output: expected [B, C, T], got {getattr(out, 'shape', out)}"
    assert_shape("output [B, C, T]", out, (B, out.shape[1], 7), torch.float32)
    assert bool((out[1, :, 5:] == 0).all()), "output: not zero where padding_mask is True (item 1, tokens 5-6)"


TEXT_ENCODER = Contract(_text_encoder_inputs, lambda m, x: m(x["tokens"], x["lengths"], x["padding_mask"]),
                        _text_encoder_check)


def _language_model_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    keep = ~length_to_mask(torch.tensor([6, 4]))
    return {"tokens": _tokens(s, 6, 2).to(device), "attention_mask": keep.long().to(device)}


def _language_model_check(s: Subject, module: Any, x: Inputs, out: Tensor) -> None:
    hidden = getattr(module, "hidden_size", None)
    assert isinstance(hidden, int), "a LanguageModel declares hidden_size (int): the width H of its output"
    assert_shape("output [B, T, hidden_size]", out, (B, 6, hidden), torch.float32)


LANGUAGE_MODEL = Contract(_language_model_inputs, lambda m, x: m(x["tokens"], x["attention_mask"]),
                          _language_model_check)


# ---------------------------------------------------------------- style


def _mel_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    # 96 frames: StyleTTS 2's style encoder halves the mel 4 times before a 5x5 conv (training clips: >= 80)
    return {"mel": randn(B, 1, s.size("n_mels"), 96, seed=3, dtype=dtype, device=device)}


def _style_encoder_check(s: Subject, module: Any, x: Inputs, out: Tensor) -> None:
    assert isinstance(getattr(module, "style_dim", None), int), "a StyleModel declares style_dim (int)"
    assert_shape("output [B, style_dim]", out, (B, module.style_dim), torch.float32)


STYLE_ENCODER = Contract(_mel_inputs, lambda m, x: m(x["mel"]), _style_encoder_check)


def _diffusion_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    width = getattr(module, "channels", module.style_dim)  # D, the sampled vector's width
    return {"x_noisy": randn(B, 1, width, seed=4, dtype=dtype, device=device),
            "sigma": torch.tensor([0.5, 2.0], dtype=dtype, device=device),
            "embedding": randn(B, 5, s.size("embedding_features"), seed=5, dtype=dtype, device=device)}


def _diffusion_call(module: Any, x: Inputs) -> tuple[Tensor, Tensor]:
    denoised = module.denoise(x["x_noisy"], x["sigma"], x["embedding"])
    return denoised, module.loss(x["x_noisy"], x["embedding"])


def _diffusion_check(s: Subject, module: Any, x: Inputs, out: tuple[Tensor, Tensor]) -> None:
    assert_shape("denoise(x_noisy [B, 1, D], sigma [B], embedding [B, T, H]) → [B, 1, D]", out[0],
                 tuple(x["x_noisy"].shape), torch.float32)
    assert_shape("loss(x, embedding) → scalar", out[1], ())


STYLE_DIFFUSION = Contract(_diffusion_inputs, _diffusion_call, _diffusion_check, ("x_noisy", "embedding"))


# ---------------------------------------------------------------- prosody and waveform


def _duration_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    c, st = s.size("channels"), s.size("style_dim")
    lengths, mask = _lengths_mask([6, 4])
    return {"text_features": randn(B, c, 6, seed=6, dtype=dtype, device=device).masked_fill(mask.unsqueeze(1), 0.0),
            "style": randn(B, st, seed=7, dtype=dtype, device=device),
            "lengths": lengths.to(device), "padding_mask": mask.to(device),
            "aligned": randn(B, c + st, 10, seed=8, dtype=dtype, device=device)}


def _duration_call(module: Any, x: Inputs) -> tuple[Tensor, ...]:
    logits, encoded = module.predict_durations(x["text_features"], x["style"], x["lengths"], x["padding_mask"])
    f0, energy = module.predict_f0_energy(x["aligned"], x["style"])
    return logits, encoded, f0, energy


def _duration_check(s: Subject, module: Any, x: Inputs, out: tuple[Tensor, ...]) -> None:
    logits, encoded, f0, energy = out
    assert logits.dim() == 3 and logits.shape[2] > 0, f"duration logits: expected [B, T, max_dur], got {list(logits.shape)}"
    assert_shape("duration logits [B, T, max_dur]", logits, (B, 6, logits.shape[2]), torch.float32)
    c_s = x["aligned"].shape[1]
    assert_shape("encoded [B, T, C + S]", encoded, (B, 6, c_s), torch.float32)
    assert_shape("F0 [B, 2F]", f0, (B, 20), torch.float32)
    assert_shape("energy [B, 2F]", energy, (B, 20), torch.float32)


DURATION_MODEL = Contract(_duration_inputs, _duration_call, _duration_check, ("text_features", "style", "aligned"))


def _vocoder_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    """F frames of 600 samples: F0 in Hz and energy as the decoder receives them in training
    (log_norm of the log-mel: the log of the L2 norm over mel bands), per mel frame (2F)."""
    frames = 6
    t = torch.arange(600 * frames, dtype=torch.float64) / 24000
    f0 = (150 + 30 * torch.sin(2 * math.pi * 3 * t[::300][: 2 * frames])).repeat(B, 1)
    f0[1, -3:] = 0.0  # unvoiced frames
    wave = 0.3 * torch.sin(2 * math.pi * torch.cumsum(f0[0].repeat_interleave(300) / 24000, 0))
    energy = log_norm(log_mel(wave.float()).unsqueeze(0).unsqueeze(0)).squeeze(1)[:, : 2 * frames].repeat(B, 1)
    return {"aligned": randn(B, s.size("channels"), frames, seed=9, dtype=dtype, device=device),
            "f0": f0.to(dtype=dtype, device=device), "energy": energy.to(dtype=dtype, device=device),
            "style": randn(B, s.size("style_dim"), seed=10, dtype=dtype, device=device)}


def _vocoder_check(s: Subject, module: Any, x: Inputs, out: Tensor) -> None:
    spf = getattr(module, "samples_per_frame", None)
    assert isinstance(spf, int) and spf > 0, "a Vocoder declares samples_per_frame (int)"
    assert_shape("wave [B, 1, samples_per_frame·F]", out, (B, 1, spf * x["aligned"].shape[2]), torch.float32)


VOCODER = Contract(_vocoder_inputs, lambda m, x: m(x["aligned"], x["f0"], x["energy"], x["style"]),
                   _vocoder_check, ("aligned", "f0", "energy", "style"))


def _discriminator_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    n = s.sizes.get("samples", 4800)
    return {"real": 0.1 * randn(B, 1, n, seed=11, dtype=dtype, device=device),
            "fake": 0.1 * randn(B, 1, n, seed=12, dtype=dtype, device=device)}


def _discriminator_check(s: Subject, module: Any, x: Inputs, out: Any) -> None:
    from tts_zoo.interfaces import DiscriminatorOutput

    assert isinstance(out, DiscriminatorOutput), f"expected a DiscriminatorOutput, got {type(out).__name__}"
    n = len(out.real_scores)
    assert n > 0, "no sub-discriminator scores"
    assert [len(out.fake_scores), len(out.real_features), len(out.fake_features)] == [n] * 3, (
        "real_scores, fake_scores, real_features and fake_features need one entry per sub-discriminator")
    for i in range(n):
        real, fake = out.real_scores[i], out.fake_scores[i]
        assert_shape(f"real_scores[{i}]", real, tuple(real.shape), torch.float32)
        assert real.shape[0] == B and real.shape == fake.shape, (
            f"scores[{i}]: real {list(real.shape)} and fake {list(fake.shape)} must match, batch first")
        shapes = [[list(f.shape) for f in feats[i]] for feats in (out.real_features, out.fake_features)]
        assert shapes[0] == shapes[1], f"features[{i}]: real {shapes[0]} != fake {shapes[1]}"


DISCRIMINATOR = Contract(_discriminator_inputs, lambda m, x: m(x["real"], x["fake"]), _discriminator_check, ("fake",))


# ---------------------------------------------------------------- alignment and pitch


def _aligner_inputs(s: Subject, module: Any, dtype: torch.dtype, device: Any) -> Inputs:
    _, frame_mask = _lengths_mask([8, 6])
    return {"mel": randn(B, s.size("n_mels"), 16, seed=13, dtype=dtype, device=device),
            "mel_padding_mask": frame_mask.to(device), "tokens": _tokens(s, 5, 14).to(device)}


def _aligner_check(s: Subject, module: Any, x: Inputs, out: Any) -> None:
    from tts_zoo.interfaces import AlignerOutput

    assert isinstance(out, AlignerOutput), f"expected an AlignerOutput, got {type(out).__name__}"
    n_token = out.ctc_logits.shape[-1]
    assert_shape("ctc_logits [B, F/2, n_token]", out.ctc_logits, (B, 8, n_token), torch.float32)
    assert_shape("s2s_logits [B, T + 1, n_token]", out.s2s_logits, (B, 6, n_token), torch.float32)
    assert_shape("attention [B, T + 1, F/2]", out.attention, (B, 6, 8), torch.float32)


ALIGNER = Contract(_aligner_inputs, lambda m, x: m(x["mel"], x["mel_padding_mask"], x["tokens"]), _aligner_check)


def _pitch_mel_check(s: Subject, module: Any, x: Inputs, out: Any) -> None:
    assert isinstance(out, tuple) and len(out) == 3, "forward(mel) returns (f0, features, pooled)"
    assert_shape("f0 [B, F]", out[0], (B, x["mel"].shape[-1]), torch.float32)


PITCH_EXTRACTOR_MEL = Contract(_mel_inputs, lambda m, x: m(x["mel"]), _pitch_mel_check)


def check_wave_pitch_extractor(s: Subject) -> None:
    """A ``"wave"`` pitch extractor: F0 in Hz per 300-sample frame, 0 where unvoiced, on a 220 Hz
    tone and on silence; ``describe()`` is a dict (its cache key)."""
    module = s.make().eval()
    t = torch.arange(12000) / 24000
    wave = torch.stack([0.3 * torch.sin(2 * math.pi * 220 * t), torch.zeros_like(t)])
    f0, features, pooled = module(wave)
    assert_shape("f0 [B, 1 + S // 300]", f0, (B, 1 + wave.shape[1] // 300))
    assert bool((f0 >= 0).all()), "f0: negative values (the contract: Hz, 0 where unvoiced)"
    assert bool((f0[1] == 0).all()), "f0 of silence is not 0 (unvoiced) everywhere"
    voiced = f0[0][f0[0] > 0]
    assert voiced.numel() >= f0.shape[1] // 2, f"a 220 Hz tone is voiced in only {voiced.numel()} of {f0.shape[1]} frames"
    median = float(voiced.median())
    assert abs(median - 220) < 220 * 0.03, f"f0 of a 220 Hz tone: median {median:.1f} Hz (the contract's unit is Hz)"
    assert isinstance(module.describe(), dict), "describe() must return a dict (the F0 cache key)"
