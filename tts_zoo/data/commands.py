"""``tts-zoo prepare``: a thin typer layer over :func:`tts_zoo.data.prepare.prepare_corpus`.

Importing this module is cheap (no torch); the work is imported when the command runs.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["prepare"]


class Corpus(str, Enum):
    ljspeech = "ljspeech"
    libritts = "libritts"
    vctk = "vctk"
    csv = "csv"
    demo = "demo"


def _frontend_spec(name: str, options: list[str], hint: str = "--frontend-option") -> dict:
    spec: dict = {"component": name}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {opt!r}", param_hint=hint)
        spec[key.strip()] = value
    return spec


def prepare(
    corpus: Corpus = typer.Argument(..., help="Corpus layout: ljspeech, libritts, vctk, csv, or demo (synthesized)."),
    source: Optional[Path] = typer.Argument(None, help="The corpus folder (or CSV file); not used by demo."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for manifests, lists and report."),
    frontend: str = typer.Option("espeak", "--frontend", help="Text frontend component that phonemizes."),
    frontend_options: Optional[List[str]] = typer.Option(
        None, "--frontend-option", help="KEY=VALUE parameter of the frontend (repeatable), e.g. language=en-gb."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0: all cores)."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", help="Share of utterances held out for validation."),
    seed: int = typer.Option(0, "--seed", help="Seeds the split and the demo corpus."),
    utterances: int = typer.Option(320, "--utterances", help="demo only: number of utterances."),
    speakers: Optional[str] = typer.Option(
        None, "--speakers", help="demo only: comma-separated espeak-ng demo voices (default: all 8), e.g. us_m,gb_f."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    f0: Optional[str] = typer.Option(
        None, "--f0", help="Also compute F0 labels with this pitch tracker component (e.g. dsp_pitch), cached "
                           "in OUT/f0 for recipes whose data.f0_labels names the same tracker and settings."),
    f0_options: Optional[List[str]] = typer.Option(
        None, "--f0-option", help="KEY=VALUE parameter of the --f0 tracker (repeatable), e.g. method=dio."),
) -> None:
    """Turn a corpus into phonemized train/val manifests (JSONL + the reference's lists) and a report.

    Re-running does only new work. Bad inputs are skipped and listed in the report.
    """
    from tts_zoo import registry
    from tts_zoo.data.prepare import prepare_corpus

    fe = registry.build_component(_frontend_spec(frontend, frontend_options or []), kind="text_frontend")
    f0_block = _frontend_spec(f0, f0_options or [], "--f0-option") if f0 else None
    if f0_block:  # a bad tracker name or option fails now, before the corpus is prepared
        from tts_zoo.data.f0_labels import build_tracker

        build_tracker(f0_block)
    demo_options = None
    if corpus is Corpus.demo:
        from tts_zoo.data.demo import demo_speakers

        demo_options = {"n_utterances": utterances, "speakers": demo_speakers(speakers)}
    report = prepare_corpus(
        corpus.value, source, out, fe, workers=workers or None, val_fraction=val_fraction, seed=seed,
        show_progress=not quiet, demo_options=demo_options,
    )
    report.render()
    if f0_block:
        from tts_zoo.data.f0_labels import F0Labels

        for split in ("train", "val"):
            if (out / f"{split}.jsonl").is_file():
                r = F0Labels.for_manifest(out / f"{split}.jsonl", f0_block, workers=min(2, workers or 2),
                                          progress=not quiet).report
                typer.echo(f"F0 labels ({split}): {r.computed} computed, {r.cached} cached, {len(r.missing)} missing "
                           f"(tracker failed) in {r.seconds:.1f} s")
