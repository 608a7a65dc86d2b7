"""What a training run reports: a rich progress display and log lines on the console, TensorBoard
scalars / audio / images under ``<run>/tensorboard``, and the same scalars as JSON lines in
``<run>/metrics.jsonl`` (easy to read back in scripts and tests). Only rank 0 reports.

A resumed run first cuts ``metrics.jsonl`` back to the rows its checkpoint had seen
(:func:`keep_metrics`) and purges TensorBoard's later events, so a step re-run is logged once."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

logger = logging.getLogger("tts_zoo.train")
METRICS = "metrics.jsonl"


def keep_metrics(run_dir: Path, rows: Optional[int], step: int) -> None:
    """Cut ``<run_dir>/metrics.jsonl`` back to what a checkpoint had seen: its first ``rows`` lines
    (recorded at save time), or, for a checkpoint without that record, the rows of steps <= ``step``.
    Rewritten atomically."""
    from tts_zoo.data.manifest import atomic_write_text

    path = Path(run_dir) / METRICS
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = lines[:rows] if rows is not None else [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class TrainLogger:
    """Console, progress bar, TensorBoard and ``metrics.jsonl`` of a run (no-ops when not ``enabled``).

    Args:
        run_dir: the run directory.
        enabled: report at all (rank 0 only).
        progress: show a live progress bar (only on a terminal; otherwise log lines only).
        tensorboard: write TensorBoard event files.
        purge_step: resuming: TensorBoard drops the events logged at this step and after.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, progress: bool = True, tensorboard: bool = True,
                 purge_step: Optional[int] = None):
        from rich.console import Console

        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.run_dir = Path(run_dir)
        self._writer = None
        self._metrics = None
        self._progress = None
        self._task = None
        self._t0 = self._last_line = time.perf_counter()
        self._steps = 0
        self.rows = 0  # lines in metrics.jsonl (a checkpoint records it: see keep_metrics)
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS
        self.rows = len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0
        self._metrics = open(path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)
            except ImportError:
                self.print("[yellow]tensorboard is not installed: no TensorBoard logs (pip install tensorboard)[/]")
        if progress and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console, transient=False,
            )
            self._progress.start()

    # ------------------------------------------------------------------ console

    def print(self, message: str, markup: bool = True) -> None:
        self._last_line = time.perf_counter()
        if self.enabled:
            (self._progress.console if self._progress else self.console).print(message, markup=markup)

    def warning(self, message: str) -> None:
        logger.warning(message)
        self.print(f"[yellow]warning:[/] {message}")

    def start_task(self, description: str, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=total, completed=completed, info="")
        self._t0, self._steps = time.perf_counter(), 0
        self._last_line = self._t0

    def advance(self, batches: int = 1) -> None:
        """One step done, over ``batches`` batches (train.accumulate)."""
        self._steps += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=batches)

    def advance_info(self, info: str) -> None:
        """Show ``info`` (the last logged losses) beside the progress bar."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, info=info)

    def pace(self, remaining: int) -> str:
        """``s/step`` over the steps since :meth:`start_task` and the ETA of ``remaining`` more steps."""
        if not self._steps:
            return ""
        rate = (time.perf_counter() - self._t0) / self._steps
        return f"{rate:.2f} s/step · ETA {_duration(rate * remaining)}"

    def quiet_for(self) -> float:
        """Seconds since the last console line."""
        return time.perf_counter() - self._last_line

    # ------------------------------------------------------------------ metrics

    def scalars(self, step: int, values: dict[str, float], prefix: str, **context: Any) -> None:
        """Write ``prefix/name`` scalars to TensorBoard and one JSON line (with ``context``)."""
        if not self.enabled or not values:
            return
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{prefix}/{name}", value, step)
        self._metrics.write(json.dumps({"step": step, "split": prefix, **context, **values}) + "\n")
        self._metrics.flush()
        self.rows += 1

    def log_line(self, step: int, where: str, values: dict[str, float]) -> None:
        shown = " ".join(f"{k} {_fmt(v)}" for k, v in values.items() if not k.startswith(("lr/", "grad_norm/")))
        self.print(f"step {step} · {where} · {shown}")

    def media(self, step: int, items: dict[str, Tensor], sample_rate: int) -> None:
        """1-D tensors → audio clips, 2-D → images (rows flipped so low frequencies/first tokens are at the bottom)."""
        if not self.enabled or self._writer is None:
            return
        for name, value in items.items():
            value = value.detach().float().cpu()
            if value.dim() == 1:
                peak = float(value.abs().max()) if value.numel() else 0.0
                self._writer.add_audio(name, (value / max(peak, 1.0)).unsqueeze(0), step, sample_rate=sample_rate)
            elif value.dim() == 2:
                lo, hi = float(value.min()), float(value.max())
                image = (value - lo) / (hi - lo) if hi > lo else torch.zeros_like(value)
                self._writer.add_image(name, image.flip(0), step, dataformats="HW")
        self._writer.flush()

    def text(self, name: str, text: str) -> None:
        if self.enabled and self._writer is not None:
            self._writer.add_text(name, f"```\n{text}\n```", 0)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


def running_means(sums: dict[str, Tensor | float], counts: dict[str, int]) -> dict[str, float]:
    """Turn accumulated sums into means (one device sync per logged value, not per step)."""
    return {k: float(v) / counts[k] for k, v in sums.items() if counts.get(k)}


def accumulate(sums: dict[str, Any], counts: dict[str, int], values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, Tensor):
            if value.numel() != 1:
                continue
            value = value.detach().float()
        elif not isinstance(value, (int, float)):
            continue
        sums[name] = sums.get(name, 0.0) + value
        counts[name] = counts.get(name, 0) + 1


def describe_position(stage_index: int, n_stages: int, stage_name: str, epoch: int, epochs: int,
                      batch: Optional[int] = None, batches: Optional[int] = None) -> str:
    where = f"stage {stage_index + 1}/{n_stages} {stage_name} · epoch {epoch + 1}/{epochs}"
    return where if batch is None else f"{where} · batch {batch}/{batches}"
