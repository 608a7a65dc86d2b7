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
    contract: str = ""  # how a component of this kind is called (shown by `tts-zoo show`)


CORE_KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("text_frontend", "tts_zoo.interfaces:TextFrontend", "text → phonemes → token ids",
             "frontend(text) -> token ids; .phonemize(text) -> str; .encode(phonemes) -> ids; .symbols"),
        Kind("text_encoder", "tts_zoo.interfaces:TextEncoder", "token ids → features [B, C, T]",
             "text_encoder(tokens [B,T], lengths [B], padding_mask [B,T]) -> [B,C,T]"),
        Kind("language_model", "tts_zoo.interfaces:LanguageModel", "token ids → contextual features [B, T, H]",
             "lm(tokens [B,T], attention_mask [B,T]) -> [B,T,H]"),
        Kind("style_model", "tts_zoo.interfaces:StyleModel", "reference mel, or text + noise → style vector",
             "encoder(mel [B,1,n_mels,F]) -> style [B,D]  |  diffusion.sample(noise, embedding, features, sampler, schedule, num_steps) -> [B,1,D]"),
        Kind("sampler", "tts_zoo.interfaces:Sampler", "diffusion sampler: (denoise_fn, noise, sigmas, …) → sample",
             "sampler(denoise_fn, noise, sigmas, *, extra_args=None, callback=None, generator=None) -> sample (shape of noise); denoise_fn(x, sigma, **extra_args) -> denoised"),
        Kind("noise_schedule", "tts_zoo.interfaces:NoiseSchedule", "n steps → sigmas",
             "schedule(num_steps, device=None) -> sigmas [num_steps+1], decreasing, ending in 0"),
        Kind("duration_model", "tts_zoo.interfaces:DurationModel", "text features + style → durations, F0, energy",
             "predict_durations(text_features [B,C,T], style [B,S], lengths, padding_mask) -> (logits [B,T,max_dur], d); predict_f0_energy(aligned [B,C+S,F], style) -> (F0 [B,2F], energy [B,2F])"),
        Kind("vocoder", "tts_zoo.interfaces:Vocoder", "aligned features, F0, energy, style → waveform",
             "vocoder(aligned [B,C,F], f0 [B,2F], energy [B,2F], style [B,S]) -> wave [B,1,samples]"),
        Kind("discriminator", "tts_zoo.interfaces:Discriminator", "waveforms → scores + feature maps",
             "discriminator(real [B,1,S], fake [B,1,S]) -> DiscriminatorOutput(real_scores, fake_scores, real_features, fake_features)"),
        Kind("aligner", "tts_zoo.interfaces:Aligner", "mel + text → attention / durations",
             "aligner(mel [B,n_mels,F], mel_padding_mask [B,F/2], tokens [B,T]) -> AlignerOutput(ctc_logits, s2s_logits, attention)"),
        Kind("pitch_extractor", "tts_zoo.interfaces:PitchExtractor", "mel → F0",
             "extractor(mel [B,1,n_mels,F]) -> (f0 [B,F], features, pooled)"),
        Kind("loss", "tts_zoo.interfaces:Loss", "a training objective",
             "loss(...) -> scalar tensor (arguments are the loss's own; see its docstring)"),
        Kind("model", "tts_zoo.interfaces:TTSModel", "a whole TTS model assembled from components",
             "model.synthesize(tokens [1,T], style [1,D] | None, **options) -> wave [S]; model.frontend; model.reference_style(wave)"),
        Kind("stage", "tts_zoo.interfaces:Stage", "a training stage over a built model",
             "a training stage run by the generic loop (see tts_zoo.interfaces.Stage)"),
    ]
}
