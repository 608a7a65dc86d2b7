"""The speech-language-model (SLM) discriminator of StyleTTS 2: a frozen WavLM + a small conv head.

Li et al. 2023 (StyleTTS 2), section 3.2.2: the hidden states of every WavLM layer (Chen et al. 2022)
feed a light convolutional head that scores real vs generated speech frame by frame. Only the head
(``wd`` in the reference's checkpoints: ``pre``, ``convs.{0-2}``, ``conv_post``) is trained and stored;
WavLM is loaded from the Hugging Face hub (or a local directory) and kept frozen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.audio import resample
from tts_zoo.errors import MissingWeightsError
from tts_zoo.interfaces import Discriminator, DiscriminatorOutput
from tts_zoo_styletts2.layers import weight_norm

LRELU_SLOPE = 0.1


def _offline() -> bool:
    import huggingface_hub.constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def load_slm(model: str, random_init_config: Optional[dict[str, Any]] = None, local_files_only: Optional[bool] = None) -> nn.Module:
    """A frozen speech LM in eval mode: random weights from ``random_init_config`` (a
    ``transformers.WavLMConfig``), or pretrained from a local directory / the HF cache.

    Raises MissingWeightsError (a FileNotFoundError; one line) when the weights are not available locally.
    """
    import transformers

    if random_init_config is not None:
        slm = transformers.WavLMModel(transformers.WavLMConfig(**random_init_config))
    elif model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model)):
        path = os.path.expanduser(model)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise MissingWeightsError(f"speech LM directory {model!r} has no config.json (expected a saved transformers model)")
        slm = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    else:
        if local_files_only is None:
            local_files_only = _offline()
        try:
            slm = transformers.AutoModel.from_pretrained(model, local_files_only=local_files_only)
        except OSError:
            raise MissingWeightsError(
                f"speech LM weights {model!r} not found: run `huggingface-cli download {model}` (fills the Hugging Face "
                f"cache, $HF_HOME/hub) or pass a local directory holding its config.json and weights as `model`"
            ) from None
    # Frozen, and always in eval(): in train mode the feature encoder rejects a non-leaf input wave.
    slm.eval()
    slm.requires_grad_(False)
    return slm


class WavLMDiscriminator(Discriminator):
    """SLM discriminator: frozen WavLM hidden states of all layers → conv head → per-frame scores.

    Li et al. 2023 (StyleTTS 2), section 3.2.2. Waves at ``sample_rate`` (24 kHz) are resampled to
    ``slm_sample_rate`` (16 kHz; ``tts_zoo.audio.resample``) and run through WavLM
    (``output_hidden_states``: ``nlayers`` = transformer layers + 1 states [B, frames, hidden], 50
    frames/s). The head input is ``stack(states, 1).transpose(-1, -2).flatten(1, 2)`` → [B,
    nlayers·hidden, frames] (channel = state·hidden + h); the head is a 1×1 conv to ``initial_channel``,
    three k=5 convs (×2, ×2, ×1 widths) with LeakyReLU(0.1) and a k=3 conv to one channel → [B, frames].

    Only the head is a parameter of this module (its state-dict keys = the reference's ``wd.*``); the
    speech LM is kept out of ``parameters()`` / ``state_dict()`` but follows ``.to()``.

    forward(real [B, 1, S], fake [B, 1, S]) → DiscriminatorOutput with one entry: scores [B, frames]
    and, as features, the list of ``nlayers`` hidden states (real ones computed without gradient).

    Args:
        model: Hugging Face hub name or local directory of the speech LM.
        hidden: hidden size of the speech LM.
        nlayers: number of hidden states it returns (transformer layers + 1).
        initial_channel: width of the head's first conv.
        sample_rate: sample rate of the waves given to this module.
        slm_sample_rate: sample rate the speech LM expects.
        random_init_config: build a random-weight WavLM from these ``transformers.WavLMConfig`` fields instead of loading ``model`` (tests).
        local_files_only: never touch the network when loading; None = follow HF_HUB_OFFLINE.
    """

    def __init__(
        self,
        model: str = "microsoft/wavlm-base-plus",
        hidden: int = 768,
        nlayers: int = 13,
        initial_channel: int = 64,
        sample_rate: int = 24000,
        slm_sample_rate: int = 16000,
        random_init_config: Optional[dict[str, Any]] = None,
        local_files_only: Optional[bool] = None,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.slm_sample_rate = slm_sample_rate
        c = initial_channel
        self.pre = weight_norm(nn.Conv1d(hidden * nlayers, c, 1, 1, padding=0))
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv1d(c, c * 2, kernel_size=5, padding=2)),
                weight_norm(nn.Conv1d(c * 2, c * 4, kernel_size=5, padding=2)),
                weight_norm(nn.Conv1d(c * 4, c * 4, 5, 1, padding=2)),
            ]
        )
        self.conv_post = weight_norm(nn.Conv1d(c * 4, 1, 3, 1, padding=1))

        self._slm_source = (model, random_init_config, local_files_only)
        self._expected = (hidden, nlayers)
        self._pending: list = []  # .to()/.double() calls made before the speech LM was loaded
        self._slm: Optional[nn.Module] = None
        if random_init_config is not None:  # cheap: build now so a width mismatch shows at once
            _ = self.slm

    @property
    def slm(self) -> nn.Module:
        """The frozen speech LM, loaded on first use: a model with this discriminator can be built,
        loaded from a checkpoint and used for synthesis without the WavLM weights."""
        if self._slm is None:
            model, random_init_config, local_files_only = self._slm_source
            slm = load_slm(model, random_init_config, local_files_only)
            got = (slm.config.hidden_size, slm.config.num_hidden_layers + 1)
            if got != self._expected:
                raise ValueError(f"speech LM {model!r} gives {got[1]} hidden states of width {got[0]}; "
                                 f"the head expects {self._expected[1]} of {self._expected[0]}")
            for fn in self._pending:
                slm._apply(fn)
            # Bypass nn.Module registration: the frozen LM is not part of this module's parameters or state.
            object.__setattr__(self, "_slm", slm)
        return self._slm

    def _apply(self, fn, recurse=True):  # keep the speech LM on the head's device / dtype
        super()._apply(fn, recurse)
        if self._slm is None:
            self._pending.append(fn)
        else:
            self._slm._apply(fn, recurse)
        return self

    def hidden_states(self, wave: Tensor) -> list[Tensor]:
        """Wave [B, S] or [B, 1, S] at ``sample_rate`` → ``nlayers`` states [B, frames, hidden].

        Differentiable with respect to ``wave`` (WavLM's weights are frozen); wrap the call in
        ``torch.no_grad()`` for targets.
        """
        if wave.dim() == 3:
            wave = wave.squeeze(1)
        wave = resample(wave, self.sample_rate, self.slm_sample_rate)
        return list(self.slm(input_values=wave, output_hidden_states=True).hidden_states)

    @staticmethod
    def head_input(states: Sequence[Tensor]) -> Tensor:
        """States [B, frames, hidden] × n → [B, n·hidden, frames] (channel = state·hidden + h)."""
        return torch.stack(list(states), dim=1).transpose(-1, -2).flatten(1, 2)

    def head(self, x: Tensor) -> Tensor:
        """The reference's ``wd``: head input [B, nlayers·hidden, frames] → scores [B, frames]."""
        x = self.pre(x)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
        return self.conv_post(x).flatten(1)

    def score(self, wave: Tensor) -> Tensor:
        """Wave [B, (1,) S] → per-frame scores [B, frames]; gradients reach the head only."""
        with torch.no_grad():
            x = self.head_input(self.hidden_states(wave))
        return self.head(x)

    def forward(self, real: Tensor, fake: Tensor) -> DiscriminatorOutput:
        with torch.no_grad():
            real_states = self.hidden_states(real)
        fake_states = self.hidden_states(fake)
        return DiscriminatorOutput(
            real_scores=[self.head(self.head_input(real_states))],
            fake_scores=[self.head(self.head_input(fake_states))],
            real_features=[real_states],
            fake_features=[fake_states],
        )
