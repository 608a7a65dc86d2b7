"""JDC-Net pitch extractor (Kum & Nam 2019, "Joint Detection and Classification of Singing Voice
Melody Using Convolutional Recurrent Neural Networks"), as StyleTTS 2 uses it (yl4579/StyleTTS2
``Utils/JDC``): a CNN over the log-mel, a BiLSTM per frame, a linear F0 regressor (num_class = 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from tts_zoo.checkpoint import is_checkpoint, load_state_strict, read_submodule_state
from tts_zoo.errors import CheckpointError, MissingWeightsError
from tts_zoo.interfaces import PitchExtractor

_DOWNLOAD_HINT = "download the official Utils/JDC/bst.t7 of yl4579/StyleTTS2"


class ResBlock(nn.Module):
    """Pre-activation residual block that halves the frequency axis (Kum & Nam 2019, Fig. 1b):
    BN → LeakyReLU → MaxPool(1, 2), then conv-BN-LeakyReLU-conv plus a 1×1 conv shortcut.
    [B, C_in, F, M] → [B, C_out, F, M/2]."""

    def __init__(self, in_channels: int, out_channels: int, leaky_relu_slope: float = 0.01):
        super().__init__()
        self.downsample = in_channels != out_channels
        self.pre_conv = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.LeakyReLU(leaky_relu_slope),
            nn.MaxPool2d(kernel_size=(1, 2)),
        )
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(leaky_relu_slope),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        )
        # Only present when the widths differ (as in the reference's state dicts).
        self.conv1by1 = nn.Conv2d(in_channels, out_channels, 1, bias=False) if self.downsample else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_conv(x)
        return self.conv(x) + (self.conv1by1(x) if self.conv1by1 is not None else x)


class JDCNet(PitchExtractor):
    """JDC-Net F0 extractor (CNN + BiLSTM), the pre-trained pitch extractor of StyleTTS 2.

    Kum & Nam 2019. The mel [B, 1, n_mels, F] is read as an image with time on the rows: conv block
    (c0) → 3 ResBlocks (c1, c2, c3; each halves the mel axis) → BN + LeakyReLU (``GAN_feature``) →
    MaxPool(1, 4) (``poolblock_out`` [B, c3, F, n_mels/32]) → per-frame BiLSTM(hidden c3) →
    Linear → |·|. With 80 mel bands two mel columns remain, so the LSTM input is 2·c3 (the
    reference's literal 512). The detector branch (``maxpool1-3``, ``detector_conv``,
    ``bilstm_detector``, ``detector``) is never run but kept so official state dicts load.

    forward(mel [B, 1, n_mels, F]) → (f0 [B, F] (|regression|, Hz), GAN_feature [B, c3, n_mels/8, F],
    poolblock_out [B, c3, F, n_mels/32]). The reference ``squeeze()``s f0 (→ [F] when B = 1); this
    keeps the batch axis.

    Args:
        num_class: Outputs of the classifier (1 = F0 regression, as StyleTTS 2 uses it).
        seq_len: Unused by the forward (kept for the reference's constructor signature).
        channels: Widths [c0, c1, c2, c3] of the conv block and the three ResBlocks.
        leaky_relu_slope: Negative slope of every LeakyReLU.
        weights: Pretrained weights to load: the reference's ``Utils/JDC/bst.t7``, or a tts-zoo checkpoint directory whose model has a JDC pitch extractor of this shape (e.g. a run's ``checkpoints/latest`` after ``styletts2_pitch_pretrain``); None = random init.
    """

    def __init__(
        self,
        num_class: int = 1,
        seq_len: int = 192,
        channels: list[int] = [64, 128, 192, 256],  # noqa: B006 - never mutated; the catalogue reads it
        leaky_relu_slope: float = 0.01,
        weights: Optional[str] = None,
    ):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.num_class = num_class
        self.seq_len = seq_len
        self.conv_block = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1, bias=False),
            nn.BatchNorm2d(c0),
            nn.LeakyReLU(leaky_relu_slope),
            nn.Conv2d(c0, c0, 3, padding=1, bias=False),
        )
        self.res_block1 = ResBlock(c0, c1, leaky_relu_slope)
        self.res_block2 = ResBlock(c1, c2, leaky_relu_slope)
        self.res_block3 = ResBlock(c2, c3, leaky_relu_slope)
        self.pool_block = nn.Sequential(
            nn.BatchNorm2d(c3),
            nn.LeakyReLU(leaky_relu_slope),
            nn.MaxPool2d(kernel_size=(1, 4)),
            nn.Dropout(0.2),  # never applied by forward (as in the reference)
        )
        # Detector branch: unused by StyleTTS 2, present in every official state dict.
        self.maxpool1 = nn.MaxPool2d(kernel_size=(1, 40))
        self.maxpool2 = nn.MaxPool2d(kernel_size=(1, 20))
        self.maxpool3 = nn.MaxPool2d(kernel_size=(1, 10))
        self.detector_conv = nn.Sequential(
            nn.Conv2d(c0 + c1 + c2 + c3, c3, 1, bias=False),
            nn.BatchNorm2d(c3),
            nn.LeakyReLU(leaky_relu_slope),
            nn.Dropout(0.2),
        )
        self.bilstm_classifier = nn.LSTM(2 * c3, c3, batch_first=True, bidirectional=True)
        self.bilstm_detector = nn.LSTM(2 * c3, c3, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * c3, num_class)
        self.detector = nn.Linear(2 * c3, 2)
        self.apply(self._init_weights)
        if weights is not None:
            self.load_official_weights(weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # The reference's initialisation (matters only when training from scratch).
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
        elif isinstance(m, nn.LSTM):
            for p in m.parameters():
                if p.dim() >= 2:
                    nn.init.orthogonal_(p)
                else:
                    nn.init.normal_(p)

    def forward(self, mel: Tensor) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        f0, gan_feature, pooled, _ = self._classify(mel)
        return f0, gan_feature, pooled

    def forward_with_voicing(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """mel [B, 1, n_mels, F] → (f0 [B, F] Hz, silence logits [B, F]): both branches, as the reference
        PitchExtractor trains them (its detector's two outputs summed into one logit; > 0 = unvoiced).
        The maxpool widths (40, 20, 10) fit 80 mel bands."""
        f0, _, pooled, (conv, res1, res2) = self._classify(mel)
        x = torch.cat((self.maxpool1(conv), self.maxpool2(res1), self.maxpool3(res2), pooled), dim=1)
        x = self.detector_conv(x)  # [B, c3, F, 2]
        x, _ = self.bilstm_detector(x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1))
        return f0, self.detector(x).sum(-1)

    def _classify(self, mel: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        n_frames = mel.shape[-1]
        x = mel.to(self.conv_block[0].weight.dtype).transpose(-1, -2)  # [B, 1, F, n_mels] (the reference: .float())
        conv = self.conv_block(x)
        res1 = self.res_block1(conv)
        res2 = self.res_block2(res1)
        x = self.res_block3(res2)
        x = self.pool_block[1](self.pool_block[0](x))
        gan_feature = x.transpose(-1, -2)  # [B, c3, n_mels/8, F]
        pooled = self.pool_block[2](x)  # [B, c3, F, n_mels/32]
        # Flatten (channel, mel column) per frame: the reference's view(-1, T, 512) at official widths.
        lstm_in = pooled.permute(0, 2, 1, 3).reshape(-1, n_frames, self.bilstm_classifier.input_size)
        out, _ = self.bilstm_classifier(lstm_in)
        out = self.classifier(out.reshape(-1, out.shape[-1])).view(-1, n_frames, self.num_class)
        f0 = out.abs()
        if self.num_class == 1:
            f0 = f0.squeeze(-1)
        return f0, gan_feature, pooled, (conv, res1, res2)

    def load_official_weights(self, bst_t7_path: str | Path) -> None:
        """Load the reference's ``bst.t7`` (``{'net': state_dict}``, with BatchNorm statistics), or the
        ``pitch_extractor`` of a tts-zoo checkpoint directory, strictly."""
        path = Path(bst_t7_path)
        if path.is_dir() and is_checkpoint(path):
            load_state_strict(self, read_submodule_state(path, "pitch_extractor"), path)
            return
        if not path.is_file():
            raise MissingWeightsError(f"pitch extractor file not found: {path} — {_DOWNLOAD_HINT} and put it at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "net" not in state:
            raise CheckpointError(f"{path}: expected a dict with key 'net' (the JDC format)")
        load_state_strict(self, state["net"], path)

    @classmethod
    def from_official(cls, bst_t7_path: str | Path, channels: list[int] = [64, 128, 192, 256], **kwargs) -> "JDCNet":  # noqa: B006
        """Build at ``channels`` and load the reference's ``bst.t7`` (``{'net': state_dict}``, with
        BatchNorm statistics) strictly. Returned in eval mode."""
        model = cls(channels=list(channels), **kwargs)
        model.load_official_weights(bst_t7_path)
        return model.eval()
