"""The checkpoints of a run directory::

    runs/demo/
      recipe.yaml                 the resolved recipe of the latest start
      checkpoints/
        step_00000050/            tts-zoo checkpoints (tts_zoo.checkpoint), each resumable
        step_00000100/
        latest -> step_00000100   relative symlink, replaced atomically

Each checkpoint is written atomically by :func:`tts_zoo.checkpoint.save_model`; ``latest`` is moved
only after it is complete, and only the last ``keep`` checkpoints are kept. A checkpoint is never
written with non-finite or exploded weights (:func:`weight_problem`), so every one here is "good".
What a kill during a save leaves behind (``.step_N.XXXX`` temporary folders, ``.latest.tmp``) is
removed by :meth:`CheckpointDir.remove_stale` when a run starts.
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
_STALE = re.compile(r"^\.(step_\d+)\.(.+)$")  # save_checkpoint's temporary / set-aside folders
LATEST = "latest"


def weight_problem(model: torch.nn.Module, max_abs: Optional[float]) -> Optional[str]:
    """Why ``model``'s weights must not be saved or trained on, or None: a non-finite value in any
    floating-point tensor of its state, or a parameter whose absolute value exceeds ``max_abs``
    (exploded: e.g. a learning rate far too high; None = no limit)."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        return f"non-finite weights in {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''}"
    if max_abs is not None:
        for name, p in model.named_parameters():
            peak = float(p.detach().abs().max()) if p.numel() else 0.0
            if peak > max_abs:
                return f"exploded weights: max |{name}| = {peak:.3g} > train.max_weight_abs = {max_abs:g}"
    return None


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
             extra_info: Optional[dict[str, Any]] = None, max_abs: Optional[float] = None) -> Path:
        """Write ``step_<step>`` (model + training state), point ``latest`` at it, prune old ones.
        Refuses (TrainingError) when a weight is NaN/Inf or a parameter exceeds ``max_abs`` in absolute
        value: a poisoned checkpoint is never written."""
        problem = weight_problem(model, max_abs)
        if problem:
            raise TrainingError(f"not saving step {step}: {problem}; the last good checkpoint is "
                                f"{self.latest() or 'none'} (lower the learning rate, set train.optimizer.grad_clip, "
                                "or use precision fp32)")
        path = save_model(self.root / f"step_{step:08d}", model, recipe, training=training, extra_info=extra_info)
        self._point_latest(path.name)
        self.prune()
        return path

    def remove_stale(self) -> list[str]:
        """Clean up after a run killed during a save: remove the temporary ``.step_N.*`` folders and
        ``.latest.tmp``; a set-aside ``.step_N.old`` whose replacement never arrived is put back.
        Returns the names removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        tmp_link = self.root / f".{LATEST}.tmp"
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
            removed.append(tmp_link.name)
        for path in sorted(self.root.iterdir()):
            m = _STALE.match(path.name)
            if not m or not path.is_dir():
                continue
            target = self.root / m.group(1)
            if m.group(2) == "old" and not target.exists() and is_checkpoint(path):
                os.replace(path, target)
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed

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
