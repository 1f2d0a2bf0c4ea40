"""``backtranslation``: a round trip through a pivot language with two translation models
(Sennrich et al. 2016; Edunov et al. 2018)."""

from __future__ import annotations

import random

import torch

from study.augment.models import BATCH, load_seq2seq, max_length, torch_rng
from study.augment.params import ModelName, PolicyParams, PositiveInt, Temperature
from study.augment.policy import AUGMENTATIONS, Augmentation
from study.core.device import select_device
from study.tasks.spec import Split


class BacktranslationParams(PolicyParams):
    """``forward_model`` translates into the pivot language, ``backward_model`` back; ``n_aug``:
    copies per example; ``temperature``: of the sampling softmax, both directions."""

    forward_model: ModelName = "Helsinki-NLP/opus-mt-en-de"
    backward_model: ModelName = "Helsinki-NLP/opus-mt-de-en"
    n_aug: PositiveInt = 1
    temperature: Temperature = 1.0


def _translate(tokenizer, model, texts: list[str], n: int, temperature: float) -> list[str]:
    """``n`` sampled translations of each text (grouped by text), with transformers' generate."""
    device = select_device()
    model.to(device)
    limit = max_length(tokenizer, model)
    out: list[str] = []
    for start in range(0, len(texts), BATCH):
        enc = tokenizer(texts[start : start + BATCH], padding=True, truncation=True,
                        max_length=limit, return_tensors="pt").to(device)
        # Room for a translation twice as long as the source, within the model's limit.
        new_tokens = min(limit, 2 * enc["input_ids"].shape[1] + 8)
        with torch.no_grad():  # only ids and mask: some tokenizers add token_type_ids
            ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 do_sample=True, temperature=temperature, top_k=0,
                                 top_p=1.0, num_beams=1, num_return_sequences=n,
                                 max_new_tokens=new_tokens)  # (B * n, T')
        out.extend(t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


def backtranslation_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """Back-translation (Sennrich et al. 2016, "Improving Neural Machine Translation Models with
    Monolingual Data"; used for augmentation of classification data by Xie et al. 2020, UDA, and by
    Distiller's ``back_translation`` augmenter): translate each text field to a pivot language
    with ``forward_model`` and back with ``backward_model``.

    Both directions sample (Edunov et al. 2018, "Understanding Back-Translation at Scale", find
    unrestricted sampling a better source of synthetic data than beam search): softmax at
    ``temperature``, no top-k/top-p cut, one beam. The ``n_aug`` copies of a text are ``n_aug``
    sampled pivots, each translated back once. Generation is transformers' ``generate``, seeded
    from ``rng`` inside ``torch.random.fork_rng`` (the global torch generator is left alone).
    A round trip that comes back empty keeps the original field (counted in ``empty_kept``).
    Metadata: ``translated`` (fields round-tripped), ``empty_kept``.
    """
    n = params["n_aug"]
    sources = [text for example in split.texts for text in example if text.strip()]
    with torch_rng(0):  # loading initialises weights from the global generator: keep it
        forward = load_seq2seq(params["forward_model"], "forward_model")
        backward = load_seq2seq(params["backward_model"], "backward_model")
    with torch_rng(rng.getrandbits(63)):
        pivots = _translate(*forward, sources, n, params["temperature"]) if sources else []
        backs = _translate(*backward, pivots, 1, params["temperature"]) if pivots else []

    texts: list[tuple[str, ...]] = []
    labels = []
    empty_kept = 0
    k = 0  # index of the next source text
    for example, label in zip(split.texts, split.labels, strict=True):
        rows: list[list[str]] = [[] for _ in range(n)]
        for text in example:
            if not text.strip():
                for row in rows:
                    row.append(text)
                continue
            for c in range(n):
                back = backs[k * n + c]
                empty_kept += not back
                rows[c].append(back or text)
            k += 1
        texts.extend(tuple(row) for row in rows)
        labels.extend([label] * n)
    return Split(texts=texts, labels=labels), {"translated": len(backs), "empty_kept": empty_kept}


AUGMENTATIONS.add("backtranslation", Augmentation(
    "backtranslation", backtranslation_copies, BacktranslationParams, version="1",
    models=("forward_model", "backward_model")))
