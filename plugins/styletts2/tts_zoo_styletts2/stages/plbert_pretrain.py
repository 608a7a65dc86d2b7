"""PL-BERT pretraining (Li et al. 2023, "Phoneme-Level BERT for Enhanced Prosody of Text-to-Speech
with Grapheme Predictions"; yl4579/PL-BERT ``train.ipynb``): the route to a new language's PL-BERT."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_zoo.interfaces import Stage, StageData, StepContext
from tts_zoo.train import TrainingError
from tts_zoo_styletts2.stages.common import step_limit
from tts_zoo_styletts2.stages.plbert_data import IGNORE, PLBertTextDataset, TextBatch, collate_text, load_corpus

logger = logging.getLogger("tts_zoo.train")


def mask_words(batch: TextBatch, mask_id: int, mask_prob: float, random_fraction: float, keep_fraction: float,
               generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Whole-word masking, as the reference's data loader: each word (of each item) is chosen with
    probability ``mask_prob``; a chosen word's phonemes all become ``mask_id``, except in a
    ``random_fraction`` of chosen words (each phoneme replaced by a random phoneme of the same item)
    and a ``keep_fraction`` (left as they are). Separators are never chosen.

    → (input tokens [B, T], chosen [B, T] bool: the positions the masked-phoneme loss is taken on).
    """
    tokens, ordinals = batch.tokens, batch.ordinals
    n_words = int(ordinals.max()) + 1 if ordinals.numel() else 0
    is_word = ordinals >= 0
    index = ordinals.clamp(min=0)
    draws = torch.rand(2, tokens.shape[0], max(n_words, 1), generator=generator, device=tokens.device)
    chosen = (draws[0] < mask_prob).gather(1, index) & is_word
    action = draws[1].gather(1, index)  # one draw per word: mask, random or keep
    inputs = tokens.masked_fill(chosen & (action >= random_fraction + keep_fraction), mask_id)
    # Random phonemes drawn from the item's own word tokens (word positions sorted first).
    order = torch.argsort((~is_word).to(torch.int8), dim=1, stable=True)
    pick = torch.rand(tokens.shape, generator=generator, device=tokens.device) * is_word.sum(1, keepdim=True)
    random_tokens = tokens.gather(1, order.gather(1, pick.long().clamp(max=tokens.shape[1] - 1)))
    inputs = torch.where(chosen & (action < random_fraction), random_tokens, inputs)
    return inputs, chosen


class PLBertPretrainStage(Stage):
    """PL-BERT pretraining: masked-phoneme and phoneme-to-word prediction on a phonemized text corpus.

    Li et al. 2023 (PL-BERT), section 2; the reference's ``train.ipynb``. The corpus is phonemized
    word by word with the model's text frontend (cached beside the corpus file; see
    ``tts_zoo_styletts2.stages.plbert_data``): token ids, and for every token the id of its word in a
    vocabulary of the corpus's most frequent words (size: the model's ``plbert.word_vocab_size``,
    which builds the two heads). Each step masks whole words (15 % of words; of those 80 % mask
    symbol, 10 % random phonemes, 10 % unchanged) and trains ALBERT + heads on
    cross-entropy(masked phonemes, on the chosen positions) + cross-entropy(word ids, on every
    token), each averaged over its tokens (the reference averages per sentence first). The
    ``bert_encoder`` projection and everything else in the model do not change. Logged: both
    losses and their accuracies; validation masks with a fixed seed, so epochs compare.

    A later recipe starts from the result with ``model.plbert.weights: <run>/checkpoints/latest``
    (the ALBERT weights only; the heads are left behind).

    Args:
        epochs: Epochs over the corpus.
        corpus: Text to learn from: a text file (one sentence a line; bad or empty lines are counted and skipped), a .jsonl manifest (its texts), or demo:N (N built-in demo sentences); None = the texts of data.train.
        val_fraction: Fraction of the corpus's items held out for validation (the last ones).
        mask_prob: Probability that a word is chosen for masked-phoneme prediction (the reference's word_mask_prob).
        random_fraction: Fraction of chosen words whose phonemes are replaced by random phonemes.
        keep_fraction: Fraction of chosen words left unchanged (the rest get the mask symbol).
        mask_symbol: Frontend symbol used as the mask token (the reference's 'M').
        max_tokens: Longest item in tokens; longer sentences are split at word boundaries (at most PL-BERT's max_position_embeddings).
        lr: AdamW learning rate (the reference's 1e-4; betas 0.9/0.999, eps 1e-6, no weight decay, as transformers' AdamW it used).
        batch_size: Sentences per batch and rank; None = data.batch_size.
        max_steps: End this stage after this many of its steps, mid-epoch if need be (validation and a checkpoint follow; null = its epochs).
    """

    def __init__(
        self,
        epochs: int = 10,
        corpus: Optional[str] = None,
        val_fraction: float = 0.05,
        mask_prob: float = 0.15,
        random_fraction: float = 0.1,
        keep_fraction: float = 0.1,
        mask_symbol: str = "M",
        max_tokens: int = 512,
        lr: float = 1e-4,
        batch_size: Optional[int] = None,
        max_steps: Optional[int] = None,
    ):
        if not 0 <= random_fraction + keep_fraction <= 1:
            raise ValueError(f"random_fraction + keep_fraction must lie in [0, 1], got {random_fraction + keep_fraction}")
        self.epochs = epochs
        self.max_steps = step_limit(max_steps)
        self.corpus = corpus
        self.val_fraction = val_fraction
        self.masking = {"mask_prob": mask_prob, "random_fraction": random_fraction, "keep_fraction": keep_fraction}
        self.mask_symbol = mask_symbol
        self.max_tokens = max_tokens
        self.lr = lr
        self.batch_size = batch_size
        self.mask_id = -1

    def setup(self, model: nn.Module, recipe: Any, resumed: bool) -> None:
        plbert = getattr(model, "plbert", None)
        if getattr(plbert, "heads", None) is None:
            raise TrainingError("styletts2_plbert_pretrain needs PL-BERT's pretraining heads: set "
                                "model.plbert.word_vocab_size (the word vocabulary's size, e.g. 2000)")
        config = plbert.bert.config
        if self.max_tokens > config.max_position_embeddings:
            raise TrainingError(f"styletts2_plbert_pretrain: max_tokens {self.max_tokens} > model.plbert."
                                f"max_position_embeddings {config.max_position_embeddings}")
        mask = model.frontend.encode(self.mask_symbol)
        if len(mask) != 1 or mask[0] >= config.vocab_size:
            raise TrainingError(f"styletts2_plbert_pretrain: mask_symbol {self.mask_symbol!r} is not one symbol of "
                                f"the frontend's table within PL-BERT's vocab_size {config.vocab_size}")
        self.mask_id = mask[0]

    def datasets(self, model: nn.Module, recipe: Any) -> StageData:
        corpus = load_corpus(self.corpus, recipe, model.frontend, self.max_tokens)
        vocab_size = model.plbert.bert.config.vocab_size
        too_big = max((int(t.max()) for t in corpus.tokens if len(t)), default=0)
        if too_big >= vocab_size:
            raise TrainingError(f"styletts2_plbert_pretrain: the frontend makes token id {too_big}, but "
                                f"model.plbert.vocab_size is {vocab_size}")
        n = len(corpus.tokens)
        if n == 0:
            raise TrainingError(f"styletts2_plbert_pretrain: the corpus has no usable sentence "
                                f"({corpus.bad_lines} bad or empty lines)")
        n_val = min(n - 1, round(self.val_fraction * n))
        size = model.plbert.heads.word_predictor.out_features
        if corpus.bad_lines:
            logger.warning("PL-BERT corpus: %d bad or empty lines skipped", corpus.bad_lines)
        logger.info("PL-BERT corpus: %d items (%d for validation), %d distinct words; the %d-word vocabulary "
                    "covers %.1f %% of word occurrences", n, n_val, len(corpus.vocabulary), size,
                    100 * corpus.coverage(size))
        train = PLBertTextDataset(corpus, list(range(n - n_val)), size)
        val = PLBertTextDataset(corpus, list(range(n - n_val, n)), size) if n_val else None
        return StageData(train, val, collate_text, self.batch_size)

    def parameter_groups(self, model: nn.Module, config: Any) -> dict[str, dict[str, Any]]:
        params = [*model.plbert.bert.parameters(), *model.plbert.heads.parameters()]
        return {"plbert": {"params": params, "lr": self.lr, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}}

    def losses(self, model: nn.Module, batch: TextBatch, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Mask, predict, score: → {loss, mlm, p2w, mlm_acc, p2w_acc}."""
        inputs, chosen = mask_words(batch, self.mask_id, **self.masking, generator=generator)
        valid = batch.words != IGNORE
        hidden = model.plbert(inputs, attention_mask=valid.long())
        token_logits, word_logits = model.plbert.heads(hidden)
        words, targets = word_logits[valid], batch.words[valid]
        p2w = F.cross_entropy(words, targets)
        terms = {"p2w": p2w, "p2w_acc": (words.argmax(-1) == targets).float().mean()}
        if chosen.any():
            masked, originals = token_logits[chosen], batch.tokens[chosen]
            terms["mlm"] = F.cross_entropy(masked, originals)
            terms["mlm_acc"] = (masked.argmax(-1) == originals).float().mean()
        else:  # no word drawn in this batch: nothing to score (keeps the graph for the loop's backward)
            terms["mlm"] = token_logits.sum() * 0.0
        return {"loss": terms["mlm"] + p2w, **terms}

    def train_step(self, model: nn.Module, batch: TextBatch, ctx: StepContext) -> dict[str, Tensor]:
        return self.losses(model, batch)

    def validation_step(self, model: nn.Module, batch: TextBatch, epoch: int) -> dict[str, Tensor]:
        # The same masks every epoch: a generator seeded from the batch's content.
        seed = int((batch.tokens * torch.arange(1, batch.tokens.shape[1] + 1, device=batch.tokens.device)).sum())
        generator = torch.Generator(device=batch.tokens.device).manual_seed(seed)
        return {k: v.detach() for k, v in self.losses(model, batch, generator).items()}
