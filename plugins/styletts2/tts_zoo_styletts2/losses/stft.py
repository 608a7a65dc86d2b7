"""The "mel loss" of StyleTTS 2: multi-resolution log-mel spectral convergence."""

from __future__ import annotations

import torch
from torch import Tensor

from tts_zoo.audio import MEL_MEAN, MEL_STD, mel_spectrogram
from tts_zoo.interfaces import Loss


class MultiResolutionSTFTLoss(Loss):
    """Multi-resolution log-mel spectral convergence (StyleTTS 2's reconstruction "mel loss").

    Li et al. 2023 (StyleTTS 2) train the decoder with an L1 mel loss; the reference computes it as
    the spectral convergence (Yamamoto et al. 2020, Parallel WaveGAN) of normalised log-mels at three
    STFT resolutions: per resolution, mel = MelSpectrogram(sample_rate, n_fft, win, hop, n_mels) with
    a Hann window (HTK, no norm, power 2, f_max = sample_rate / 2), m = (log(1e-5 + mel) + 4) / 4,
    loss = ||m_target - m_pred||_1 / ||m_target||_1 over the whole batch; the result is the mean over
    resolutions.

    forward(prediction [B, (1,) S], target [B, (1,) S]) → scalar.

    Args:
        fft_sizes: FFT size of each resolution.
        hop_sizes: hop of each resolution.
        win_lengths: Hann window length of each resolution.
        sample_rate: sample rate of the waves (sets the mel filterbank).
        n_mels: mel bands.
    """

    def __init__(
        self,
        fft_sizes: list[int] = (1024, 2048, 512),
        hop_sizes: list[int] = (120, 240, 50),
        win_lengths: list[int] = (600, 1200, 240),
        sample_rate: int = 24000,
        n_mels: int = 128,
    ):
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.resolutions = list(zip(fft_sizes, hop_sizes, win_lengths))
        self.sample_rate = sample_rate
        self.n_mels = n_mels

    def mel(self, wave: Tensor, resolution: int = 0) -> Tensor:
        """Wave [..., S] → mel power spectrogram [..., n_mels, 1 + S // hop] at one resolution."""
        n_fft, hop, win = self.resolutions[resolution]
        return mel_spectrogram(
            wave, sample_rate=self.sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=self.n_mels
        )

    def log_mel(self, wave: Tensor, resolution: int = 0) -> Tensor:
        """Wave [..., S] → normalised log-mel (log(1e-5 + mel) + 4) / 4 at one resolution."""
        return (torch.log(1e-5 + self.mel(wave, resolution)) - MEL_MEAN) / MEL_STD

    def per_resolution(self, prediction: Tensor, target: Tensor) -> list[Tensor]:
        """The spectral convergence of each resolution (scalars)."""
        # [B, 1, S] and [B, S] alike: a broadcast between the two would silently compare every pair.
        prediction = prediction.reshape(-1, prediction.shape[-1])
        target = target.reshape(-1, target.shape[-1])
        losses = []
        for i in range(len(self.resolutions)):
            x, y = self.log_mel(prediction, i), self.log_mel(target, i)
            losses.append(torch.norm(y - x, p=1) / torch.norm(y, p=1))
        return losses

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        losses = self.per_resolution(prediction, target)
        return sum(losses) / len(losses)
