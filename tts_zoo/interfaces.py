"""The abstract interfaces: one base class per component kind.

A component implements exactly one kind. The contracts below fix inputs, outputs and shapes so that
any two implementations of a kind can be swapped in a recipe. Shape letters: B batch, T text tokens,
F mel frames (hop 300 at 24 kHz), S audio samples, C channels, H hidden size.

Masks follow the reference StyleTTS 2 convention: a *padding mask* is bool with True = padding.

Units. Audio is 24 kHz; a *mel frame* is a hop of 300 samples (12.5 ms; frame i centred on sample
300·i, the frames of ``tts_zoo.audio.log_mel``) and a text-aligned frame is two mel frames (600
samples). F0 is in Hz per mel frame, 0 where unvoiced. *Energy* is what StyleTTS 2's decoder receives
(``tts_zoo.audio.log_norm`` of the log-mel): per mel frame, the natural log of the L2 norm over the 80
mel bands of (mel power + 1e-5), ln ‖P[:, f] + 1e-5‖₂, with P the mel power spectrogram of the wave
(samples in [-1, 1]) that ``log_mel`` computes; not normalised per utterance.

Gradients. Every ``nn.Module`` kind is trained by back-propagation: its outputs are differentiable
w.r.t. its parameters, and the contracts below name the inputs gradients must also reach (never
``@torch.no_grad()`` inside a component; callers that only infer use ``torch.inference_mode()``).
``tts_zoo.testing`` (the conformance kit) checks shapes, units and gradients of every kind.

This module imports torch; the registry's listing and validation paths never import it (the kinds
table in ``tts_zoo.kinds`` names these classes as strings).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor, nn


class TextFrontend(abc.ABC):
    """Text → normalized text → phonemes → token ids.

    ``symbols`` is the symbol table (id = index). ``__call__`` is the whole chain for one string.
    """

    symbols: list[str]

    @abc.abstractmethod
    def phonemize(self, text: str) -> str:
        """Normalize ``text`` and return its phoneme string (identity for non-phonemizing frontends)."""

    @abc.abstractmethod
    def encode(self, phonemes: str) -> list[int]:
        """Map a phoneme string to token ids; symbols outside the table are dropped (and counted)."""

    def __call__(self, text: str) -> list[int]:
        return self.encode(self.phonemize(text))

    def describe(self) -> dict[str, Any]:
        """Versions and settings that change the output (recorded in manifests and checkpoints)."""
        return {}


class TextEncoder(nn.Module, abc.ABC):
    """Token ids → acoustic text features.

    forward(tokens [B, T] long, lengths [B] long, padding_mask [B, T] bool) → [B, C, T],
    zero where ``padding_mask`` is True.
    """

    @abc.abstractmethod
    def forward(self, tokens: Tensor, lengths: Tensor, padding_mask: Tensor) -> Tensor: ...


class LanguageModel(nn.Module, abc.ABC):
    """Token ids → contextual features (PL-BERT).

    forward(tokens [B, T] long, attention_mask [B, T] int/bool with 1 = keep) → [B, T, H];
    ``hidden_size`` = H.
    """

    hidden_size: int

    @abc.abstractmethod
    def forward(self, tokens: Tensor, attention_mask: Tensor) -> Tensor: ...


class StyleModel(nn.Module, abc.ABC):
    """Produces a style vector. Two flavours share this kind: :class:`StyleEncoder` (from a
    reference mel) and :class:`StyleDiffusion` (from text context and noise)."""

    style_dim: int


class StyleEncoder(StyleModel):
    """Reference mel → style.

    forward(mel [B, 1, n_mels, F]) → [B, style_dim].
    """

    @abc.abstractmethod
    def forward(self, mel: Tensor) -> Tensor: ...


class StyleDiffusion(StyleModel):
    """Text context (+ optional speaker features) + noise → style, by a denoising diffusion model.

    ``denoise(x_noisy [B, 1, D], sigma [B] | float, embedding [B, T, H], features [B, D] | None,
    embedding_scale) → [B, 1, D]`` is the preconditioned denoiser D(x; σ) (Karras et al. 2022);
    ``loss(x [B, 1, D], embedding, features) → scalar`` is the training objective. D is the attribute
    ``channels`` where the class sets it (StyleTTS 2: 2·style_dim, the acoustic and prosodic styles
    side by side), else ``style_dim``.

    Gradients: ``denoise`` is differentiable w.r.t. ``x_noisy``, ``embedding`` and the parameters
    (StyleTTS 2's stage 2 back-propagates the style reconstruction loss through the sampler's
    denoiser calls into this network and the PL-BERT embedding).
    """

    @abc.abstractmethod
    def denoise(
        self,
        x_noisy: Tensor,
        sigma: Tensor | float,
        embedding: Tensor,
        features: Optional[Tensor] = None,
        embedding_scale: float = 1.0,
    ) -> Tensor: ...

    @abc.abstractmethod
    def loss(self, x: Tensor, embedding: Tensor, features: Optional[Tensor] = None) -> Tensor: ...


class NoiseSchedule(abc.ABC):
    """n steps → sigmas, a pure function: ``__call__(num_steps, device=None) → [num_steps + 1]``,
    decreasing, ending in 0."""

    @abc.abstractmethod
    def __call__(self, num_steps: int, device: torch.device | str | None = None) -> Tensor: ...


DenoiseFn = Callable[..., Tensor]
"""``denoise_fn(x, sigma, **extra_args) → x̂`` — the denoised estimate at noise level ``sigma``."""


class Sampler(abc.ABC):
    """One call signature for every sampler (in the manner of k-diffusion's ``sampling.py``).

    ``__call__(denoise_fn, noise [B, ...], sigmas [n + 1], *, extra_args=None, callback=None,
    generator=None) → sample`` with the shape, dtype and device of ``noise``. ``noise`` is
    unit-variance; the sampler scales it by ``sigmas[0]``; ``denoise_fn(x, sigma, **extra_args)``.
    ``callback(dict(i, x, sigma, denoised))`` is called once per step (i from 0); ``generator``
    makes any fresh noise reproducible (None = torch's global generator, left alone when a
    generator is given).

    Gradients: differentiable. The sample carries gradients w.r.t. the denoiser's parameters,
    ``noise`` and the tensors in ``extra_args``: StyleTTS 2's stage 2 back-propagates the style
    reconstruction loss through the sampler into the diffusion network and the text embedding. Do
    not decorate ``__call__`` with ``@torch.no_grad()`` (that loss would silently get no gradient);
    callers that only sample wrap the call in ``torch.no_grad()`` / ``torch.inference_mode()``.
    """

    @abc.abstractmethod
    def __call__(
        self,
        denoise_fn: DenoiseFn,
        noise: Tensor,
        sigmas: Tensor,
        *,
        extra_args: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor: ...


class DurationModel(nn.Module, abc.ABC):
    """Text features + style → durations, then F0 and energy on the aligned frames.

    ``predict_durations(text_features [B, C, T], style [B, S], lengths [B], padding_mask [B, T])
    → (duration_logits [B, T, max_dur], encoded [B, T, C + S])``; the expected duration of a token is
    ``sigmoid(logits).sum(-1)`` in units of 2 mel frames.
    ``predict_f0_energy(aligned [B, C + S, F], style [B, S]) → (F0 [B, 2F], energy [B, 2F])``: per
    mel frame, F0 in Hz and energy as the :class:`Vocoder` receives them (see the module docstring),
    which they are trained to predict.

    Gradients: both methods are differentiable w.r.t. their tensor inputs (``text_features``,
    ``style``, ``aligned``) and the parameters; stage 2 trains through them with the decoder's losses.
    """

    @abc.abstractmethod
    def predict_durations(
        self, text_features: Tensor, style: Tensor, lengths: Tensor, padding_mask: Tensor
    ) -> tuple[Tensor, Tensor]: ...

    @abc.abstractmethod
    def predict_f0_energy(self, aligned: Tensor, style: Tensor) -> tuple[Tensor, Tensor]: ...


class Vocoder(nn.Module, abc.ABC):
    """Aligned text features + F0 + energy + style → waveform.

    forward(aligned [B, C, F], f0 [B, 2F], energy [B, 2F], style [B, S]) → [B, 1, 600·F] at 24 kHz
    (``samples_per_frame`` = 600: one text-aligned frame is two mel frames). ``f0`` and ``energy``
    have one value per mel frame (hop 300, 80 per second): ``f0`` in Hz, 0 where unvoiced (the
    StyleTTS 2 decoders' NSF source treats anything under 10 Hz as unvoiced); ``energy`` is the
    log-energy of the module docstring, ``log_norm(log_mel(wave)[:, None]).squeeze(1)``. In training
    both come from the target audio (F0 from the pitch extractor); at inference from the
    :class:`DurationModel`. ``remove_weight_norm()`` folds weight norm for inference.

    Gradients: differentiable w.r.t. ``aligned``, ``f0``, ``energy``, ``style`` and the parameters
    (stage 2 trains the predicted F0/energy and the text features through the decoder's losses).
    """

    samples_per_frame: int = 600

    @abc.abstractmethod
    def forward(self, aligned: Tensor, f0: Tensor, energy: Tensor, style: Tensor) -> Tensor: ...

    def remove_weight_norm(self) -> None:
        """Fold weight-norm parametrisations into plain weights (a no-op where there are none)."""


class DiscriminatorOutput(NamedTuple):
    """Scores and feature maps for the real and the generated batch (one entry per sub-discriminator)."""

    real_scores: list[Tensor]
    fake_scores: list[Tensor]
    real_features: list[list[Tensor]]
    fake_features: list[list[Tensor]]


class Discriminator(nn.Module, abc.ABC):
    """Waveforms → scores + feature maps.

    forward(real [B, 1, S], fake [B, 1, S]) → :class:`DiscriminatorOutput`: per sub-discriminator,
    scores (batch first; real and fake alike in shape) and a list of feature maps.

    Gradients: the fake scores and feature maps are differentiable w.r.t. ``fake`` (the generator's
    adversarial and feature-matching losses) and, like the real ones, w.r.t. the parameters; the
    real path may run without gradient w.r.t. ``real``.
    """

    @abc.abstractmethod
    def forward(self, real: Tensor, fake: Tensor) -> DiscriminatorOutput: ...


class AlignerOutput(NamedTuple):
    """CTC logits [B, F/2, n_token], attention-decoder logits [B, T + 1, n_token] and attention
    [B, T + 1, F/2] (row 0 is the start-of-sequence step)."""

    ctc_logits: Tensor
    s2s_logits: Tensor
    attention: Tensor


class Aligner(nn.Module, abc.ABC):
    """Mel + text → soft attention (and from it, by monotonic alignment search, durations).

    forward(mel [B, n_mels, F], mel_padding_mask [B, F/2] bool, tokens [B, T]) → :class:`AlignerOutput`.
    """

    @abc.abstractmethod
    def forward(self, mel: Tensor, mel_padding_mask: Tensor, tokens: Tensor) -> AlignerOutput: ...


class PitchExtractor(nn.Module, abc.ABC):
    """Mel (or wave) → F0 in Hz, one value per mel frame (hop 300 at 24 kHz, centred frames).

    Two forms, told apart by the class attribute ``input_kind`` (read as ``getattr(x, "input_kind",
    "mel")``):

    - ``"mel"`` (networks such as JDC; what ``model.pitch_extractor`` must be):
      forward(mel [B, 1, n_mels, F]) → (f0 [B, F], features, pooled) where the last two are
      implementation-specific intermediate maps (None where not available).
    - ``"wave"`` (signal-processing trackers that label training data):
      forward(wave [B, S] float at ``sample_rate``) → (f0 [B, 1 + S // 300], None, None), 0 where
      unvoiced, frame i centred on sample 300·i (the frames of ``tts_zoo.audio.log_mel``); no
      gradient. ``describe() → dict`` gives the settings that change the output (a cache key).
    """

    @abc.abstractmethod
    def forward(self, mel: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]: ...


class Loss(nn.Module, abc.ABC):
    """A training objective. forward(...) → scalar tensor; the arguments are the loss's own."""


class TTSModel(nn.Module, abc.ABC):
    """A whole text-to-speech model assembled from components.

    ``synthesize(tokens [1, T], style [1, D] | None, **options) → waveform [S]``;
    ``frontend`` turns text into ``tokens``. The attributes below tell the generic inference
    pipeline (``tts_zoo.Synthesizer``) how to drive the model; the defaults suit a simple model.
    A model may also offer ``synthesize_chunks(list of tokens, style, **options)`` to encode several
    chunks of a long text together (the Synthesizer uses it when present).
    """

    frontend: TextFrontend
    sample_rate: int = 24000
    token_prefix: tuple[int, ...] = ()  # ids put before every chunk's tokens
    max_tokens: Optional[int] = None  # longest token sequence ``synthesize`` accepts (prefix included)
    style_size: Optional[int] = None  # width D of a style vector (stored voices are checked against it)
    requires_reference: bool = False  # True when ``synthesize`` needs a reference style
    end_trim_samples: int = 0  # samples cut from the end of every chunk's audio

    @abc.abstractmethod
    def synthesize(self, tokens: Tensor, style: Optional[Tensor] = None, **options: Any) -> Tensor: ...

    def reference_style(self, wave: Tensor) -> Tensor:
        """A reference recording [S] at ``sample_rate`` → the style [1, D] that ``synthesize`` takes."""
        raise NotImplementedError(f"{type(self).__name__} does not take reference audio")

    def prepare_for_inference(self) -> "TTSModel":
        """Make the model ready for synthesis (eval mode; a model may also fold weight norm, drop
        training-only parts, ...). Returns the model."""
        return self.eval()

    @classmethod
    def inference_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """The recipe's model block with training-only parts removed (used when loading a
        checkpoint for synthesis). Default: unchanged."""
        return block


class StepContext(abc.ABC):
    """What the training loop hands a :class:`Stage` for one step: where training is, and the
    optimizer operations (the loop implements them with its NaN/Inf guards, gradient clipping,
    gradient averaging across DDP ranks and learning-rate schedules).

    ``epoch`` is the stage's own epoch (0-based), ``global_step`` the step number (0-based, all stages).
    ``backward(loss, terms)`` back-propagates a scalar; a non-finite loss (on any rank) aborts the
    step (the loop skips it and names the non-finite ``terms``). ``step(*groups)`` applies the named
    optimizer groups (see :meth:`Stage.parameter_groups`), clipping first; a non-finite gradient
    aborts the step too. ``zero_grad(*groups)`` clears the named groups' gradients (all without names).
    ``agree(value, op)`` combines a number (or bool, or a tuple of them) over the DDP ranks ("min",
    "max", "sum"): a stage that steps its own optimizers must take the same branches on every rank
    (each backward pass is a collective), so a decision made from a rank's own batch — a clip length,
    skipping a part of the step — is agreed before it is acted on.
    """

    epoch: int
    global_step: int

    def agree(self, value: Any, op: str = "min") -> Any:
        """``value`` combined over the ranks by ``op``; itself in a single process."""
        return value

    @abc.abstractmethod
    def backward(self, loss: Tensor, terms: Optional[dict[str, Any]] = None, retain_graph: bool = False) -> None: ...

    @abc.abstractmethod
    def step(self, *groups: str) -> None: ...

    @abc.abstractmethod
    def zero_grad(self, *groups: str) -> None: ...


class Stage(abc.ABC):
    """One training stage over a built model (StyleTTS 2: stage 1, stage 2, fine-tune).

    The generic loop (``tts_zoo.train``) owns devices, DDP, precision, clipping, NaN guards,
    checkpoints and logging; a stage owns its losses and which modules train when.

    - ``epochs``: the stage's length; ``max_steps`` (optional, a constructor argument so that
      ``train.stages.N.max_steps`` sets it): end the stage after that many of its steps.
    - ``setup(model, recipe, resumed)``: called before the stage's first step, every run (``resumed``
      is True when a checkpoint taken inside this stage was restored: do not re-initialise weights).
    - ``parameter_groups(model, config) → {name: {"params": [...], "lr"?, "betas"?, "weight_decay"?,
      "eps"?, "onecycle_beta1"?, "rollback"?}}``: one optimizer per group (AdamW); missing settings come
      from ``config`` (``tts_zoo.recipe.OptimizerConfig``; ``onecycle_beta1``: the reference's OneCycleLR
      wraps this group; ``rollback``: undo its update when a later part of the step is skipped, see
      ``tts_zoo.train.optim``). Parameters in no group never change.
    - ``train_step(model, batch, ctx) → {name: scalar}``: the losses to log. With
      ``manual_optimization = False`` the loop back-propagates ``result["loss"]`` and steps every
      group; otherwise the stage calls ``ctx.backward`` / ``ctx.step`` itself (GAN stages). An empty
      dict means the batch was not usable (nothing stepped).
    - ``validation_step(model, batch, epoch) → {name: scalar}`` (averaged over the validation set,
      run in eval mode under ``torch.no_grad()``); ``examples(model, batch, epoch) → {name: tensor}``
      on one fixed validation batch: 1-D tensors are audio at ``model.sample_rate``, 2-D ones images.
    - ``datasets(model, recipe) → StageData | None``: the stage's own data (e.g. a text corpus for a
      language-model pretraining stage), called once when the stage starts, after ``setup``. None
      (the default) = the recipe's speech manifests (``data.train`` / ``data.val``). The loop batches
      either by ``dataset.lengths`` per rank (DDP-aware, resumable mid-epoch); a stage's data must be
      the same on every call for the same recipe (resume replays the epoch's order from the seed).
      A stage on the speech manifests may set ``batch_size`` (items per rank; None = ``data.batch_size``).
    """

    epochs: int
    manual_optimization: bool = False
    batch_size: Optional[int] = None
    max_steps: Optional[int] = None

    def setup(self, model: TTSModel, recipe: Any, resumed: bool) -> None:
        """Prepare for training ``model`` (``recipe``: the whole ``tts_zoo.recipe.Recipe``)."""

    @abc.abstractmethod
    def parameter_groups(self, model: TTSModel, config: Any) -> dict[str, dict[str, Any]]: ...

    @abc.abstractmethod
    def train_step(self, model: TTSModel, batch: Any, ctx: StepContext) -> dict[str, Tensor]: ...

    def validation_step(self, model: TTSModel, batch: Any, epoch: int) -> dict[str, Tensor]:
        return {}

    def examples(self, model: TTSModel, batch: Any, epoch: int) -> dict[str, Tensor]:
        return {}

    def datasets(self, model: TTSModel, recipe: Any) -> Optional["StageData"]:
        return None


class StageData(NamedTuple):
    """A stage's own data (:meth:`Stage.datasets`): datasets with an optional ``lengths`` attribute
    (one number per item, for length bucketing), the function that batches their items, and the
    batch size per rank (None = the recipe's ``data.batch_size``)."""

    train_set: Any
    val_set: Any  # None = no validation
    collate_fn: Callable[[list[Any]], Any]
    batch_size: Optional[int] = None


__all__ = [
    "Aligner",
    "AlignerOutput",
    "DenoiseFn",
    "Discriminator",
    "DiscriminatorOutput",
    "DurationModel",
    "LanguageModel",
    "Loss",
    "NoiseSchedule",
    "PitchExtractor",
    "Sampler",
    "Stage",
    "StageData",
    "StepContext",
    "StyleDiffusion",
    "StyleEncoder",
    "StyleModel",
    "TextEncoder",
    "TextFrontend",
    "TTSModel",
    "Vocoder",
]

