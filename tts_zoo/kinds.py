"""The component kinds, as data (no torch import): name → interface class path and summary.

A plugin may add a kind in its catalogue (``kinds:`` section); see ``tts_zoo.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    interface: str  # "module:Class", imported only when a component of this kind is built
    summary: str


CORE_KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("text_frontend", "tts_zoo.interfaces:TextFrontend", "text → phonemes → token ids"),
        Kind("text_encoder", "tts_zoo.interfaces:TextEncoder", "token ids → features [B, C, T]"),
        Kind("language_model", "tts_zoo.interfaces:LanguageModel", "token ids → contextual features [B, T, H]"),
        Kind("style_model", "tts_zoo.interfaces:StyleModel", "reference mel, or text + noise → style vector"),
        Kind("sampler", "tts_zoo.interfaces:Sampler", "diffusion sampler: (denoise_fn, noise, sigmas, …) → sample"),
        Kind("noise_schedule", "tts_zoo.interfaces:NoiseSchedule", "n steps → sigmas"),
        Kind("duration_model", "tts_zoo.interfaces:DurationModel", "text features + style → durations, F0, energy"),
        Kind("vocoder", "tts_zoo.interfaces:Vocoder", "aligned features, F0, energy, style → waveform"),
        Kind("discriminator", "tts_zoo.interfaces:Discriminator", "waveforms → scores + feature maps"),
        Kind("aligner", "tts_zoo.interfaces:Aligner", "mel + text → attention / durations"),
        Kind("pitch_extractor", "tts_zoo.interfaces:PitchExtractor", "mel → F0"),
        Kind("loss", "tts_zoo.interfaces:Loss", "a training objective"),
        Kind("model", "tts_zoo.interfaces:TTSModel", "a whole TTS model assembled from components"),
        Kind("stage", "tts_zoo.interfaces:Stage", "a training stage over a built model"),
    ]
}
