"""Reading the reference implementation's files (yl4579/StyleTTS2): its ``config.yml`` becomes a
tts-zoo model block, and its stage-1 / stage-2 checkpoints load strictly into the assembled model.

The reference wraps most modules in ``nn.DataParallel`` (keys start with ``module.``), stores the
diffusion transformer twice, and loads with ``strict=False`` — which silently keeps random weights
when prefixes differ (StyleTTS2 issues #120, #254). Here every module loads strictly and a mismatch
is an error that names the module and the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch
import yaml
from torch import nn

from tts_zoo.checkpoint import load_state_strict
from tts_zoo.errors import CheckpointError

# The reference's module names in ``net`` and where each one lives in StyleTTS2 (attribute path).
MODULE_MAP = {
    "bert": "plbert.bert",
    "bert_encoder": "plbert.bert_encoder",
    "predictor": "predictor",
    "decoder": "decoder",
    "text_encoder": "text_encoder",
    "predictor_encoder": "predictor_encoder",
    "style_encoder": "style_encoder",
    "diffusion": "diffusion",
    "text_aligner": "text_aligner",
    "pitch_extractor": "pitch_extractor",
    "mpd": "mpd",
    "msd": "msd",
    "wd": "slm_discriminator",
}


def read_yaml(path: Union[str, Path]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def model_block(
    config: Union[str, Path, Mapping[str, Any]],
    root: Union[str, Path, None] = None,
    asr_config: Union[str, Path, None] = None,
    plbert_dir: Union[str, Path, None] = None,
    load_aux_weights: bool = False,
    slm_random_init: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """A reference ``config.yml`` → the ``model:`` block of a tts-zoo recipe (component ``styletts2``).

    ``root`` resolves the config's relative Utils paths (default: the config's directory);
    ``asr_config`` / ``plbert_dir`` override ``ASR_config`` / ``PLBERT_dir``. With
    ``load_aux_weights`` the aligner, pitch extractor and PL-BERT blocks point at the Utils weights
    (for training from the pretrained aux models); importing a full checkpoint does not need them.
    """
    if not isinstance(config, Mapping):
        root = Path(root) if root is not None else Path(config).parent
        config = read_yaml(config)
    root = Path(root or ".")
    mp = config["model_params"]
    hard = config.get("reference_hardwired_overrides", {})  # tiny test models only; absent = official widths
    hidden, sd = mp["hidden_dim"], mp["style_dim"]
    asr_cfg_path = Path(asr_config) if asr_config else root / config["ASR_config"]
    plbert_path = Path(plbert_dir) if plbert_dir else root / config["PLBERT_dir"]
    # The aligner is needed for training only: without its config an import builds no aligner.
    asr_params = dict(read_yaml(asr_cfg_path)["model_params"]) if asr_cfg_path.is_file() else None
    plbert_params = dict(read_yaml(plbert_path / "config.yml")["model_params"])
    dec = dict(mp["decoder"])
    decoder_type = dec.pop("type")
    diff, dist = mp["diffusion"], mp["diffusion"]["dist"]
    slm = mp.get("slm", {})

    block: dict[str, Any] = {
        "component": "styletts2",
        "multispeaker": bool(mp["multispeaker"]),
        "pad_last_token": 0 if mp["multispeaker"] else 5,  # the LJSpeech notebook adds 5 frames to the last token
        "frontend": {"component": "espeak"},
        "text_encoder": {"component": "text_encoder", "channels": hidden, "kernel_size": 5, "depth": mp["n_layer"],
                         "n_symbols": mp["n_token"]},
        "plbert": {"component": "plbert", **plbert_params, "output_dim": hidden},
        "style_encoder": {"component": "style_encoder", "dim_in": mp["dim_in"], "style_dim": sd, "max_conv_dim": hidden},
        "predictor_encoder": {"component": "style_encoder", "dim_in": mp["dim_in"], "style_dim": sd, "max_conv_dim": hidden},
        "predictor": {"component": "prosody_predictor", "style_dim": sd, "d_hid": hidden, "nlayers": mp["n_layer"],
                      "max_dur": mp["max_dur"], "dropout": mp["dropout"]},
        "decoder": {"component": decoder_type, "dim_in": hidden, "style_dim": sd, **dec,
                    **({"hidden_dim": hard["decoder_hidden_dim"]} if "decoder_hidden_dim" in hard else {}),
                    **({"asr_res_dim": hard["decoder_asr_res_dim"]} if "decoder_asr_res_dim" in hard else {})},
        "diffusion": {"component": "style_diffusion", "style_dim": sd, "embedding_features": plbert_params["hidden_size"],
                      "multispeaker": bool(mp["multispeaker"]), **diff["transformer"],
                      "embedding_mask_proba": diff["embedding_mask_proba"], "sigma_data": dist["sigma_data"],
                      "estimate_sigma_data": dist["estimate_sigma_data"], "sigma_mean": dist["mean"], "sigma_std": dist["std"]},
        "text_aligner": {"component": "asr_cnn", **asr_params} if asr_params is not None else None,
        "pitch_extractor": {"component": "jdc", **({"channels": hard["jdc_channels"]} if "jdc_channels" in hard else {})},
        "mpd": {"component": "mpd", **({"channels": hard["mpd_channels"]} if "mpd_channels" in hard else {})},
        "msd": {"component": "msd", **({"channels": hard["msd_channels"]} if "msd_channels" in hard else {})},
        "slm_discriminator": {"component": "wavlm", "model": slm.get("model", "microsoft/wavlm-base-plus"),
                              "hidden": slm.get("hidden", 768), "nlayers": slm.get("nlayers", 13),
                              "initial_channel": slm.get("initial_channel", 64),
                              **({"random_init_config": slm_random_init} if slm_random_init else {})},
    }
    if load_aux_weights:
        block["plbert"]["weights"] = str(plbert_path)
        if block["text_aligner"] is not None:
            block["text_aligner"]["weights"] = str(root / config["ASR_path"])
        block["pitch_extractor"]["weights"] = str(root / config["F0_path"])
    return block


def _strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _submodule(model: nn.Module, path: str) -> Optional[nn.Module]:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def read_reference_net(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The ``net`` dict ({module: state dict}) of a reference checkpoint, read with
    ``weights_only=True``. ``mmap`` maps the file instead of reading it (falls back for old files)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        if mmap:  # an old-style (non-zip) file cannot be memory-mapped
            return read_reference_net(path, mmap=False)
        raise CheckpointError(f"{path}: not a readable StyleTTS 2 checkpoint ({type(e).__name__}: {e})") from None
    net = raw.get("net") if isinstance(raw, dict) else None
    if not isinstance(net, dict):
        raise CheckpointError(f"{path}: expected a reference checkpoint with a 'net' entry "
                              "(train_first.py / train_second.py format)")
    return net


def load_reference_checkpoint(model: nn.Module, checkpoint: Union[str, Path], config: Optional[Mapping[str, Any]] = None,
                              modules: Optional[list[str]] = None) -> dict[str, str]:
    """Load a reference ``epoch_2nd_*.pth`` / ``first_stage.pth`` (``{'net': {module: state}}``) into a
    StyleTTS2 model, strictly. Returns {reference module: what happened} ('loaded', 'not in the
    checkpoint', 'dropped (the model has no such module)'). ``config`` (the config saved with the
    checkpoint) supplies the diffusion's sigma_data."""
    from tts_zoo_styletts2.diffusion.style_diffusion import convert_reference_state_dict

    path = Path(checkpoint)
    net = read_reference_net(path)
    sigma_data = None
    if config is not None:
        sigma_data = config["model_params"]["diffusion"]["dist"]["sigma_data"]
    report = {}
    for name, attr in MODULE_MAP.items():
        if modules is not None and name not in modules:
            continue
        target = _submodule(model, attr)
        if name not in net:
            report[name] = "not in the checkpoint"
            continue
        if target is None:
            report[name] = "dropped (the model has no such module)"
            continue
        state = _strip_module(net[name])
        if name == "diffusion":
            state = convert_reference_state_dict(state, sigma_data)
            # The reference keeps sigma_data in its config, not in the file: keep the model's value.
            for key, value in target.state_dict().items():
                if key.startswith("sigma_data"):
                    state.setdefault(key, value)
        elif name == "bert":  # older transformers stored this (now non-persistent) buffer
            state.pop("embeddings.position_ids", None)
        load_state_strict(target, state, f"{path.name}: module '{name}' (→ {attr})")
        report[name] = "loaded"
    return report
