"""PL-BERT (Li et al. 2023, "Phoneme-Level BERT for Enhanced Prosody of Text-to-Speech"): an ALBERT
over phoneme tokens, as StyleTTS 2 uses it, plus StyleTTS 2's ``bert_encoder`` projection and,
for pretraining only, PL-BERT's two prediction heads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import yaml
from torch import Tensor, nn
from transformers import AlbertConfig, AlbertModel

from tts_zoo import interfaces
from tts_zoo.errors import CheckpointError, MissingWeightsError

_POSITION_IDS = "embeddings.position_ids"
_DOWNLOAD_HINT = (
    "download the official Utils/PLBERT folder (config.yml + step_1000000.t7) of yl4579/StyleTTS2 "
    "from Hugging Face and put it there"
)


class PLBert(interfaces.LanguageModel):
    """PL-BERT: phoneme-level ALBERT encoder (transformers ``AlbertModel``) + ``bert_encoder`` projection.

    Li et al. 2023 (PL-BERT; used by StyleTTS 2 for durations and style diffusion). ``forward``
    gives the ALBERT features (the reference's ``bert_dur``, the diffusion's conditioning);
    ``project`` maps them to the TTS width (the reference's ``d_en``, the prosody predictor's input).

    forward(tokens [B, T] long, attention_mask [B, T] with 1 = keep) → [B, T, hidden_size];
    project([B, T, hidden_size]) → [B, output_dim, T]. With ``word_vocab_size`` set, ``heads``
    (:class:`PLBertHeads`) holds the pretraining heads (stage ``styletts2_plbert_pretrain``); they
    are part of the state (checkpoints, resume) and left out of inference builds.

    Args:
        vocab_size: Number of phoneme tokens (ALBERT ``vocab_size``).
        hidden_size: ALBERT hidden size H.
        num_attention_heads: ALBERT attention heads.
        intermediate_size: ALBERT feed-forward width.
        max_position_embeddings: Longest token sequence ALBERT accepts.
        num_hidden_layers: Number of applications of ALBERT's one shared layer.
        embedding_size: ALBERT factorised embedding width (ALBERT's default when the config has none).
        dropout: Kept from PL-BERT's config; not an ALBERT field, so (as in the reference) no effect.
        output_dim: Width of the ``bert_encoder`` projection (the TTS ``hidden_dim``).
        weights: Pretrained encoder to load: an official PL-BERT directory (config.yml + step_*.t7), a transformers checkpoint directory (config.json + weights), a tts-zoo checkpoint directory (e.g. a styletts2_plbert_pretrain run's checkpoints/latest) or a .safetensors file; None = random init.
        attn_implementation: transformers attention kernel ('sdpa' or 'eager'); None = its default.
        word_vocab_size: Words the phoneme-to-word head tells apart (unknown word and word separator included); set = build the pretraining heads (training only), None = no heads.
    """

    def __init__(
        self,
        vocab_size: int = 178,
        hidden_size: int = 768,
        num_attention_heads: int = 12,
        intermediate_size: int = 2048,
        max_position_embeddings: int = 512,
        num_hidden_layers: int = 12,
        embedding_size: int = 128,
        dropout: float = 0.1,
        output_dim: int = 512,
        weights: Optional[str] = None,
        attn_implementation: Optional[Literal["sdpa", "eager"]] = None,
        word_vocab_size: Optional[int] = None,
    ):
        super().__init__()
        config = AlbertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            num_hidden_layers=num_hidden_layers,
            embedding_size=embedding_size,
            dropout=dropout,
            attn_implementation=attn_implementation,
        )
        self.hidden_size = hidden_size
        self.bert = AlbertModel(config)
        # Checkpoints from older transformers carry the (then persistent) position_ids buffer.
        self.bert.register_load_state_dict_pre_hook(_drop_position_ids)
        self.bert_encoder = nn.Linear(hidden_size, output_dim)
        self.heads = PLBertHeads(hidden_size, vocab_size, word_vocab_size) if word_vocab_size else None
        if weights is not None:
            self.load_encoder(weights)

    @classmethod
    def from_directory(cls, path: str, output_dim: int = 512, **kwargs: Any) -> "PLBert":
        """Build with the ALBERT config found in ``path`` (official ``config.yml`` ``model_params``, or
        a transformers ``config.json``) and load its weights."""
        root = _existing_dir(path)
        if (root / "config.yml").is_file():
            params = yaml.safe_load((root / "config.yml").read_text())["model_params"]
        elif (root / "config.json").is_file():
            params = AlbertConfig.from_pretrained(str(root), local_files_only=True).to_dict()
        else:
            raise CheckpointError(f"no PL-BERT config.yml or config.json in {root}: {_DOWNLOAD_HINT}")
        names = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "num_hidden_layers", "embedding_size", "dropout")
        args = {k: params[k] for k in names if k in params}
        return cls(**args, output_dim=output_dim, weights=str(root), **kwargs)

    def load_encoder(self, path: str) -> None:
        """Load the ALBERT weights (strict) from an official PL-BERT, a transformers or a tts-zoo
        checkpoint directory, or a .safetensors file."""
        state = read_plbert_state(path)
        try:
            self.bert.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"PL-BERT weights in {path} do not fit this model: {e}") from e

    def forward(self, tokens: Tensor, attention_mask: Tensor) -> Tensor:
        return self.bert(input_ids=tokens, attention_mask=attention_mask).last_hidden_state

    def project(self, bert_out: Tensor) -> Tensor:
        """[B, T, hidden_size] → [B, output_dim, T] (the reference's ``bert_encoder(bert_dur).transpose(-1, -2)``)."""
        return self.bert_encoder(bert_out).transpose(-1, -2)


class PLBertHeads(nn.Module):
    """PL-BERT's pretraining heads (the reference's ``MultiTaskModel``; key names as its checkpoints).

    ALBERT features [B, T, H] → (phoneme logits [B, T, vocab_size] for masked-phoneme prediction,
    word logits [B, T, word_vocab_size] for phoneme-to-word prediction), one linear layer each.
    """

    def __init__(self, hidden_size: int, vocab_size: int, word_vocab_size: int):
        super().__init__()
        self.mask_predictor = nn.Linear(hidden_size, vocab_size)
        self.word_predictor = nn.Linear(hidden_size, word_vocab_size)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.mask_predictor(hidden), self.word_predictor(hidden)


def read_plbert_state(path: str) -> dict[str, Tensor]:
    """The bare ``AlbertModel`` state dict stored in an official PL-BERT directory (the highest
    ``step_*.t7``), a transformers checkpoint directory, a tts-zoo checkpoint directory or a
    .safetensors file.

    Official files hold ``module.encoder.<ALBERT key>`` plus pre-training heads; we keep the encoder
    keys only (as the reference's ``load_plbert``) and drop the non-persistent ``position_ids``.
    tts-zoo files hold the whole model (``plbert.bert.<ALBERT key>``) or a PL-BERT (``bert.…``).
    """
    file = Path(path).expanduser()
    if file.is_file() and file.suffix == ".safetensors":
        return _read_safetensors_encoder(file)
    root = _existing_dir(path)
    if (root / "model.safetensors").is_file() and not (root / "config.json").is_file():
        return _read_safetensors_encoder(root / "model.safetensors")  # a tts-zoo checkpoint
    steps = {int(m.group(1)): f for f in root.iterdir() if (m := re.fullmatch(r"step_(\d+)\.t7", f.name))}
    if steps:
        net = torch.load(steps[max(steps)], map_location="cpu", weights_only=True)["net"]
        net = _strip(net, "module.")
        return {k: v for k, v in _strip(net, "encoder.", keep_only=True).items() if k != _POSITION_IDS}
    if (root / "config.json").is_file():
        return _read_transformers_state(root)
    raise CheckpointError(f"no PL-BERT weights (step_*.t7 or config.json) in {root}: {_DOWNLOAD_HINT}")


def _read_transformers_state(root: Path) -> dict[str, Tensor]:
    files = sorted(root.glob("*.safetensors"))
    state: dict[str, Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for f in files:
            state.update(load_file(str(f)))
    elif (root / "pytorch_model.bin").is_file():
        state = torch.load(root / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(f"no model.safetensors or pytorch_model.bin in {root}")
    # A checkpoint of a model with heads (AlbertForMaskedLM, ...) nests the encoder under "albert.".
    if any(k.startswith("albert.") for k in state):
        state = _strip(state, "albert.", keep_only=True)
    state.pop(_POSITION_IDS, None)
    return state


def _read_safetensors_encoder(file: Path) -> dict[str, Tensor]:
    """The ALBERT tensors of a safetensors file: under ``plbert.bert.`` (a tts-zoo model), ``bert.``
    (a PLBert state dict), ``albert.`` (transformers with heads) or at the top level; only those are read."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            prefix = next((p for p in ("plbert.bert.", "bert.", "albert.") if any(k.startswith(p) for k in keys)), "")
            state = {k[len(prefix):]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
    except Exception as e:
        raise CheckpointError(f"{file}: unreadable safetensors file ({e})") from None
    state.pop(_POSITION_IDS, None)
    if not state:
        raise CheckpointError(f"{file}: holds no PL-BERT weights")
    return state


def _existing_dir(path: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise MissingWeightsError(f"PL-BERT weights {root} not found: {_DOWNLOAD_HINT}, or give a "
                                  "styletts2_plbert_pretrain run's checkpoint (e.g. runs/plbert_pretrain/checkpoints/latest)")
    return root


def _strip(state: dict[str, Tensor], prefix: str, keep_only: bool = False) -> dict[str, Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif not keep_only:
            out[k] = v
    return out


def _drop_position_ids(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    state_dict.pop(prefix + _POSITION_IDS, None)
