"""``mlm``: contextual substitution by a masked LM (Kobayashi 2018; Wu et al. 2019)."""

from __future__ import annotations

import random

import torch

from study.augment.models import BATCH, load_masked_lm, max_length, torch_rng
from study.augment.operations import Words, n_changed
from study.augment.params import Fraction, ModelName, PolicyParams, PositiveInt
from study.augment.policy import AUGMENTATIONS, Augmentation
from study.core.device import select_device
from study.tasks.spec import Split

# One masked text field of one copy: (copy, field, words, masked positions).
Job = tuple[int, int, Words, list[int]]


class MlmParams(PolicyParams):
    """``model``: the masked LM; ``p``: the fraction of a text's words masked (at least one);
    ``n_aug``: copies per example; ``top_k``: how many of the model's best words to sample from."""

    model: ModelName = "bert-base-uncased"
    p: Fraction = 0.15
    n_aug: PositiveInt = 1
    top_k: PositiveInt = 10


def _is_whole_word(tokenizer, token_id: int) -> str | None:
    """The text of a vocabulary entry when it can stand as a word, else None (special tokens,
    WordPiece continuations ``##x``, punctuation-only pieces)."""
    if token_id in tokenizer.all_special_ids:
        return None
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if piece.startswith("##"):
        return None
    word = tokenizer.decode([token_id]).strip()
    return word if word and any(c.isalnum() for c in word) else None


def _draw_masks(split: Split, rng: random.Random, params: dict) -> tuple[list[Job], list, list]:
    """The masked positions of every copy's non-empty fields (drawn in example, copy, field
    order), the copies (lists of fields, filled in later) and their labels."""
    jobs: list[Job] = []
    copies: list[list[str]] = []
    labels = []
    for example, label in zip(split.texts, split.labels, strict=True):
        for _ in range(params["n_aug"]):
            fields = list(example)
            for f, text in enumerate(fields):
                words = text.split()
                if words:
                    n = min(n_changed(words, params["p"]), len(words))
                    jobs.append((len(copies), f, words, sorted(rng.sample(range(len(words)), n))))
            copies.append(fields)
            labels.append(label)
    return jobs, copies, labels


def _candidates(tokenizer, probs: torch.Tensor, word: str, top_k: int) -> tuple[list, list]:
    """The ``top_k`` most probable whole words at one position (``probs``: (V,)) other than
    ``word``, and their probabilities."""
    width = min(probs.shape[-1], top_k + 64)  # room for the excluded entries
    top_p, top_i = probs.topk(width)
    options, weights = [], []
    for pr, i in zip(top_p.tolist(), top_i.tolist(), strict=True):
        candidate = _is_whole_word(tokenizer, i)
        if candidate is not None and candidate.lower() != word.lower():
            options.append(candidate)
            weights.append(pr)
            if len(options) == top_k:
                break
    return options, weights


def _fill_batch(tokenizer, model, batch: list[Job], copies: list, rng: random.Random,
                top_k: int) -> tuple[int, int]:
    """Run the masked LM once over a batch of masked fields and write each field's new words
    into ``copies``; returns (words replaced, masked words kept)."""
    device = next(model.parameters()).device
    masked = []
    for _, _, words, positions in batch:
        at = set(positions)
        masked.append(" ".join(tokenizer.mask_token if i in at else w for i, w in enumerate(words)))
    enc = tokenizer(masked, padding=True, truncation=True, max_length=max_length(tokenizer, model),
                    return_tensors="pt").to(device)
    with torch.no_grad():
        probs = model(**enc).logits.float().softmax(-1)  # (B, T, V)
    replaced = kept = 0
    for b, (c, f, words, positions) in enumerate(batch):
        mask_at = (enc["input_ids"][b] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        if len(mask_at) > len(positions):  # the text itself holds a mask token: leave it
            kept += len(positions)
            continue
        out = list(words)
        for position, t in zip(positions, mask_at, strict=False):
            options, weights = _candidates(tokenizer, probs[b, t], words[position], top_k)
            if options:
                out[position] = rng.choices(options, weights=weights)[0]
                replaced += 1
            else:
                kept += 1
        kept += len(positions) - min(len(positions), len(mask_at))  # truncated away
        copies[c][f] = " ".join(out)
    return replaced, kept


def mlm_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """Contextual augmentation by a masked LM (Kobayashi 2018, "Contextual Augmentation: Data
    Augmentation by Words with Paradigmatic Relations"; Wu et al. 2019, "Conditional BERT
    Contextual Augmentation"), as Distiller's ``contextual`` augmenter (nlpaug
    ``ContextualWordEmbsAug``) uses it.

    Each copy masks ``n = max(1, int(p * len(words)))`` distinct random words of a whitespace-split
    text (each word one mask token), runs the masked LM ``model`` once over the masked text, and
    replaces each masked word by a word drawn from the model's ``top_k`` most probable whole-word
    tokens at that position, weighted by their probability (the original word, special tokens and
    ``##`` pieces excluded). A position with no such candidate, or cut off by the model's maximum
    length, keeps its word. Differences from the papers: no label conditioning (Wu et al.
    condition BERT on the label; Kobayashi's LM is label-conditional too), all masks of a copy are
    predicted in one pass rather than one word at a time, and sampling is from the top ``top_k``
    rather than the full distribution at a temperature.

    Texts are batched ``BATCH`` at a time; on a GPU the logits (and so, rarely, a draw) can differ
    from the CPU's. Metadata: ``replaced`` (words replaced), ``kept`` (masked words kept).
    """
    with torch_rng(0):  # loading initialises weights from the global generator: keep it
        tokenizer, model = load_masked_lm(params["model"])
    model.to(select_device())
    jobs, copies, labels = _draw_masks(split, rng, params)
    replaced = kept = 0
    for start in range(0, len(jobs), BATCH):
        r, k = _fill_batch(tokenizer, model, jobs[start : start + BATCH], copies, rng,
                           params["top_k"])
        replaced, kept = replaced + r, kept + k
    texts = [tuple(fields) for fields in copies]
    return Split(texts=texts, labels=labels), {"replaced": replaced, "kept": kept}


AUGMENTATIONS.add("mlm", Augmentation("mlm", mlm_copies, MlmParams, version="1",
                                      models=("model",)))
