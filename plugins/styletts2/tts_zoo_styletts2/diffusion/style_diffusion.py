"""StyleTTS 2 style diffusion (Li et al. 2023, section 3.2.1): an EDM denoiser of the style vector.

The reference wires ``AudioDiffusionConditional`` + ``KDiffusion`` (audio-diffusion-pytorch, Karras
et al. 2022) around a :mod:`transformer <tts_zoo_styletts2.diffusion.transformer>` denoiser network;
this module is that whole component: preconditioning, classifier-free guidance, the EDM loss and
sampling, with the network at ``net``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_zoo import interfaces
from tts_zoo_styletts2.diffusion.samplers import ADPM2Sampler, randn_like
from tts_zoo_styletts2.diffusion.schedules import KarrasSchedule
from tts_zoo_styletts2.diffusion.transformer import StyleTransformer1d, Transformer1d

_OWN_BUFFERS = ("sigma_data", "sigma_data_updates")


def rand_bool(shape: tuple[int, ...], proba: float, device: torch.device,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """Bernoulli(proba) booleans; no random draw at all for proba 0 or 1 (the reference's ``rand_bool``)."""
    if proba >= 1:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if proba <= 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return torch.bernoulli(torch.full(shape, proba, device=device), generator=generator).bool()


class StyleDiffusion(interfaces.StyleDiffusion):
    """Style diffusion: PL-BERT context (+ reference style) + noise → style vector by EDM sampling.

    Li et al. 2023, StyleTTS 2, section 3.2.1; Karras et al. 2022 (EDM) preconditioning:
    D(x; σ) = c_skip x + c_out F(c_in x, ln(σ)/4, embedding, features) with
    c_skip = σ_d² / (σ² + σ_d²), c_out = σ σ_d / sqrt(σ² + σ_d²), c_in = 1 / sqrt(σ² + σ_d²).
    F is a :class:`Transformer1d` (single speaker) or :class:`StyleTransformer1d` (multispeaker: AdaLayerNorm
    on the speaker features, the reference style [B, 2·style_dim]). Classifier-free guidance replaces
    the text by the learned unconditional table ``net.fixed_embedding`` (``embedding_max_length`` rows).

    Shapes: x [B, 1, 2·style_dim] ([acoustic | prosodic] style), embedding [B, L, embedding_features]
    (PL-BERT output), features [B, 2·style_dim] or None. ``style_dim`` is the recipe's style_dim;
    ``channels`` = 2·style_dim is the width of the sampled vector.

    ``sigma_data`` is a buffer (saved in checkpoints). With ``estimate_sigma_data`` the training stage
    runs each step inside :meth:`batch_sigma_data` of the batch's target styles: that batch's std is
    σ_d for everything the step computes (EDM loss, training-time sampling), in train and eval mode
    alike, as the reference's train_second.py sets it before every step; when the step completes, the
    buffer takes it into its running mean of the batch estimates (the value the reference writes to
    its config), which is what sampling outside a step and a reloaded model use. A skipped step
    (an exception inside the block, e.g. a non-finite loss) leaves the buffer as it was.

    Args:
        style_dim: Style width of one encoder (the sampled vector has 2 × style_dim).
        embedding_features: Width of the text context (the PL-BERT hidden size).
        multispeaker: Condition on the reference style (StyleTransformer1d) or not (Transformer1d).
        num_layers: Transformer blocks of the denoiser network.
        num_heads: Attention heads of the denoiser network.
        head_features: Width of each attention head.
        multiplier: Feed-forward expansion factor.
        embedding_max_length: Rows of the unconditional embedding (512 in every reference model).
        embedding_mask_proba: Training probability of replacing an item's text by the unconditional embedding.
        sigma_data: Data standard deviation σ_d of the preconditioning (until estimated).
        estimate_sigma_data: Estimate σ_d from the training batches (see update_sigma_data).
        sigma_mean: Mean of ln σ of the training noise levels (log-normal).
        sigma_std: Standard deviation of ln σ of the training noise levels.
    """

    def __init__(
        self,
        style_dim: int = 128,
        embedding_features: int = 768,
        multispeaker: bool = False,
        num_layers: int = 3,
        num_heads: int = 8,
        head_features: int = 64,
        multiplier: int = 2,
        embedding_max_length: int = 512,
        embedding_mask_proba: float = 0.1,
        sigma_data: float = 0.2,
        estimate_sigma_data: bool = True,
        sigma_mean: float = -3.0,
        sigma_std: float = 1.0,
    ):
        super().__init__()
        self.style_dim = style_dim
        self.channels = 2 * style_dim
        self.multispeaker = multispeaker
        self.embedding_mask_proba = embedding_mask_proba
        self.estimate_sigma_data = estimate_sigma_data
        self.sigma_mean = sigma_mean
        self.sigma_std = sigma_std
        network = StyleTransformer1d if multispeaker else Transformer1d
        self.net = network(
            num_layers=num_layers,
            channels=self.channels,
            num_heads=num_heads,
            head_features=head_features,
            multiplier=multiplier,
            context_embedding_features=embedding_features,
            context_features=self.channels if multispeaker else None,
            embedding_max_length=embedding_max_length,
        )
        # float64 so the python-float arithmetic of the reference (sigma_data = 0.2) is reproduced.
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data), dtype=torch.float64))
        self.register_buffer("sigma_data_updates", torch.tensor(0, dtype=torch.long))
        self._batch_sigma_data: Optional[float] = None

    # -- sigma_data ---------------------------------------------------------------------------

    @property
    def current_sigma_data(self) -> float:
        """σ_d in use: the batch estimate inside :meth:`batch_sigma_data`, else the buffer (so a model
        in memory samples exactly as the same model saved and reloaded)."""
        if self._batch_sigma_data is not None:
            return self._batch_sigma_data
        return float(self.sigma_data)

    @contextlib.contextmanager
    def batch_sigma_data(self, x: Tensor) -> Iterator[float]:
        """Use the σ_d of a batch of target styles x [B, ..., 2·style_dim] inside the block: mean over
        items of the std over the style axis (the reference's ``s_trg.std(axis=-1).mean()``), no
        gradient. When the block completes, the ``sigma_data`` buffer takes it into its running mean
        (the first estimate replaces the configured placeholder); an exception leaves the buffer as it
        was. Without ``estimate_sigma_data`` the configured σ_d stays in use. Yields the σ_d in use."""
        if not self.estimate_sigma_data:
            yield self.current_sigma_data
            return
        batch = float(x.detach().std(dim=-1).mean())
        self._batch_sigma_data = batch
        try:
            yield batch
        finally:
            self._batch_sigma_data = None
        with torch.no_grad():  # reached only when the block raised nothing
            self.sigma_data_updates += 1
            self.sigma_data += (batch - self.sigma_data) / self.sigma_data_updates

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Reference checkpoints keep sigma_data in their config, not in the state dict: a missing
        # entry keeps the configured value (every network weight is still loaded strictly).
        for name in _OWN_BUFFERS:
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        self._batch_sigma_data = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- denoiser -----------------------------------------------------------------------------

    def scalings(self, sigmas: Tensor, ndim: int = 3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """EDM preconditioning for sigmas [B]: (c_skip, c_out, c_in) shaped [B, 1, …] (``ndim`` dims)
        and c_noise = ln(σ)/4 [B], with the reference's op order."""
        sd = self.current_sigma_data
        c_noise = torch.log(sigmas) * 0.25
        sigmas = sigmas.view(-1, *([1] * (ndim - 1)))
        c_skip = (sd**2) / (sigmas**2 + sd**2)
        c_out = sigmas * sd * (sd**2 + sigmas**2) ** -0.5
        c_in = (sigmas**2 + sd**2) ** -0.5
        return c_skip, c_out, c_in, c_noise

    def denoise(
        self,
        x_noisy: Tensor,
        sigma: Tensor | float,
        embedding: Tensor,
        features: Optional[Tensor] = None,
        embedding_scale: float = 1.0,
        embedding_mask_proba: float = 0.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """The preconditioned denoiser D(x; σ): x_noisy [B, 1, C], sigma [B] or scalar → [B, 1, C].

        ``embedding_mask_proba`` > 0 first draws which items get the unconditional embedding (one
        Bernoulli draw of [B, 1, 1], as the reference does before each network call in training).
        ``embedding_scale`` ≠ 1 applies classifier-free guidance, masked + (cond - masked) · scale,
        with the conditional and unconditional passes batched into one network call.
        """
        if self.multispeaker and features is None:
            raise ValueError("a multispeaker StyleDiffusion needs features (the reference style)")
        batch = x_noisy.shape[0]
        sigmas = torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device)
        if sigmas.ndim == 0:
            sigmas = sigmas.expand(batch)
        c_skip, c_out, c_in, c_noise = self.scalings(sigmas, x_noisy.ndim)
        unconditional = self.net.fixed_embedding(embedding)
        if embedding_mask_proba > 0.0:
            mask = rand_bool((batch, 1, 1), embedding_mask_proba, embedding.device, generator)
            embedding = torch.where(mask, unconditional, embedding)
        x_in = c_in * x_noisy
        if embedding_scale != 1.0:
            twice = (lambda t: None if t is None else torch.cat([t, t]))  # noqa: E731
            out = self.net(twice(x_in), twice(c_noise), torch.cat([embedding, unconditional]), twice(features))
            cond, masked = out.chunk(2)
            x_pred = masked + (cond - masked) * embedding_scale
        else:
            x_pred = self.net(x_in, c_noise, embedding, features)
        return c_skip * x_noisy + c_out * x_pred

    # -- training -----------------------------------------------------------------------------

    def loss_terms(
        self,
        x: Tensor,
        embedding: Tensor,
        features: Optional[Tensor] = None,
        embedding_mask_proba: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, Tensor]:
        """The EDM loss and its intermediates (see :meth:`loss`): ``loss``, ``sigmas`` [B], ``noise``,
        ``x_noisy``, ``x_denoised`` (shaped like x) and ``per_item_weighted_mse`` [B]."""
        proba = self.embedding_mask_proba if embedding_mask_proba is None else embedding_mask_proba
        batch = x.shape[0]
        # Draw order of the reference: ln σ ~ N(mean, std) [B], the noise, then (in denoise) the mask.
        sigmas = (self.sigma_mean + self.sigma_std * torch.randn((batch,), device=x.device, generator=generator)).exp()
        noise = randn_like(x, generator)
        x_noisy = x + sigmas.view(-1, *([1] * (x.ndim - 1))) * noise
        x_denoised = self.denoise(x_noisy, sigmas, embedding, features,
                                  embedding_mask_proba=proba, generator=generator)
        sd = self.current_sigma_data
        weight = (sigmas**2 + sd**2) * (sigmas * sd) ** -2
        per_item = F.mse_loss(x_denoised, x, reduction="none").flatten(1).mean(1) * weight
        return {
            "loss": per_item.mean(),
            "sigmas": sigmas,
            "noise": noise,
            "x_noisy": x_noisy,
            "x_denoised": x_denoised,
            "per_item_weighted_mse": per_item,
        }

    def loss(
        self,
        x: Tensor,
        embedding: Tensor,
        features: Optional[Tensor] = None,
        embedding_mask_proba: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """EDM training loss (Karras et al. 2022, eq. 2 with λ(σ) = 1/c_out²): x [B, 1, C] → scalar.

        σ = exp(sigma_mean + sigma_std · n), n ~ N(0, 1) per item; x_noisy = x + σ ε;
        loss = mean over items of mean((D(x_noisy; σ) - x)²) · (σ² + σ_d²) / (σ σ_d)².
        ``embedding_mask_proba`` overrides the configured masking: the reference's multispeaker
        stage 2 masks (0.1, one Bernoulli draw after the noise), its single-speaker stage 2 does not
        (pass 0.0: no draw).
        """
        return self.loss_terms(x, embedding, features, embedding_mask_proba, generator)["loss"]

    def forward(self, x: Tensor, embedding: Tensor, features: Optional[Tensor] = None, **kwargs: Any) -> Tensor:
        """The training loss (so that DDP-wrapped calls go through ``forward``); see :meth:`loss`."""
        return self.loss(x, embedding, features, **kwargs)

    # -- sampling -----------------------------------------------------------------------------

    def sample(
        self,
        noise: Tensor,
        embedding: Tensor,
        features: Optional[Tensor] = None,
        sampler: Optional[interfaces.Sampler] = None,
        schedule: Optional[interfaces.NoiseSchedule] = None,
        num_steps: int = 5,
        embedding_scale: float = 1.0,
        embedding_mask_proba: float = 0.0,
        generator: Optional[torch.Generator] = None,
        callback: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> Tensor:
        """Sample styles: noise [B, 1, C] (unit variance) → [B, 1, C], no clamping.

        Defaults are StyleTTS 2's: ADPM2 on a Karras schedule (σ 1e-4…3, ρ 9), 5 steps. The
        reference's training sampler passes ``embedding_mask_proba=0.1``; inference uses 0 and
        ``embedding_scale`` ≥ 1 for guidance. Gradients flow (stage 2 trains through the sampler).
        """
        sampler = sampler if sampler is not None else ADPM2Sampler()
        schedule = schedule if schedule is not None else KarrasSchedule()
        sigmas = schedule(num_steps, device=noise.device)
        extra_args = {
            "embedding": embedding,
            "features": features,
            "embedding_scale": embedding_scale,
            "embedding_mask_proba": embedding_mask_proba,
            "generator": generator,
        }
        return sampler(self.denoise, noise, sigmas, extra_args=extra_args, callback=callback, generator=generator)

    def extra_repr(self) -> str:
        return (f"style_dim={self.style_dim}, multispeaker={self.multispeaker}, "
                f"sigma_data={self.current_sigma_data:g}, estimate_sigma_data={self.estimate_sigma_data}")


def convert_reference_state_dict(state: Mapping[str, Tensor], sigma_data: Optional[float] = None) -> dict[str, Tensor]:
    """A reference ``diffusion`` state dict → keys of :class:`StyleDiffusion` (load it strictly).

    The reference stores the transformer twice, as ``diffusion.net.*`` and ``unet.*`` (build_model
    points both attributes at one module); either or both are accepted (a leading DataParallel
    ``module.`` too) and must agree. Keys already in this module's form (``net.*``, the sigma_data
    buffers) pass through. ``sigma_data`` (e.g. from the config saved with a reference checkpoint)
    sets the buffer; otherwise a loaded model keeps its configured value.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        for prefix in ("diffusion.net.", "unet.", "net."):
            if name.startswith(prefix):
                name = "net." + name[len(prefix):]
                break
        else:
            if name not in _OWN_BUFFERS:
                raise KeyError(f"unexpected key in a style diffusion state dict: {key!r}")
        if name in out:
            if out[name].shape != value.shape or not torch.equal(out[name], value):
                raise ValueError(f"the duplicated reference entries for {name!r} differ")
            continue
        out[name] = value
    if sigma_data is not None:
        out["sigma_data"] = torch.tensor(float(sigma_data), dtype=torch.float64)
    return out
