"""The StyleTTS 2 text aligner: ASR-CNN with a CTC head and a location-sensitive attention decoder.

This is the reference's pre-trained "AuxiliaryASR" model (yl4579/StyleTTS2, ``Utils/ASR``): an MFCC
front end (a fixed DCT of the log-mel), a 1-D CNN that halves the frame rate, a CTC head, and a
Tacotron 2-style attention decoder (Shen et al. 2018; location-sensitive attention, Chorowski et al.
2015) whose attention over the halved frames gives the text-to-speech alignment (Li et al. 2023,
sections 3.1 and 3.2.2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from tts_zoo.checkpoint import is_checkpoint, load_state_strict, read_submodule_state
from tts_zoo.errors import CheckpointError, MissingWeightsError
from tts_zoo.interfaces import Aligner, AlignerOutput

_DOWNLOAD_HINT = "download the official Utils/ASR folder (config.yml, epoch_00080.pth) of yl4579/StyleTTS2"


def _dct_matrix(n_mfcc: int, n_mels: int) -> Tensor:
    """Orthonormal DCT-II as an [n_mels, n_mfcc] matrix (torchaudio's ``create_dct(.., 'ortho')``,
    computed in float32 in the same order). A checkpoint's stored buffer replaces it on load."""
    n = torch.arange(float(n_mels))
    k = torch.arange(float(n_mfcc)).unsqueeze(1)
    dct = torch.cos(math.pi / float(n_mels) * (n + 0.5) * k)  # [n_mfcc, n_mels]
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / float(n_mels))
    return dct.t()


class MFCC(nn.Module):
    """Log-mel → MFCC by a fixed DCT matrix (buffer ``dct_mat``): [B, n_mels, F] → [B, n_mfcc, F]."""

    def __init__(self, n_mfcc: int = 40, n_mels: int = 80):
        super().__init__()
        self.register_buffer("dct_mat", _dct_matrix(n_mfcc, n_mels))

    def forward(self, mel: Tensor) -> Tensor:
        return torch.matmul(mel.transpose(1, 2), self.dct_mat).transpose(1, 2)


class LinearNorm(nn.Module):
    """Linear layer with Xavier-uniform init (wrapped so the keys read ``*.linear_layer.*``)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, w_init_gain: str = "linear"):
        super().__init__()
        self.linear_layer = nn.Linear(in_dim, out_dim, bias=bias)
        nn.init.xavier_uniform_(self.linear_layer.weight, gain=nn.init.calculate_gain(w_init_gain))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_layer(x)


class ConvNorm(nn.Module):
    """Conv1d with 'same' padding by default and Xavier-uniform init (keys ``*.conv.*``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: Optional[int] = None,
        dilation: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ConvBlock(nn.Module):
    """Three residual units, each conv(dilation 3**i) → ReLU → GroupNorm(8) → dropout → conv → ReLU
    → dropout, added to its input. [B, C, F] → [B, C, F]."""

    def __init__(self, hidden_dim: int, n_conv: int = 3, dropout_p: float = 0.2):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                ConvNorm(hidden_dim, hidden_dim, kernel_size=3, padding=3**i, dilation=3**i),
                nn.ReLU(),
                nn.GroupNorm(num_groups=8, num_channels=hidden_dim),
                nn.Dropout(dropout_p),
                ConvNorm(hidden_dim, hidden_dim, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Dropout(dropout_p),
            )
            for i in range(n_conv)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x) + x
        return x


class LocationLayer(nn.Module):
    """Convolves [previous, cumulative] attention weights [B, 2, L] → location features [B, L, attention_dim]."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int):
        super().__init__()
        self.location_conv = ConvNorm(2, n_filters, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.location_dense = LinearNorm(n_filters, attention_dim, bias=False, w_init_gain="tanh")

    def forward(self, weights_cat: Tensor) -> Tensor:
        return self.location_dense(self.location_conv(weights_cat).transpose(1, 2))


class Attention(nn.Module):
    """Location-sensitive additive attention (Chorowski et al. 2015).

    energies = v · tanh(W q + U f(prev, cum) + V memory); padded frames get -inf before the softmax.
    """

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int, n_filters: int, kernel_size: int):
        super().__init__()
        self.query_layer = LinearNorm(query_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.memory_layer = LinearNorm(memory_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.v = LinearNorm(attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(n_filters, kernel_size, attention_dim)

    def forward(
        self, query: Tensor, memory: Tensor, processed_memory: Tensor, weights_cat: Tensor, mask: Optional[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """query [B, Q], memory [B, L, H], processed_memory [B, L, A], weights_cat [B, 2, L],
        mask [B, L] (True = padding) → (context [B, H], weights [B, L])."""
        energies = self.v(
            torch.tanh(self.query_layer(query.unsqueeze(1)) + self.location_layer(weights_cat) + processed_memory)
        ).squeeze(-1)
        if mask is not None:
            energies = energies.masked_fill(mask, float("-inf"))
        weights = F.softmax(energies, dim=1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


class ASRS2S(nn.Module):
    """Attention decoder over the CNN features, teacher-forced on the text (with SOS prepended).

    Each step: LSTMCell([token embedding, previous context]) → attention → tanh projection of
    [hidden, context] → token logits. Tokens are replaced by ``unk_index`` with probability
    ``token_mask_prob`` — drawn from torch's global CPU generator on every call, also in eval, as
    the reference does.
    """

    sos_index = 1
    unk_index = 3

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int,
        n_token: int,
        n_location_filters: int = 32,
        location_kernel_size: int = 63,
        token_mask_prob: float = 0.1,
    ):
        super().__init__()
        self.token_mask_prob = token_mask_prob
        self.embedding = nn.Embedding(n_token, embedding_dim)
        bound = math.sqrt(6 / hidden_dim)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.decoder_rnn_dim = hidden_dim
        self.project_to_n_symbols = nn.Linear(hidden_dim, n_token)
        self.attention_layer = Attention(hidden_dim, hidden_dim, hidden_dim, n_location_filters, location_kernel_size)
        self.decoder_rnn = nn.LSTMCell(hidden_dim + embedding_dim, hidden_dim)
        self.project_to_hidden = nn.Sequential(LinearNorm(hidden_dim * 2, hidden_dim), nn.Tanh())

    def forward(self, memory: Tensor, memory_mask: Optional[Tensor], tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """memory [B, L, H], memory_mask [B, L] (True = padding), tokens [B, T] →
        (hidden [B, T+1, H], logits [B, T+1, n_token], attention [B, T+1, L])."""
        B, L, H = memory.shape
        # Drawn on the CPU generator (the reference calls torch.rand without a device).
        unk = (torch.rand(tokens.shape) < self.token_mask_prob).to(tokens.device)
        inputs = self.embedding(tokens.masked_fill(unk, self.unk_index)).transpose(0, 1)  # [T, B, E]
        sos = self.embedding(torch.full((B,), self.sos_index, dtype=torch.long, device=tokens.device))
        inputs = torch.cat([sos.unsqueeze(0), inputs], dim=0)  # [T+1, B, E]

        h = memory.new_zeros(B, self.decoder_rnn_dim)
        c = memory.new_zeros(B, self.decoder_rnn_dim)
        weights = memory.new_zeros(B, L)
        weights_cum = memory.new_zeros(B, L)
        context = memory.new_zeros(B, H)
        processed_memory = self.attention_layer.memory_layer(memory)

        hiddens, logits, alignments = [], [], []
        for step_input in inputs:
            h, c = self.decoder_rnn(torch.cat([step_input, context], -1), (h, c))
            weights_cat = torch.cat([weights.unsqueeze(1), weights_cum.unsqueeze(1)], dim=1)
            context, weights = self.attention_layer(h, memory, processed_memory, weights_cat, memory_mask)
            weights_cum = weights_cum + weights
            hidden = self.project_to_hidden(torch.cat([h, context], -1))
            logits.append(self.project_to_n_symbols(F.dropout(hidden, 0.5, self.training)))
            hiddens.append(hidden)
            alignments.append(weights)
        return torch.stack(hiddens, 1), torch.stack(logits, 1), torch.stack(alignments, 1)


class ASRCNN(Aligner):
    """StyleTTS 2 text aligner (ASR-CNN + CTC head + location-sensitive attention decoder).

    The reference's pre-trained aligner (yl4579/StyleTTS2 ``Utils/ASR``; Li et al. 2023, 3.2.2):
    MFCC (40 of 80, fixed DCT) → Conv1d(k 7, stride 2) → ``n_layers`` × (ConvBlock + GroupNorm(1))
    → 1×1 projection to hidden_dim/2. The CTC head maps these features to token logits; the attention
    decoder, teacher-forced on the tokens, yields the soft alignment that monotonic alignment search
    turns into durations.

    forward(mel [B, n_mels, F], mel_padding_mask [B, F/2] bool, tokens [B, T]) → AlignerOutput(
    ctc_logits [B, F/2, n_token], s2s_logits [B, T+1, n_token], attention [B, T+1, F/2]).
    get_feature(mel [B, (1,) n_mels, F]) → [B, hidden_dim/2, F/2].
    Frames F/2 = ceil(F/2) (``n_down`` = 1).

    Args:
        input_dim: Mel bands of the input (80).
        hidden_dim: CNN width; the attention decoder runs at hidden_dim // 2.
        n_token: Size of the token table.
        token_embedding_dim: Width of the decoder's token embedding.
        n_layers: Number of ConvBlock layers.
        n_mfcc: MFCC coefficients kept (the first input_dim // 2 of the DCT).
        location_n_filters: Filters of the attention's location convolution.
        location_kernel_size: Kernel size of the attention's location convolution.
        token_mask_prob: Probability that a text token is replaced by the unk id 3 (drawn on every call).
        weights: Pretrained weights to load: the reference's ``Utils/ASR/epoch_00080.pth``, or a tts-zoo checkpoint directory whose model has a text aligner of this shape (e.g. a ``styletts2_align_pretrain`` run's ``checkpoints/latest``: pretrain once, reuse with other model widths); None = random init.
    """

    n_down = 1  # the stride-2 input conv halves the frame rate once

    def __init__(
        self,
        input_dim: int = 80,
        hidden_dim: int = 256,
        n_token: int = 178,
        token_embedding_dim: int = 512,
        n_layers: int = 6,
        n_mfcc: int = 40,
        location_n_filters: int = 32,
        location_kernel_size: int = 63,
        token_mask_prob: float = 0.1,
        weights: Optional[str] = None,
    ):
        super().__init__()
        self.n_token = n_token
        self.to_mfcc = MFCC(n_mfcc, input_dim)
        self.init_cnn = ConvNorm(n_mfcc, hidden_dim, kernel_size=7, padding=3, stride=2)
        self.cnns = nn.Sequential(
            *[nn.Sequential(ConvBlock(hidden_dim), nn.GroupNorm(1, hidden_dim)) for _ in range(n_layers)]
        )
        self.projection = ConvNorm(hidden_dim, hidden_dim // 2)
        self.ctc_linear = nn.Sequential(
            LinearNorm(hidden_dim // 2, hidden_dim), nn.ReLU(), LinearNorm(hidden_dim, n_token)
        )
        self.asr_s2s = ASRS2S(
            token_embedding_dim, hidden_dim // 2, n_token, location_n_filters, location_kernel_size, token_mask_prob
        )
        if weights is not None:
            self.load_official_weights(weights)

    def get_feature(self, mel: Tensor) -> Tensor:
        """mel [B, n_mels, F] or [B, 1, n_mels, F] → CNN features [B, hidden_dim/2, F/2]."""
        if mel.dim() == 4:
            mel = mel.squeeze(1)
        return self.projection(self.cnns(self.init_cnn(self.to_mfcc(mel))))

    def frame_logits(self, mel: Tensor) -> Tensor:
        """The CTC head alone (no attention decoder): mel [B, n_mels, F] → token logits [B, F/2, n_token]."""
        return self.ctc_linear(self.get_feature(mel).transpose(1, 2))

    def forward(self, mel: Tensor, mel_padding_mask: Optional[Tensor], tokens: Tensor) -> AlignerOutput:
        features = self.get_feature(mel).transpose(1, 2)  # [B, F/2, H/2]
        ctc_logits = self.ctc_linear(features)
        _, s2s_logits, attention = self.asr_s2s(features, mel_padding_mask, tokens)
        return AlignerOutput(ctc_logits, s2s_logits, attention)

    def load_official_weights(self, checkpoint_path: str | Path) -> None:
        """Load the reference's ``epoch_00080.pth`` (``{'model': state_dict}``), or the ``text_aligner``
        of a tts-zoo checkpoint directory, strictly."""
        checkpoint_path = Path(checkpoint_path)
        if checkpoint_path.is_dir() and is_checkpoint(checkpoint_path):
            load_state_strict(self, read_submodule_state(checkpoint_path, "text_aligner"), checkpoint_path)
            return
        if not checkpoint_path.is_file():
            raise MissingWeightsError(f"text aligner file not found: {checkpoint_path} — {_DOWNLOAD_HINT} and put it at {checkpoint_path.parent}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "model" not in state:
            raise CheckpointError(f"{checkpoint_path}: expected a dict with key 'model' (the AuxiliaryASR format)")
        load_state_strict(self, state["model"], checkpoint_path)

    @classmethod
    def from_official(cls, config_yml_path: str | Path, checkpoint_path: str | Path, **overrides: Any) -> "ASRCNN":
        """Build from the reference's ``Utils/ASR/config.yml`` (its ``model_params``) and load
        ``epoch_00080.pth`` (``{'model': state_dict}``) strictly. Returned in eval mode."""
        config_yml_path, checkpoint_path = Path(config_yml_path), Path(checkpoint_path)
        for p in (config_yml_path, checkpoint_path):
            if not p.is_file():
                raise MissingWeightsError(f"text aligner file not found: {p} — {_DOWNLOAD_HINT} and put it at {p.parent}")
        params = dict(yaml.safe_load(config_yml_path.read_text())["model_params"], **overrides)
        try:
            model = cls(**params)
        except TypeError as e:
            raise CheckpointError(f"{config_yml_path}: model_params do not fit ASRCNN ({e})") from None
        model.load_official_weights(checkpoint_path)
        return model.eval()
