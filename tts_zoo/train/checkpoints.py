"""The checkpoints of a run directory::

    runs/demo/
      recipe.yaml                 the resolved recipe of the latest start
      checkpoints/
        step_00000050/            tts-zoo checkpoints (tts_zoo.checkpoint), each resumable
        step_00000100/
        latest -> step_00000100   relative symlink, replaced atomically

Each checkpoint is written atomically by :func:`tts_zoo.checkpoint.save_model`; ``latest`` is moved
only after it is complete, and only the last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from tts_zoo.checkpoint import is_checkpoint, save_model
from tts_zoo.train import TrainingError

_STEP_DIR = re.compile(r"^step_(\d+)$")
LATEST = "latest"


class CheckpointDir:
    """The ``checkpoints/`` folder of a run.

    Args:
        root: the folder.
        keep: how many of the most recent checkpoints to keep.
    """

    def __init__(self, root: Path, keep: int):
        self.root = Path(root)
        self.keep = keep

    def steps(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and not p.is_symlink() and is_checkpoint(p):
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Optional[Path]:
        """The checkpoint to resume from: ``latest`` if it points at a complete checkpoint, else the
        newest complete one (a run killed between the two writes), else None."""
        link = self.root / LATEST
        if link.exists() and is_checkpoint(link):
            return link.resolve()
        steps = self.steps()
        return steps[-1][1] if steps else None

    def save(self, step: int, model: torch.nn.Module, recipe: Any, training: dict[str, Any],
             extra_info: Optional[dict[str, Any]] = None) -> Path:
        """Write ``step_<step>`` (model + training state), point ``latest`` at it, prune old ones.
        Refuses (TrainingError) when a parameter is NaN/Inf: a poisoned checkpoint is never written."""
        bad = [name for name, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
        if bad:
            previous = self.latest()
            raise TrainingError(f"not saving step {step}: non-finite weights in {', '.join(bad[:5])}"
                                f"{' …' if len(bad) > 5 else ''}; the last good checkpoint is {previous or 'none'} "
                                "(lower the learning rate, set train.optimizer.grad_clip, or use precision fp32)")
        path = save_model(self.root / f"step_{step:08d}", model, recipe, training=training, extra_info=extra_info)
        self._point_latest(path.name)
        self.prune()
        return path

    def _point_latest(self, name: str) -> None:
        tmp = self.root / f".{LATEST}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(name, tmp)
        os.replace(tmp, self.root / LATEST)

    def prune(self) -> None:
        """Remove all but the ``keep`` newest checkpoints (never the one ``latest`` points at)."""
        current = self.latest()
        steps = self.steps()
        for _, path in steps[: max(0, len(steps) - self.keep)]:
            if current is None or path.resolve() != current:
                shutil.rmtree(path, ignore_errors=True)
