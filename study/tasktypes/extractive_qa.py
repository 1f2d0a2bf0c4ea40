"""Extractive question answering (SQuAD v1.1): predict the answer's start and end token.

Files (``format: squad_json``): the official JSON, ``data[].paragraphs[].{context,
qas[].{id, question, answers[].{text, answer_start}}}``; an example is one question with its
context and reference answers (``group_by: title`` splits by article). The hub form reads the
``rajpurkar/squad`` columns (id, title, context, question, answers).

Windows, as Hugging Face's ``run_qa.py`` makes them: question and context are tokenised together
(``truncation="only_second"``), a long context is cut into windows of ``max_length`` tokens that
overlap by ``min(doc_stride, max_length // 4)`` tokens; each window's answer start/end token is
where the first reference answer's characters fall, or the CLS token (0) when the answer is not
wholly inside the window. ``offset_mapping`` maps context tokens back to characters.

Prediction: per question, over all its windows, the best ``start_logit + end_logit`` among the
``n_best`` top starts and ends with start <= end, both in the context, at most
``max_answer_length`` tokens; the answer is the context's characters between their offsets.
Metrics: SQuAD v1.1's exact match and F1 (``_squad_v1.py``), as fractions.

Prediction-layer KD compares the start and the end distributions over a window's T tokens,
(B, T) each, with every position outside the context masked (``KDInputs.positions``); CLS stays
in, since it is where a window without the answer points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import model_validator
from transformers import AutoModelForQuestionAnswering

from study.core.device import autocast
from study.core.errors import StudyConfigError
from study.tasks.formats import read_text
from study.tasks.hub import load_hub
from study.tasks.schema import TaskDoc, validate_task
from study.tasks.spec import Split, TaskSpec
from study.tasks.types import FeatureDataset, TaskType, register
from study.tasktypes import _squad_v1

DEFAULTS = {"doc_stride": 128, "max_answer_length": 30, "n_best": 20}


class QADoc(TaskDoc):
    """An extractive-QA task's YAML: ``format: squad_json`` and the decoding settings."""

    doc_stride: Any = DEFAULTS["doc_stride"]
    max_answer_length: Any = DEFAULTS["max_answer_length"]
    n_best: Any = DEFAULTS["n_best"]

    @model_validator(mode="after")
    def _squad(self):
        if self.format != "squad_json":
            raise ValueError(f"format {self.format!r}: extractive_qa reads format: squad_json.")
        for key in DEFAULTS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}.")
        if self.split is not None and self.split.group_by not in (None, "title"):
            raise ValueError(f"split.group_by {self.split.group_by!r}: a squad_json file groups by title only.")
        return self


def _line_of(text: str, needle: str, default: int = 1) -> int:
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else default


def read_squad(text: str, where: str):
    """Questions of a SQuAD v1.1 JSON text: ``[(question, context, label, title)]`` with label
    ``{"id", "texts", "starts"}`` (the reference answers).

    Raises:
        StudyConfigError: not JSON, a missing field, no answers, or an ``answer_start`` that does
            not point at its answer's text (names ``where``, the line and what is expected).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudyConfigError(f"{where} line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                               "expected SQuAD v1.1's {\"data\": [...]}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise StudyConfigError(f"{where} line 1: expected a JSON object with a list 'data' (SQuAD v1.1).")
    out = []
    for a, article in enumerate(doc["data"]):
        title = article.get("title", str(a)) if isinstance(article, dict) else None
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise StudyConfigError(f"{where} line {_line_of(text, str(title))}: data[{a}] has no list "
                                   "'paragraphs'; expected {title, paragraphs: [{context, qas}]}.")
        for p, par in enumerate(paragraphs):
            at = f"data[{a}].paragraphs[{p}]"
            if not isinstance(par, dict) or not isinstance(par.get("context"), str) or not isinstance(par.get("qas"), list):
                raise StudyConfigError(f"{where} line {_line_of(text, str(title))}: {at} needs a string 'context' "
                                       "and a list 'qas'.")
            context = par["context"]
            for q, qa in enumerate(par["qas"]):
                qat = f"{at}.qas[{q}]"
                qid = qa.get("id") if isinstance(qa, dict) else None

                def line() -> int:  # only on an error: a search of the whole text per question is slow
                    return _line_of(text, json.dumps(qid)) if qid is not None else _line_of(text, json.dumps(context)[1:40])

                if not isinstance(qa, dict) or not isinstance(qid, str) or not isinstance(qa.get("question"), str) \
                        or not qa["question"].strip():
                    raise StudyConfigError(f"{where} line {line()}: {qat} needs a string 'id' and a non-empty "
                                           "'question'.")
                answers = qa.get("answers")
                if not isinstance(answers, list) or not answers:
                    raise StudyConfigError(f"{where} line {line()}: question {qid!r} ({qat}) has no answers; "
                                           "expected answers: [{text, answer_start}, ...].")
                texts, starts = [], []
                for ans in answers:
                    ok = isinstance(ans, dict) and isinstance(ans.get("text"), str) and ans["text"] \
                        and isinstance(ans.get("answer_start"), int) and not isinstance(ans["answer_start"], bool)
                    if not ok:
                        raise StudyConfigError(f"{where} line {line()}: question {qid!r} has an answer {ans!r}; "
                                               "expected {text: non-empty string, answer_start: int}.")
                    s = ans["answer_start"]
                    if context[s:s + len(ans["text"])] != ans["text"]:
                        raise StudyConfigError(f"{where} line {line()}: question {qid!r}: answer_start {s} does not "
                                               f"point at its answer {ans['text'][:40]!r} in the context.")
                    texts.append(ans["text"])
                    starts.append(s)
                out.append((qa["question"], context, {"id": qid, "texts": texts, "starts": starts}, str(title)))
    if not out:
        raise StudyConfigError(f"{where} holds no questions; every split needs at least one.")
    return out


class Windows(FeatureDataset):
    """Windows of (question, context) pairs (see the module docstring). Per window, ``example``
    is the question's row in the split and ``offsets`` the (start, end) characters of each token,
    None outside the context."""

    def __init__(self, split, tokenizer, max_length: int, doc_stride: int):
        self.split = split
        self.task_type = "extractive_qa"
        questions = [t[0].lstrip() for t in split.texts]
        contexts = [t[1] for t in split.texts]
        self.stride = min(doc_stride, max_length // 4)
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=self.stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
        self.features, self.example, self.offsets = [], [], []
        keys = [k for k in enc.keys() if k not in ("offset_mapping", "overflow_to_sample_mapping")]
        for j, ex in enumerate(enc["overflow_to_sample_mapping"]):
            seq = enc.sequence_ids(j)
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][j], seq)]
            label = split.labels[ex]
            start, end = answer_positions(offsets, label["starts"][0], label["starts"][0] + len(label["texts"][0]))
            feat = {k: enc[k][j] for k in keys}
            feat.update(start_positions=start, end_positions=end, idx=j,
                        context_mask=[1 if (s == 1 or t == 0) else 0 for t, s in enumerate(seq)])
            self.features.append(feat)
            self.example.append(ex)
            self.offsets.append(offsets)


def answer_positions(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """(start token, end token) of the characters [start_char, end_char) in a window whose
    context tokens have ``offsets`` (None elsewhere); (0, 0), the CLS token, when the answer is
    not wholly inside the window."""
    ctx = [t for t, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return 0, 0
    start = next(t for t in ctx if offsets[t][1] > start_char)
    end = next(t for t in reversed(ctx) if offsets[t][0] < end_char)
    return start, end


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, offsets: list, n_best: int,
              max_answer_length: int) -> tuple[float, int, int] | None:
    """(score, start char, end char) of the best span of one window, or None when no valid span:
    among the ``n_best`` highest start and end logits, start <= end within ``max_answer_length``
    tokens and both in the context (offsets not None); score = start_logit + end_logit."""
    best = None
    for s in np.argsort(start_logits)[::-1][:n_best]:
        for e in np.argsort(end_logits)[::-1][:n_best]:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def postprocess(windows: Windows, start_logits: list[np.ndarray], end_logits: list[np.ndarray],
                n_best: int = 20, max_answer_length: int = 30) -> list[str]:
    """One answer text per question of ``windows.split``: the best span over its windows ("" when
    none is valid). ``start_logits[j]``/``end_logits[j]``: window j's logits, (T_j,) each."""
    best: dict[int, tuple[float, int, int]] = {}
    for j, ex in enumerate(windows.example):
        span = best_span(start_logits[j], end_logits[j], windows.offsets[j], n_best, max_answer_length)
        if span is not None and (ex not in best or span[0] > best[ex][0]):
            best[ex] = span
    out = []
    for ex, (_, context) in enumerate(windows.split.texts):
        out.append(context[best[ex][1]:best[ex][2]] if ex in best else "")
    return out


@register("extractive_qa")
class ExtractiveQA(TaskType):
    """(question, context) windows -> start and end logits, stacked as (B, T, 2); targets (B, 2)."""

    auto_class = AutoModelForQuestionAnswering
    metrics = ("exact_match", "f1")
    pad_values = {"context_mask": 0}
    labels_bound_to_text = "the answer spans"
    output = "span"
    needs_positions = True

    def num_labels(self, spec) -> int:
        return 2

    def parse(self, doc, where, root):
        d = validate_task(QADoc, doc, where)
        options = {key: getattr(d, key) for key in DEFAULTS} | {"type_version": self.version}
        return TaskSpec(**d.common(where, root), text_fields=("question", "context"), label_field="answers",
                        num_labels=2, hub=d.hub_source(("question", "context")),
                        options=tuple(sorted(options.items())))

    def read_file(self, spec, path, entry, group_by):
        rows = read_squad(read_text(spec, Path(path), entry), f"Data file {str(path)!r}")
        split = Split(texts=[(q, c) for q, c, _, _ in rows], labels=[lab for _, _, lab, _ in rows])
        return split, ([t for *_, t in rows] if group_by else [])

    def read_hub(self, spec):
        try:
            ds = load_hub(spec)
        except StudyConfigError as exc:
            raise StudyConfigError(f"{spec.hub.path!r} could not be loaded from the hub ({exc.__cause__}); offline, "
                                   "use squad-devsplit (a seeded split of the SQuAD v1.1 dev file).") from exc
        out = {}
        for ours, theirs in spec.hub.splits:
            part = ds[theirs]
            labels = [{"id": i, "texts": list(a["text"]), "starts": list(a["answer_start"])}
                      for i, a in zip(part["id"], part["answers"])]
            out[ours] = Split(texts=list(zip(part["question"], part["context"])), labels=labels)
        return out

    def tokenize(self, spec, split, tokenizer, max_length):
        return Windows(split, tokenizer, max_length, spec.option.get("doc_stride", DEFAULTS["doc_stride"]))

    def logits(self, output) -> torch.Tensor:
        return torch.stack([output.start_logits, output.end_logits], dim=-1)  # (B, T, 2)

    def split_batch(self, batch):
        targets = torch.stack([batch.pop("start_positions"), batch.pop("end_positions")], dim=-1)  # (B, 2)
        return targets, batch.pop("context_mask").bool()  # (B, T)

    def dev_labels(self, data) -> list:
        return [lab["texts"] for lab in data.split.labels]

    @torch.no_grad()
    def evaluate(self, model, loader, data, labels, spec, device, precision="fp32"):
        """SQuAD v1.1 EM and F1 over every question of ``data`` and ``loss``: the mean over
        windows of (CE(start) + CE(end)) / 2, nats."""
        model.eval()
        starts: list = [None] * len(data)
        ends: list = [None] * len(data)
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            idx = batch.pop("idx")
            targets, _ = self.split_batch(batch)
            with autocast(device, precision):
                logits = self.logits(model(**batch)).float()  # (B, T, 2)
            ce = torch.nn.functional.cross_entropy
            total += float(ce(logits[..., 0], targets[:, 0], reduction="sum")
                           + ce(logits[..., 1], targets[:, 1], reduction="sum")) / 2
            count += len(idx)
            host = logits.cpu().numpy()
            for row, j in enumerate(idx.tolist()):
                n = len(data.offsets[j])
                starts[j], ends[j] = host[row, :n, 0], host[row, :n, 1]
        opt = {**DEFAULTS, **spec.option}
        answers = postprocess(data, starts, ends, opt["n_best"], opt["max_answer_length"])
        return self.scored(_squad_v1.squad_scores(answers, labels), spec, total, count)

