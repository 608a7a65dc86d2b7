"""``tts-zoo train``: a thin typer layer over :func:`tts_zoo.train.loop.train`.

Importing this module is cheap (no torch); the loop is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["train"]


def train(
    recipe: Path = typer.Argument(..., help="Recipe YAML file (e.g. recipes/demo.yaml)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.max_steps=10 data.batch_size=8."),
    resume: bool = typer.Option(
        True, "--resume/--no-resume",
        help="Continue from the run directory's latest checkpoint (default); --no-resume refuses to start over an existing run."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "-o", help="Run directory (default: the recipe's train.output_dir, runs/{name})."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar (on a terminal)."),
    allow_import_paths: bool = typer.Option(False, "--allow-import-paths", help="Allow module:Class component names."),
) -> None:
    """Train a model from a recipe: every stage in train.stages, resumable, on CPU, a GPU or (under
    torchrun) several GPUs/machines.

    Running the same command again in the same run directory resumes from its latest checkpoint.
    Multi-GPU: torchrun --nproc_per_node 4 -m tts_zoo train RECIPE.
    """
    from tts_zoo.recipe import load_recipe
    from tts_zoo.train.loop import train as run

    r = load_recipe(recipe, overrides or [], allow_import_paths=allow_import_paths)
    run(r, output_dir=output_dir, resume=resume, progress=progress)
