"""Access to the reference parity fixtures (``$STYLETTS2_FIXTURES``, default ../shared/fixtures/styletts2).

Every dimension a test needs is read from the fixture set's own config files, never hard-coded: a
hidden fixture set with other widths must pass too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("STYLETTS2_FIXTURES", REPO.parent / "shared" / "fixtures" / "styletts2"))
FIXTURE_SETS = sorted(p.stem for p in FIXTURES.glob("*.yml") if (FIXTURES / p.stem / "fixtures.pt").exists())


@dataclass
class FixtureSet:
    """One fixture set: ``config`` (the reference config.yml), ``fx`` (fixtures.pt), checkpoints."""

    name: str
    root: Path = field(default=FIXTURES)

    @cached_property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / f"{self.name}.yml").read_text())

    @property
    def model_params(self) -> dict[str, Any]:
        return self.config["model_params"]

    @property
    def overrides(self) -> dict[str, Any]:
        """The reference's hard-wired widths, replaced in the tiny sets (README section 2.1)."""
        return self.config.get("reference_hardwired_overrides", {})

    @property
    def multispeaker(self) -> bool:
        return bool(self.model_params["multispeaker"])

    def path(self, relative: str) -> Path:
        """A path from the config (relative to the fixtures directory)."""
        return self.root / relative

    def aux_config(self, key: str) -> dict[str, Any]:
        """``aux_config('ASR_config')`` or the PL-BERT config (key 'PLBERT_dir')."""
        rel = self.config[key]
        p = self.path(rel)
        if p.is_dir():
            p = p / "config.yml"
        return yaml.safe_load(p.read_text())

    @cached_property
    def fx(self) -> dict[str, Any]:
        return torch.load(self.root / self.name / "fixtures.pt", weights_only=True)

    @cached_property
    def stage2(self) -> dict[str, Any]:
        return torch.load(self.root / self.name / "epoch_2nd_00003.pth", weights_only=True)

    @cached_property
    def stage1(self) -> dict[str, Any]:
        return torch.load(self.root / self.name / "first_stage.pth", weights_only=True)

    def stage2_state(self, module: str) -> dict[str, torch.Tensor]:
        """A module's stage-2 state dict with the DataParallel ``module.`` prefix removed."""
        return strip_prefix(self.stage2["net"][module], "module.")

    def stage1_state(self, module: str) -> dict[str, torch.Tensor]:
        return strip_prefix(self.stage1["net"][module], "module.")


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str = "") -> None:
    """Max-abs comparison with a message that says how far off and where."""
    actual = torch.as_tensor(actual).detach().float().cpu()
    expected = torch.as_tensor(expected).detach().float().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    assert worst <= atol, f"{what}: max|Δ| = {worst:.3g} > {atol:g} at {tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])}"


def tiny_wavlm_config(hidden: int, nlayers: int) -> dict:
    """A random WavLM whose ``nlayers`` hidden states have width ``hidden`` (README section 8)."""
    heads = next(h for h in (4, 2, 1) if hidden % h == 0)
    return dict(
        hidden_size=hidden, num_hidden_layers=nlayers - 1, num_attention_heads=heads, intermediate_size=2 * hidden,
        conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=heads,
    )
