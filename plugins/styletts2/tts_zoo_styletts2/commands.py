"""``tts-zoo import-styletts2``: an official StyleTTS 2 model (``config.yml`` + ``epoch_2nd_*.pth``)
→ a self-describing tts-zoo checkpoint with identical output.

The reference checkpoint is loaded strictly, module by module (``official.load_reference_checkpoint``):
a key that does not map is an error, never a silently random weight. What is kept:

* by default an **inference model**: the training-only modules (text aligner, pitch extractor, MPD,
  MSD and the WavLM discriminator) are dropped. Synthesis needs none of them, the file is smaller,
  and neither the Utils/ASR and Utils/JDC weights nor WavLM are needed.
* with ``--keep-training-modules`` also the aligner, pitch extractor, MPD, MSD and the WavLM
  discriminator's head (to fine-tune from the checkpoint: ``recipes/*_finetune.yaml``); a kept aligner
  or pitch extractor missing from the checkpoint starts from the Utils file the config names
  (``ASR_path``, ``F0_path``, or ``--asr`` / ``--jdc``). WavLM itself is not stored: it is loaded from
  the Hugging Face cache (the config's ``slm.model``) when training first uses it, not by the import.

This module imports no torch at import time (the CLI imports it to build its command table).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import typer

from tts_zoo.errors import CheckpointError

__all__ = ["import_reference_model", "import_styletts2"]

TRAINING_ONLY = ("text_aligner", "pitch_extractor", "mpd", "msd", "wd")  # reference module names
AUX_WEIGHTS = {"text_aligner": "ASR_path", "pitch_extractor": "F0_path"}  # config keys of their Utils files


def _locate(relative: str, config_dir: Path, what: str, option: str) -> Path:
    """A path from the reference config: relative to the config's folder, else to the current folder
    (the reference ran from its repository root)."""
    for base in (config_dir, Path.cwd()):
        candidate = base / relative
        if candidate.exists():
            return candidate.resolve()
    raise CheckpointError(f"{what} not found: the config names '{relative}' (looked in {config_dir} and {Path.cwd()}); "
                          f"pass {option}")


def _resolved_config(config_path: Path, asr: Optional[Path], jdc: Optional[Path], plbert: Optional[Path],
                     need_aux: set[str]) -> dict[str, Any]:
    """The reference config with the Utils paths made absolute (options first, then the config's own)."""
    from tts_zoo_styletts2.official import read_yaml

    config = copy.deepcopy(read_yaml(config_path))
    here = config_path.parent
    if asr is not None:
        if not (asr / "config.yml").is_file():
            raise CheckpointError(f"{asr}: no config.yml here (--asr takes the Utils/ASR folder)")
        config["ASR_config"] = str((asr / "config.yml").resolve())
        weights = sorted(asr.glob("*.pth"))
        if weights:
            config["ASR_path"] = str(weights[-1].resolve())
    else:
        what = "the aligner's config (Utils/ASR/config.yml)"
        config["ASR_config"] = str(_locate(config["ASR_config"], here, what, "--asr DIR"))
    plbert_dir = plbert if plbert is not None else None
    if plbert_dir is None:
        plbert_dir = _locate(config["PLBERT_dir"], here, "the PL-BERT folder (Utils/PLBERT)", "--plbert DIR")
    if not (Path(plbert_dir) / "config.yml").is_file():
        raise CheckpointError(f"{plbert_dir}: no PL-BERT config.yml here (--plbert takes the Utils/PLBERT folder)")
    config["PLBERT_dir"] = str(Path(plbert_dir).resolve())
    if jdc is not None:
        config["F0_path"] = str(jdc.resolve())
    for module in need_aux:
        key = AUX_WEIGHTS[module]
        option = "--jdc FILE" if module == "pitch_extractor" else "--asr DIR"
        config[key] = str(_locate(config[key], here, f"weights for the {module} (missing from the checkpoint)", option))
    return config


def _checkpoint_modules(path: Path) -> list[str]:
    """The module names in a reference checkpoint's ``net`` (memory-mapped: nothing is read yet)."""
    from tts_zoo_styletts2.official import read_reference_net

    return list(read_reference_net(path, mmap=True))


def _recipe_name(config_path: Path) -> str:
    # Official configs are called config.yml inside a folder named after the model (Models/LibriTTS).
    stem = config_path.stem
    return config_path.resolve().parent.name if stem.lower() in ("config", "config_ft") else stem


def import_reference_model(
    config: Path,
    checkpoint: Path,
    out: Path,
    asr: Optional[Path] = None,
    jdc: Optional[Path] = None,
    plbert: Optional[Path] = None,
    name: Optional[str] = None,
    keep_training_modules: bool = False,
) -> dict[str, str]:
    """Convert a reference StyleTTS 2 model; returns the report {reference module: what happened}."""
    from tts_zoo import registry
    from tts_zoo.checkpoint import save_model
    from tts_zoo.recipe import load_recipe
    from tts_zoo_styletts2 import official
    from tts_zoo_styletts2.model import StyleTTS2

    config, checkpoint = Path(config), Path(checkpoint)
    if not config.is_file():
        raise CheckpointError(f"{config}: config file not found")
    present = _checkpoint_modules(checkpoint)
    # The WavLM head is kept only from the checkpoint (it has no Utils file).
    kept_training = [m for m in TRAINING_ONLY if m != "wd" or m in present] if keep_training_modules else []
    need_aux = {m for m in kept_training if m in AUX_WEIGHTS and m not in present}
    cfg = _resolved_config(config, asr, jdc, plbert, need_aux)

    block = official.model_block(cfg, root=config.parent)
    for module in TRAINING_ONLY:
        if module not in kept_training:
            block[official.MODULE_MAP[module]] = None
    for module in need_aux:
        block[module]["weights"] = cfg[AUX_WEIGHTS[module]]
    recipe = load_recipe({"name": name or _recipe_name(config),
                          "description": f"StyleTTS 2 imported from {checkpoint.name} ({config.name})", "model": block})
    model = registry.build_component(recipe.model, "model")
    assert isinstance(model, StyleTTS2)

    loaded = [m for m, attr in official.MODULE_MAP.items()
              if m in present and official._submodule(model, attr) is not None]
    official.load_reference_checkpoint(model, checkpoint, cfg, modules=loaded)
    report = {}
    for module, attr in official.MODULE_MAP.items():
        if module in loaded:
            report[module] = "loaded"
        elif module in need_aux:
            report[module] = f"not in the checkpoint: from {cfg[AUX_WEIGHTS[module]]}"
        elif module in present:
            report[module] = "dropped (training only)"
        elif official._submodule(model, attr) is not None:
            raise CheckpointError(f"{checkpoint}: has no '{module}' module, which the model needs")
        else:
            report[module] = "not in the checkpoint (not needed)"
    for module in present:
        if module not in official.MODULE_MAP:
            report[module] = "ignored (not a StyleTTS 2 module)"
    # Every weight of the model must come from somewhere: nothing left at its random init.
    covered = tuple(official.MODULE_MAP[m] + "." for m in loaded) + tuple(m + "." for m in need_aux)
    stray = [k for k in model.state_dict() if not k.startswith(covered)]
    if stray:
        raise CheckpointError(f"{checkpoint}: no weights for {', '.join(stray[:5])}{' …' if len(stray) > 5 else ''}")
    save_model(out, model, recipe, extra_info={"imported_from": {"checkpoint": str(checkpoint.resolve()),
                                                                   "config": str(config.resolve()), "report": report}})
    return report


def import_styletts2(
    config: Path = typer.Option(..., "--config", "-c", help="The reference config.yml saved with the checkpoint."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The reference checkpoint (epoch_2nd_*.pth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output model (a tts-zoo checkpoint directory)."),
    asr: Optional[Path] = typer.Option(None, "--asr", help="Utils/ASR folder (default: the config's ASR_config)."),
    jdc: Optional[Path] = typer.Option(None, "--jdc", help="Utils/JDC/bst.t7 (default: the config's F0_path)."),
    plbert: Optional[Path] = typer.Option(None, "--plbert", help="Utils/PLBERT folder (default: the config's PLBERT_dir)."),
    name: Optional[str] = typer.Option(None, "--name", help="Recipe name (default: from the config file)."),
    keep_training_modules: bool = typer.Option(
        False, "--keep-training-modules", help="Keep the aligner, pitch extractor, MPD, MSD, WavLM head (to fine-tune)."),
) -> None:
    """Convert an official StyleTTS 2 model into a tts-zoo model (strict loading, with a report)."""
    report = import_reference_model(config, checkpoint, out, asr, jdc, plbert, name, keep_training_modules)
    width = max(len(k) for k in report)
    for module, what in report.items():
        print(f"  {module:<{width}}  {what}")
    print(f"wrote {out}")
