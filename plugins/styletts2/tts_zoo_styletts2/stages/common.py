"""What StyleTTS 2's two training stages share (the reference's train_first.py / train_second.py).

Shapes: B batch, T tokens, F mel frames, F/2 text-aligned frames (600 samples each), S samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, Optional

import torch
from torch import Tensor, nn

from tts_zoo.audio import length_to_mask, log_norm
from tts_zoo.interfaces import Discriminator, DiscriminatorOutput, StepContext
from tts_zoo_styletts2.aligner.monotonic import MonotonicAlignment, mask_from_lens, maximum_path, monotonic_alignment

SAMPLES_PER_FRAME = 600  # one text-aligned frame = 2 mel frames of hop 300
MIN_CLIP_MEL_FRAMES = 80  # the reference skips a batch whose clips are shorter (the style encoder needs them longer)


def step_limit(max_steps: Optional[int]) -> Optional[int]:
    """A stage's ``max_steps`` argument, checked: a positive number of steps, or None (the loop reads it)."""
    if max_steps is not None and max_steps <= 0:
        raise ValueError(f"max_steps must be a positive number of steps or null, got {max_steps}")
    return max_steps


def require_modules(model: nn.Module, stage: str, names: Sequence[str]) -> None:
    """Fail early and clearly when the recipe left out a training-only module the stage needs."""
    missing = [n for n in names if getattr(model, n, None) is None]
    if missing:
        raise ValueError(f"{stage} needs the model's {', '.join(missing)} (the recipe's model block sets "
                         f"{'it' if len(missing) == 1 else 'them'} to null)")


def module_groups(model: nn.Module, names: Sequence[str], **settings: Any) -> dict[str, dict[str, Any]]:
    """``{name: {"params": model.<name>.parameters(), **settings}}`` for the modules that exist."""
    return {n: {"params": list(getattr(model, n).parameters()), **settings}
            for n in names if getattr(model, n, None) is not None}


def discriminators(model: nn.Module) -> dict[str, Discriminator]:
    """The waveform discriminators of the decoder's GAN (MPD, MSD) that the model has."""
    return {n: getattr(model, n) for n in ("mpd", "msd") if getattr(model, n, None) is not None}


def judge(discs: dict[str, Discriminator], real: Tensor, fake: Tensor,
          for_generator: bool = False) -> list[DiscriminatorOutput]:
    """Every discriminator on (real, generated) speech. ``for_generator``: the discriminators' weights
    are held fixed during the forward pass (they are not stepped by the generator loss), so backward
    computes only the gradient that reaches the generator and the real branch builds no graph at
    all — the same losses and generator gradients as the reference, at about half the backward cost."""
    if not for_generator:
        return [d(real, fake) for d in discs.values()]
    with weights_fixed(*discs.values()):
        return [d(real, fake) for d in discs.values()]


@contextlib.contextmanager
def weights_fixed(*modules: Optional[nn.Module]) -> Iterator[None]:
    """Forward passes inside see the modules' parameters as constants: gradients still flow through
    them to their inputs, but backward computes none for the weights themselves (about half of a
    convolution's backward). For modules the step does not update; restored on exit (the graph
    already built keeps what it recorded)."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


AlignmentSource = Literal["attention", "ctc"]


def align(model: nn.Module, batch: Any, zero_padding: bool,
          source: AlignmentSource = "attention") -> tuple[Any, MonotonicAlignment, Tensor]:
    """Text aligner + monotonic alignment search: → (aligner output, alignment [B, T, F/2], text padding mask [B, T]).

    Stage 1 zeroes the attention outside the lengths (``zero_padding``), stage 2 does not.
    ``source``: the path is MAS over the attention decoder's soft attention (the reference), or over
    the CTC head's log-probabilities of the text's tokens (``ctc``: a forced alignment; a CTC head
    learns to tell phonemes apart from scratch in a few hundred steps, long before the attention
    decoder attends reliably). With ``ctc`` only the aligner's CTC head runs, without gradient (the
    aligner is not trained further), the aligner output is None and ``attention`` is the hard path."""
    texts, text_lengths, mels, mel_lengths = batch.texts, batch.input_lengths, batch.mels, batch.output_lengths
    aligner = model.text_aligner
    down = 2 ** getattr(aligner, "n_down", 1)
    frame_lengths = mel_lengths // down
    text_mask = length_to_mask(text_lengths, texts.shape[1])
    if source == "ctc":
        if not hasattr(aligner, "frame_logits"):
            raise ValueError(f"alignment 'ctc' needs an aligner with a CTC head (frame_logits); "
                             f"{type(aligner).__name__} has none: use alignment 'attention'")
        with torch.no_grad():
            path = ctc_path(aligner.frame_logits(mels), texts, text_lengths, frame_lengths)
        return None, MonotonicAlignment(path, mask_from_lens(path, text_lengths, frame_lengths), path, path.sum(-1)), text_mask
    mask = length_to_mask(frame_lengths, (mels.shape[-1] + down - 1) // down)
    out = aligner(mels, mask, texts)
    return out, monotonic_alignment(out.attention, text_lengths, frame_lengths, zero_padding=zero_padding), text_mask


def ctc_targets(tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """The tokens without the pad/blank id 0 (the dataset frames every text as [0] + ids + [0]):
    → (targets [B, T'] 0-padded, target lengths [B])."""
    kept = [row[:n][row[:n] != 0] for row, n in zip(tokens, lengths.tolist())]
    out = tokens.new_zeros(len(kept), max(1, max(len(k) for k in kept)))
    for b, k in enumerate(kept):
        out[b, : len(k)] = k
    return out, torch.tensor([len(k) for k in kept], device=tokens.device)


def ctc_loss(ctc_logits: Tensor, batch: Any) -> Tensor:
    """CTC loss (blank 0, mean over items of the per-target-token NLL) of the aligner's frame logits
    [B, F/2, n_token] for the batch's texts (the AuxiliaryASR objective)."""
    targets, target_lengths = ctc_targets(batch.texts, batch.input_lengths)
    log_probs = ctc_logits.float().log_softmax(-1).transpose(0, 1)  # [F/2, B, n_token]
    return torch.nn.functional.ctc_loss(log_probs, targets, batch.output_lengths // 2, target_lengths,
                                        blank=0, zero_infinity=True)


def ctc_path(ctc_logits: Tensor, tokens: Tensor, text_lengths: Tensor, frame_lengths: Tensor) -> Tensor:
    """Forced alignment of the tokens by the aligner's CTC head: monotonic alignment search over
    score[b, t, f] = log p_CTC(tokens[b, t] | frame f), every frame given to one token (the framing
    pad 0 is CTC's blank, so leading and trailing silence go to it). → path [B, T, F/2] (0/1, no gradient)."""
    with torch.no_grad():
        log_probs = ctc_logits.float().log_softmax(-1)  # [B, F/2, n_token]
        scores = torch.gather(log_probs.transpose(1, 2), 1, tokens.unsqueeze(-1).expand(-1, -1, log_probs.shape[1]))
        mask = mask_from_lens(scores, text_lengths, frame_lengths)
        return maximum_path(scores * mask, mask)


def clip_lengths(mel_lengths: Tensor, max_frames: Optional[int], ctx: Optional[StepContext] = None) -> tuple[int, int]:
    """(training clip, style-reference clip) lengths in text-aligned frames: the shortest item's
    length less one, the first capped at ``max_frames`` mel frames (the reference's max_len). With the
    step context ``ctx``, the shortest over every DDP rank's batch, as the reference's DataParallel
    takes it over the whole batch: every rank crops the same length and skips the same steps."""
    shortest = int(mel_lengths.min()) // 2 - 1
    lengths = (min(shortest, max_frames // 2) if max_frames else shortest), shortest
    return ctx.agree(lengths, "min") if ctx is not None else lengths


def random_starts(mel_lengths: Tensor, frames: int) -> list[int]:
    """A random start per item (text-aligned frames) so that ``frames`` fit inside it."""
    return [int(torch.randint(0, int(n) // 2 - frames, ()).item()) for n in mel_lengths]


def crop(x: Tensor, starts: Sequence[int], frames: int, scale: int = 1) -> Tensor:
    """x [B, C, scale·F'] → [B, C, scale·frames] from ``scale·start`` of each item."""
    return torch.stack([x[b, :, s * scale : (s + frames) * scale] for b, s in enumerate(starts)])


def crop_waves(waves: Sequence[Tensor], starts: Sequence[int], frames: int) -> Tensor:
    """The matching waveform pieces: [B, 1, 600·frames]."""
    n = frames * SAMPLES_PER_FRAME
    pieces = [w[s * SAMPLES_PER_FRAME : s * SAMPLES_PER_FRAME + n] for w, s in zip(waves, starts)]
    return torch.stack(pieces).float().unsqueeze(1)


class Clips(NamedTuple):
    """Random training clips of a batch (the reference's ``en, gt, wav, st`` lists, stacked)."""

    starts: list[int]
    frames: int
    gt: Tensor  # [B, n_mels, 2·frames] mel clips
    wav: Tensor  # [B, 1, 600·frames] matching waves
    st: Tensor  # [B, n_mels, 2·frames_st] style-reference clips (elsewhere in the same utterance)


def training_clips(batch: Any, max_frames: Optional[int], ctx: Optional[StepContext] = None) -> Optional[Clips]:
    """Draw the clips of one step; None when they would be shorter than 80 mel frames (lengths
    agreed over the DDP ranks when the step context ``ctx`` is given, see :func:`clip_lengths`)."""
    frames, frames_st = clip_lengths(batch.output_lengths, max_frames, ctx)
    if 2 * frames < MIN_CLIP_MEL_FRAMES:
        return None
    starts = random_starts(batch.output_lengths, frames)
    st_starts = random_starts(batch.output_lengths, frames_st)
    return Clips(starts, frames, crop(batch.mels, starts, frames, 2), crop_waves(batch.waves, starts, frames),
                 crop(batch.mels, st_starts, frames_st, 2))


@torch.no_grad()
def prosody_targets(model: nn.Module, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Mel clips [B, n_mels, 2F'] → (F0 [B, 2F'] from the pitch extractor, energy [B, 2F'] = log ||mel||).

    No gradient (the decorator): the pitch extractor is frozen in every stage that asks for targets,
    and nothing trained lies behind them, so every update is the same without JDC's backward."""
    f0 = model.pitch_extractor(gt.unsqueeze(1))[0]
    return f0, log_norm(gt.unsqueeze(1)).squeeze(1)


def slm_feature_loss(model: nn.Module, loss: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WavLM feature matching between real [B, 1, S] and generated [B, 1, S] speech (reference ``WavLMLoss``)."""
    disc = model.slm_discriminator
    with torch.no_grad():
        target = disc.hidden_states(real.squeeze(1))
    return loss(target, disc.hidden_states(fake.squeeze(1)))


def full_length_example(model: nn.Module, batch: Any, asr: Tensor) -> dict[str, Tensor]:
    """Reconstruction of the first item at its full length with its own style and F0 (the
    reference's end-of-epoch audio): audio + its ground truth + the input mel."""
    n = int(batch.output_lengths[0])
    gt = batch.mels[:1, :, :n]
    f0, energy = prosody_targets(model, gt)
    style = model.style_encoder(gt.unsqueeze(1))
    wave = model.decoder(asr[:1, :, : n // 2], f0, energy, style)
    return {"audio/reconstruction": wave.flatten(), "audio/ground_truth": batch.waves[0].flatten(), "image/mel": gt[0]}


def weighted(terms: dict[str, Any], weights: dict[str, float]) -> Tensor:
    """Σ weight · term over the terms present (missing terms count as 0)."""
    total = 0.0
    for name, weight in weights.items():
        if name in terms:
            total = total + weight * terms[name]
    return total


def detached(terms: dict[str, Any]) -> dict[str, Tensor]:
    return {k: v.detach() if isinstance(v, Tensor) else torch.tensor(float(v)) for k, v in terms.items()}
