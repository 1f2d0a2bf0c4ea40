"""Task types (study/tasktypes): label alignment, QA windows, the official metrics on hand-computed
examples, KD over positions, and a user's NER/QA YAML errors that name file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from study.core.errors import StudyConfigError
from study.execution.teacher import load_tokenizer
from study.objectives.prediction import prediction_loss
from study.tasks import catalogue as data
from study.tasks.catalogue import resolve_dataset
from study.tasks.spec import Split
from study.tasks.types import get_type, names
from study.tasktypes import _squad_v1 as squad
from study.tasktypes.extractive_qa import (
    Windows,
    answer_positions,
    best_span,
    postprocess,
    read_squad,
)
from study.tasktypes.token_classification import (
    IGNORE,
    TokenizedWords,
    align_labels,
    entity_scores,
    read_conll,
)

KD = {"distance": "kl", "teacher_temperature": 2.0, "student_temperature": 2.0, "alpha": 0.5}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("all-MiniLM-L6-v2")


@pytest.fixture(autouse=True)
def _own_tasks(monkeypatch):
    monkeypatch.setattr(data, "TASKS", dict(data.TASKS))


# --------------------------------------------------------------------------- registry

def test_registry_names_heads_and_did_you_mean():
    assert set(names()) == {"classification", "regression", "token_classification", "extractive_qa"}
    assert get_type("classification").auto_class is AutoModelForSequenceClassification
    assert get_type("regression").auto_class is AutoModelForSequenceClassification
    assert get_type("token_classification").auto_class is AutoModelForTokenClassification
    assert get_type("extractive_qa").auto_class is AutoModelForQuestionAnswering
    with pytest.raises(StudyConfigError, match="Did you mean 'token_classification'"):
        get_type("token_clasification")


def test_shipped_new_tasks_declare_type_metrics_and_score():
    conll, wnut, squad_dev = data.TASKS["conll2003"], data.TASKS["wnut17"], data.TASKS["squad-devsplit"]
    assert conll.task_type == wnut.task_type == "token_classification"
    assert (conll.text_fields, conll.label_field, wnut.label_field) == ((0,), 3, 1)
    assert conll.num_labels == 9 and wnut.num_labels == 13
    assert conll.score == ("f1",) and squad_dev.score == ("f1",) and squad_dev.metrics == ("exact_match", "f1")
    assert squad_dev.split.group_by == "title" and squad_dev.split.seed == 0
    assert dict(squad_dev.split.fractions) == {"dev": 0.3, "train": 0.7}
    assert data.TASKS["squad"].hub.path == "rajpurkar/squad" and data.TASKS["squad"].split_names == ("train", "dev")


# --------------------------------------------------------------------------- token classification

def test_labels_sit_on_the_first_sub_token(tokenizer):
    words = ("Johanson", "lives", "in", "Reykjavik")
    split = Split(texts=[words], labels=[[1, 0, 0, 5]])
    ds = TokenizedWords(split, tokenizer, 64)
    tokens = tokenizer.convert_ids_to_tokens(ds[0]["input_ids"])
    labels = ds[0]["labels"]
    # [CLS] johan ##son lives in rey ##k ##ja ##vik [SEP] (the exact pieces do not matter)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and labels[0] == labels[-1] == IGNORE
    firsts = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]") and not t.startswith("##")]
    assert [labels[i] for i in firsts] == [1, 0, 0, 5]
    assert all(labels[i] == IGNORE for i in range(len(tokens)) if i not in firsts)
    assert any(t.startswith("##") for t in tokens)  # the example does split words


def test_align_labels_by_hand():
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [3, 0, 7]) == [IGNORE, 3, IGNORE, 0, 7, IGNORE, IGNORE, IGNORE]


def test_conll_reader_handles_docstart_blank_lines_and_both_column_layouts():
    four = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    two = "@paul\tO\nLondon\tB-location\n\n\nhi\tO\n"
    s4 = read_conll(four, "f", 0, 3, ("O", "B-ORG", "B-PER"))
    assert [(w, t) for w, t, _ in s4] == [(("EU", "rejects"), [1, 0]), (("Peter",), [2])]
    assert [line for *_, line in s4] == [3, 6]
    s2 = read_conll(two, "f", 0, 1, ("O", "B-location"))
    assert [(w, t) for w, t, _ in s2] == [(("@paul", "London"), [0, 1]), (("hi",), [0])]


def test_entity_f1_precision_recall_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    # 3 gold entities (PER, LOC, ORG), 3 predicted (PER, ORG, ORG); right: PER and the 2nd ORG
    assert entity_scores(gold, pred) == pytest.approx({"f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3})
    # a span with the wrong boundary is wrong: PER over 1 word instead of 2
    assert entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert entity_scores([["B-PER", "O"]], [["B-PER", "O"]])["f1"] == 1.0


# --------------------------------------------------------------------------- extractive QA

def test_squad_normalisation_em_and_f1_by_hand():
    assert squad.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad.normalize_answer("an apple, a pear") == "apple pear"
    assert squad.exact_match_score("the Broncos", "Broncos.") == 1.0
    # "big cat" vs "cat": 1 common token, precision 1/2, recall 1 -> F1 2/3
    assert squad.f1_score("the big cat", "a cat") == pytest.approx(2 / 3)
    assert squad.f1_score("dog", "cat") == 0.0
    out = squad.squad_scores(["the big cat", "Paris"], [["a cat", "big cat"], ["London"]])
    assert out == pytest.approx({"exact_match": 0.5, "f1": 0.5})  # max over references: 1.0 and 0.0


def test_answer_positions_by_hand():
    offsets = [None, None, None, (0, 3), (4, 9), (10, 12), (12, 15), None]
    assert answer_positions(offsets, 4, 9) == (4, 4)
    assert answer_positions(offsets, 10, 15) == (5, 6)  # a word cut into two pieces
    assert answer_positions(offsets, 20, 25) == (0, 0)  # not in this window: CLS


def _qa_split():
    context = " ".join(f"w{i}" for i in range(60)) + " The answer is Ada Lovelace here . " + " ".join(
        f"v{i}" for i in range(60))
    start = context.index("Ada Lovelace")
    return Split(texts=[("Who is it?", context)], labels=[{"id": "q1", "texts": ["Ada Lovelace"], "starts": [start]}])


def test_windows_map_answers_to_tokens_and_back_to_text(tokenizer):
    split = _qa_split()
    ds = Windows(split, tokenizer, max_length=48, doc_stride=64)
    assert ds.stride == 12 and len(ds) > 2 and set(ds.example) == {0}
    context = split.texts[0][1]
    with_answer = [j for j in range(len(ds)) if ds[j]["start_positions"] != 0]
    without = [j for j in range(len(ds)) if ds[j]["start_positions"] == 0]
    assert with_answer and without
    for j in with_answer:
        f, off = ds[j], ds.offsets[j]
        assert context[off[f["start_positions"]][0]:off[f["end_positions"]][1]] == "Ada Lovelace"
    for j in without:
        assert ds[j]["end_positions"] == 0
    for j in range(len(ds)):  # the KD positions: CLS and the context tokens
        mask, seq = ds[j]["context_mask"], [o is not None for o in ds.offsets[j]]
        assert mask[0] == 1 and all(m == (1 if (s or t == 0) else 0) for t, (m, s) in enumerate(zip(mask, seq)))
    # perfect logits give the answer text back; logits that point at CLS alone give ""
    starts, ends = [], []
    for j in range(len(ds)):
        n = len(ds.offsets[j])
        s, e = np.zeros(n), np.zeros(n)
        s[ds[j]["start_positions"]] = e[ds[j]["end_positions"]] = 10.0
        starts.append(s)
        ends.append(e)
    assert postprocess(ds, starts, ends) == ["Ada Lovelace"]
    assert best_span(np.array([5.0, 0, 0]), np.array([5.0, 0, 0]), [None, None, None], 20, 30) is None


def test_squad_reader_and_its_errors(tmp_path):
    good = {"data": [{"title": "T", "paragraphs": [{"context": "Ada wrote notes.", "qas": [
        {"id": "a1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}]}
    rows = read_squad(json.dumps(good, indent=1), "f")
    assert rows == [("Who?", "Ada wrote notes.", {"id": "a1", "texts": ["Ada"], "starts": [0]}, "T")]
    bad = json.loads(json.dumps(good))
    bad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 4
    text = json.dumps(bad, indent=1)
    line = text[:text.index('"a1"')].count("\n") + 1
    with pytest.raises(StudyConfigError, match=rf"f line {line}: question 'a1': answer_start 4 does not point"):
        read_squad(text, "f")
    with pytest.raises(StudyConfigError, match="f line 2: not valid JSON"):
        read_squad('{"data":\n [,]}', "f")


# --------------------------------------------------------------------------- KD over positions

def test_token_kd_reads_labelled_positions_only():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    labels = torch.tensor([[IGNORE, 1, IGNORE, 2, IGNORE], [IGNORE, 0, 0, IGNORE, IGNORE]])
    keep = labels != IGNORE
    out = prediction_loss(s, labels, t, KD, "token_classification", keep)
    s2, t2 = s.clone(), t.clone()
    s2[~keep], t2[~keep] = 99.0, -99.0
    out2 = prediction_loss(s2, labels, t2, KD, "token_classification", keep)
    assert torch.allclose(out["loss"], out2["loss"]) and torch.allclose(out["loss_kd"], out2["loss_kd"])
    # the same as sequence classification over the (P, C) gathered rows
    ref = prediction_loss(s[keep], labels[keep], t[keep], KD, "classification")
    assert torch.allclose(out["loss"], ref["loss"])
    assert prediction_loss(s, labels, s, KD, "token_classification", keep)["loss_kd"].abs() < 1e-6
    with pytest.raises(ValueError, match="positions"):
        prediction_loss(s, labels, t, KD, "token_classification")


@pytest.mark.parametrize("distance", ["kl", "soft_ce", "mse"])
def test_span_kd_masks_positions_outside_the_context(distance):
    params = {**KD, "distance": distance}
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 6, 2, generator=g), torch.randn(2, 6, 2, generator=g)
    targets = torch.tensor([[3, 4], [0, 0]])
    keep = torch.tensor([[1, 0, 0, 1, 1, 1], [1, 0, 0, 1, 1, 0]]).bool()
    out = prediction_loss(s, targets, t, params, "extractive_qa", keep)
    t2 = t.clone()
    t2[~keep] = 50.0  # what the teacher says outside the context does not count
    assert torch.allclose(out["loss_kd"], prediction_loss(s, targets, t2, params, "extractive_qa", keep)["loss_kd"])
    if distance != "soft_ce":  # soft_ce is offset by the teacher's entropy
        assert prediction_loss(s, targets, s, params, "extractive_qa", keep)["loss_kd"].abs() < 1e-6
    # loss_kd is the mean of the start and end terms; gold is (CE(start) + CE(end)) / 2
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(out["loss_ce"], (ce(s[..., 0], targets[:, 0]) + ce(s[..., 1], targets[:, 1])) / 2)


# --------------------------------------------------------------------------- a user's own NER / QA data

def _user_ner(tmp_path, train: str, dev: str = "Ada B-PER\n\n") -> str:
    (tmp_path / "train.conll").write_text(train)
    (tmp_path / "dev.conll").write_text(dev)
    (tmp_path / "ner.yaml").write_text(
        "name: myner\nversion: 1\ntask_type: token_classification\nformat: conll\n"
        "files: {train: train.conll, dev: dev.conll}\ntext_fields: [0]\nlabel_field: 1\n"
        "labels: [O, B-PER, I-PER]\nmetrics: [f1, precision, recall]\nscore: [f1]\n")
    return str(tmp_path / "ner.yaml")


def test_a_users_ner_yaml_resolves_with_checksums(tmp_path):
    dataset_id, spec = resolve_dataset(_user_ner(tmp_path, "Ada B-PER\nLovelace I-PER\nwrote O\n"))
    assert dataset_id.startswith("myner-") and all(e.sha256 for _, es in spec.files for e in es)
    assert data.load_task(dataset_id, None)["train"].labels == [[1, 2, 0]]


@pytest.mark.parametrize("train, message", [
    ("Ada B-PER\nwrote\n", r"train.conll' line 2: 1 column\(s\) in 'wrote'; expected at least 2"),
    ("Ada B-PER\n\nwrote B-ORG\n", r"train.conll' line 3: tag 'B-ORG' is not one of the declared labels"),
    ("", r"train.conll' is empty"),
])
def test_a_users_bad_ner_file_names_file_and_line(tmp_path, train, message):
    with pytest.raises(StudyConfigError, match=message):
        resolve_dataset(_user_ner(tmp_path, train))


def test_a_users_missing_file_and_bad_metric_are_named(tmp_path):
    path = _user_ner(tmp_path, "Ada B-PER\n")
    (tmp_path / "dev.conll").unlink()
    with pytest.raises(StudyConfigError, match=r"dev.conll' \(files.dev of task file .*\) does not exist"):
        resolve_dataset(path)
    (tmp_path / "dev.conll").write_text("Ada B-PER\n")
    (tmp_path / "ner.yaml").write_text((tmp_path / "ner.yaml").read_text().replace("metrics: [f1,", "metrics: [accuracy, f1,"))
    with pytest.raises(StudyConfigError, match="unknown metric 'accuracy' for task_type token_classification"):
        resolve_dataset(path)


def test_a_users_squad_file_with_a_bad_answer_names_line(tmp_path):
    good = {"data": [{"title": "T", "paragraphs": [{"context": "Ada wrote notes.", "qas": [
        {"id": "a1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]},
        {"id": "a2", "question": "What?", "answers": [{"text": "notes", "answer_start": 3}]}]}]}]}
    (tmp_path / "train.json").write_text(json.dumps(good, indent=1))
    (tmp_path / "qa.yaml").write_text(
        "name: myqa\nversion: 1\ntask_type: extractive_qa\nformat: squad_json\n"
        "files: {train: train.json, dev: train.json}\nmetrics: [exact_match, f1]\nscore: [f1]\n")
    text = (tmp_path / "train.json").read_text()
    line = text[:text.index('"a2"')].count("\n") + 1
    with pytest.raises(StudyConfigError, match=rf"train.json' line {line}: question 'a2': answer_start 3"):
        resolve_dataset(str(tmp_path / "qa.yaml"))


def test_augmentation_and_mixup_are_refused_on_ner_and_qa():
    from study.grid import parse_grid

    for dataset, what in (("conll2003", "the word tags"), ("squad-devsplit", "the answer spans")):
        grid = parse_grid({"name": "g", "axes": {"dataset": [dataset], "student": ["L2_H384"],
                                                "objective": ["logit_kd"], "augmentation": ["eda"]}})
        with pytest.raises(StudyConfigError, match=rf"augmentation 'eda' .*{what}.*use augmentation: none"):
            grid.validate()
        grid = parse_grid({"name": "g", "axes": {"dataset": [dataset], "student": ["L2_H384"],
                                                "objective": ["logit_kd"]}, "mixup": {"alpha": 0.4}})
        with pytest.raises(StudyConfigError, match="mix-up interpolates whole inputs"):
            grid.validate()


# --------------------------------------------------------------------------- the teacher-logit cache

@pytest.mark.parametrize("task_type", ["token_classification", "extractive_qa"])
def test_teacher_logit_cache_is_padded_per_feature(tokenizer, task_type):
    from transformers import BertConfig

    from study.training.trainer import teacher_logits

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=3 if task_type == "token_classification" else 2)
    ttype = get_type(task_type)
    model = ttype.auto_class.from_config(cfg).eval()
    if task_type == "token_classification":
        split = Split(texts=[("Ada",), ("Ada", "Lovelace", "wrote", "notes"), ("in", "London")],
                      labels=[[1], [1, 2, 0, 0], [0, 1]])
        ds = TokenizedWords(split, tokenizer, 32)
    else:
        ds = Windows(_qa_split(), tokenizer, max_length=48, doc_stride=64)
    cache = teacher_logits(model, ds, tokenizer, torch.device("cpu"), batch_size=2)
    t_max = max(ds.lengths)
    assert cache.shape == (len(ds), t_max, 3 if task_type == "token_classification" else 2)
    for i in range(len(ds)):
        n = ds.lengths[i]
        feat = {k: torch.tensor([ds[i][k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            alone = ttype.logits(model(**feat))[0]  # (T_i, C): no padding at all
        assert torch.allclose(cache[i, :n], alone, atol=1e-5)
        assert (cache[i, n:] == 0).all()
