"""Tasks as YAML: the shipped task files, the offline classification sets on the real files in
/work/shared/data, seeded splits, and a user's own task YAML (bring your own data)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from study.core.errors import StudyConfigError
from study.tasks import catalogue as data
from study.tasks.catalogue import TASKS, get_task, load_task, resolve_dataset
from study.tasks.hub import HUB_DATASET
from study.tasks.metrics import compute_metrics
from study.tasks.spec import Split, SplitRule, TaskSpec
from study.tasks.splits import apply_split
from study.tasks.types import get_type

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (SHARED_DATA / "other").is_dir(), reason=f"shared data not found at {SHARED_DATA}"
)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Each test registers users' tasks in its own copy of TASKS."""
    monkeypatch.setattr(data, "TASKS", dict(data.TASKS))


def manifest_rows() -> dict[str, int]:
    with open(SHARED_DATA / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return {r["file"]: int(r["rows"]) for r in csv.DictReader(f, delimiter="\t")}


def digest(split: Split) -> str:
    return hashlib.sha256(json.dumps([split.texts, split.labels]).encode()).hexdigest()


# --------------------------------------------------------------------------- shipped task files

def test_every_shipped_yaml_is_a_task_with_registered_metrics():
    files = sorted(p.stem for p in data.TASKS_DIR.glob("*.yaml"))
    assert files == sorted(TASKS)
    for name, spec in TASKS.items():
        assert spec.name == name and spec.version in ("1", "2") and spec.folder
        assert all(m in get_type(spec.task_type).metrics for m in spec.metrics), name
        assert set(spec.score) <= set(spec.metrics)
        assert spec.split_names[:2] == ("train", "dev")
        if spec.task_type in ("classification", "token_classification"):
            assert spec.num_labels == len(spec.label_names) >= 2
        elif spec.task_type == "regression":
            assert spec.num_labels == 1 and spec.label_names == ()
        else:
            assert spec.task_type == "extractive_qa" and spec.label_names == ()


def test_shipped_tasks_have_no_paths_or_hashes_of_their_own():
    # A shipped task's id is its name; its files are relative to the data directory.
    for name in TASKS:
        assert resolve_dataset(name) == (name, TASKS[name])
        assert TASKS[name].root is None
        assert all(not Path(e.path).is_absolute() for _, es in TASKS[name].files for e in es)


# The old hand-written loader's output (sha256 of the JSON of [texts, labels]), computed before
# GLUE moved to YAML: the YAML tasks must read every file exactly as it did.
GLUE_BEFORE = {
    "sst2/train": "b162626b4cb746c17ebd36e0f099e18b29665b1f86eaad3f488fd3e33d696ed6",
    "sst2/dev": "9cd29b107c674840bdf6d9a5b1fd9133ae72839f42e86fddbd2dc5d1b9d704cc",
    "cola/train": "4848a312baf2a070c2c7a65b91e4dc6ce66c08a9c153a614eb0784b87134f324",
    "cola/dev": "9f6b080c62b197da8173ea536f9e61d5209ef46551a8863059d54e5d74fa75b5",
    "mrpc/train": "2ce77903710f83c3c1c762881744eddec1ac80c51b6ccc64b1dcf3c98607aa11",
    "mrpc/dev": "373e8100f95d678b36daa26dcf90cb3c66388e11c00a61919f0626a9a5b81651",
    "rte/train": "5f20871fff252027e98fe9dc8fed60bb40e827e746696d9670f5d90530a96494",
    "rte/dev": "f5eb793fdab911bef12fa8d9b805ee3b1899fdcd74a42200d32da3f59e78a388",
    "stsb/train": "5dae2c4f2d02457d56c015ac5dc21c24f05dc81b2634c7c4c8063572e936fb76",
    "stsb/dev": "b77ab3ecb802eb571089df80300856e63f95f15aa21c411b1dae8f80bf237bc1",
    "wnli/train": "5ce7147e73ed0f50e813b64b355f3d7ab834912eba453c0bb0812df743ae5824",
    "wnli/dev": "675797f33c6a7e9b1437930cc20b60ed86d73d5b203f50bdfb36c67d3e745293",
}


@needs_data
@pytest.mark.parametrize("task", ["sst2", "cola", "mrpc", "rte", "stsb", "wnli"])
def test_glue_reads_exactly_as_the_old_loader(task):
    for root in (SHARED_DATA / "glue", SHARED_DATA):  # a GLUE folder, or the data root
        splits = load_task(task, root)
        assert list(splits) == ["train", "dev"]
        for name, split in splits.items():
            assert digest(split) == GLUE_BEFORE[f"{task}/{name}"], (root, name)


def test_glue_spec_fields_as_before():
    # What the grid, runner and teacher read, as the hand-written TASKS had it.
    cola, stsb, mrpc = TASKS["cola"], TASKS["stsb"], TASKS["mrpc"]
    assert (cola.text_fields, cola.label_field, cola.has_header, cola.glue_dir) == ((3,), 1, False, "CoLA")
    assert (stsb.task_type, stsb.num_labels, stsb.metrics, stsb.label_range) == (
        "regression", 1, ("pearson", "spearman"), (0.0, 5.0))
    assert (mrpc.metrics, mrpc.hub_config, mrpc.label_names) == (
        ("f1", "accuracy"), "mrpc", ("not_equivalent", "equivalent"))
    assert TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert mrpc.hub.path == HUB_DATASET and mrpc.hub.text_fields == ("sentence1", "sentence2")


# --------------------------------------------------------------------------- offline sets


@pytest.fixture(scope="module")
def offline() -> dict[str, dict[str, Split]]:
    if not (SHARED_DATA / "other").is_dir():
        pytest.skip("shared data absent")
    return {t: load_task(t, SHARED_DATA) for t in ("sst5", "trec", "mr", "subj", "boolq-devsplit")}


@needs_data
def test_sst5_official_splits(offline):
    rows = manifest_rows()
    sst5 = offline["sst5"]
    assert list(sst5) == ["train", "dev", "test"]
    for split, file in (("train", "sentiment-train"), ("dev", "sentiment-dev"), ("test", "sentiment-test")):
        assert len(sst5[split]) == rows[f"other/SST-5/{file}"]
    assert sst5["dev"].texts[0] == (
        "in his first stab at the form , jacquot takes a slightly anarchic approach that works only sporadically .",)
    assert sst5["dev"].labels[0] == 2
    assert set(sst5["train"].labels) == set(range(5))


@needs_data
def test_trec_coarse_labels_latin1_and_seeded_dev(offline):
    trec = offline["trec"]
    assert list(trec) == ["train", "dev", "test"]
    assert (len(trec["train"]), len(trec["dev"]), len(trec["test"])) == (4907, 545, 500)
    assert trec["test"].texts[0] == ("How far is it from Denver to Aspen ?",)
    assert TASKS["trec"].label_names[trec["test"].labels[0]] == "NUM"
    # train_5500.label line 66 holds byte 0xf0, read as latin-1 (not an error).
    everything = trec["train"].texts + trec["dev"].texts
    assert ("Which city has the oldest relationship as a sister\u00f0city with Los Angeles ?",) in everything
    # train and dev partition the official train file.
    lines = (SHARED_DATA / "other/TREC/train_5500.label").read_bytes().decode("latin-1").splitlines()
    assert Counter(everything) == Counter((line.split(" ", 1)[1],) for line in lines)


@needs_data
@pytest.mark.parametrize("task, files, n_dev", [
    ("mr", ("MR/rt-polarity.neg", "MR/rt-polarity.pos"), 1066),
    ("subj", ("SUBJ/subj.objective", "SUBJ/subj.subjective"), 1000),
])
def test_one_sentence_per_line_sets_split_by_seed(offline, task, files, n_dev):
    rows = manifest_rows()
    splits = offline[task]
    assert list(splits) == ["train", "dev"]
    total = sum(rows[f"other/{f}"] for f in files)
    assert len(splits["dev"]) == n_dev and len(splits["train"]) == total - n_dev
    # Every line of both files is in exactly one part, with its file's label; a NEL byte (\x85,
    # 12 of them in rt-polarity.pos) does not end a line.
    expected = Counter()
    for label, f in enumerate(files):
        text = (SHARED_DATA / "other" / f).read_bytes().decode("latin-1")
        expected.update((line, label) for line in text.split("\n")[:-1])
    got = Counter((t[0], y) for s in splits.values() for t, y in zip(s.texts, s.labels))
    assert got == expected
    assert set(splits["dev"].labels) == {0, 1}
    # Deterministic: read again, the same parts in the same order.
    again = load_task(task, SHARED_DATA)
    assert all(digest(again[s]) == digest(splits[s]) for s in splits)


@needs_data
def test_mr_keeps_the_nel_character_inside_a_sentence(offline):
    mr = offline["mr"]
    hits = [t[0] for s in mr.values() for t in s.texts if "\x85" in t[0]]
    assert len(hits) == 22
    assert any(h.startswith("exquisitely acted and masterfully if preciously interwoven\x85 [the film]") for h in hits)


@needs_data
def test_boolq_devsplit_is_passage_disjoint(offline):
    from study.tasks.splits import word_spans

    split = offline["boolq-devsplit"]
    # 43 train questions dropped: their passages are edits of a dev passage (held_out: dev)
    assert len(split["train"]) + len(split["dev"]) == 3270 - 43
    train_passages = {t[1] for t in split["train"].texts}
    dev_passages = {t[1] for t in split["dev"].texts}
    assert not train_passages & dev_passages
    assert len(train_passages) + len(dev_passages) == 2938 - 36  # distinct passages in the dev file
    assert len(dev_passages) == round(0.3 * 2938)
    spans = set().union(*map(word_spans, dev_passages))  # no 13-word span shared with a dev passage
    assert not [p for p in train_passages if word_spans(p) & spans]
    first = json.loads((SHARED_DATA / "other/BoolQ/dev.jsonl").open().readline())
    where = "train" if first["passage"] in train_passages else "dev"
    i = [t[1] for t in split[where].texts].index(first["passage"])
    assert split[where].texts[i] == (first["question"], first["passage"])
    assert split[where].labels[i] == int(first["answer"])  # false -> 0


@needs_data
def test_boolq_full_task_needs_the_hub_offline():
    with pytest.raises(StudyConfigError) as info:
        load_task("boolq", SHARED_DATA)
    assert "BoolQ/train.jsonl' does not exist" in str(info.value)
    assert "boolq-devsplit" in str(info.value)


def test_offline_only_task_without_data_dir_says_where_to_point():
    with pytest.raises(StudyConfigError, match=r"'sst5' is read from files only.*--data-dir.*other/SST-5/"):
        load_task("sst5", None)


def test_boolq_hub_maps_bool_answers(monkeypatch):
    import datasets

    def fake_load_dataset(name, config):
        assert (name, config) == ("google/boolq", None)
        part = {"question": ["q"], "passage": ["p"], "answer": [True]}
        return {"train": part, "validation": {**part, "answer": [False]}}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_task("boolq", None)
    assert splits["train"].texts == [("q", "p")] and splits["train"].labels == [1]
    assert splits["dev"].labels == [0]


# --------------------------------------------------------------------------- seeded splits


def _spec_with_split(seed: int, group_by: str | None = None):
    rule = SplitRule("all", seed, (("dev", 0.25), ("train", 0.75)), group_by)
    return TaskSpec(name="toy", text_fields=("text",), label_field="label", task_type="classification",
                         num_labels=2, metrics=("accuracy",), split=rule)


def test_seeded_split_deterministic_disjoint_and_seed_dependent():
    toy = Split(texts=[(f"s{i}",) for i in range(100)], labels=[i % 2 for i in range(100)])
    a = apply_split(_spec_with_split(0), toy, [])
    b = apply_split(_spec_with_split(0), toy, [])
    c = apply_split(_spec_with_split(1), toy, [])
    assert a["dev"].texts == b["dev"].texts and a["train"].texts == b["train"].texts
    assert a["dev"].texts != c["dev"].texts
    assert len(a["dev"]) == 25 and len(a["train"]) == 75
    assert not set(a["dev"].texts) & set(a["train"].texts)
    assert sorted(a["dev"].texts + a["train"].texts) == sorted(toy.texts)
    idx = [int(t[0][1:]) for t in a["dev"].texts]
    assert idx == sorted(idx)  # file order kept
    assert a["dev"].labels == [i % 2 for i in idx]


def test_grouped_split_keeps_groups_whole():
    toy = Split(texts=[(f"s{i}",) for i in range(40)], labels=[0] * 40)
    groups = [f"g{i // 4}" for i in range(40)]  # 10 groups of 4
    parts = apply_split(_spec_with_split(3, "g"), toy, groups)
    group_of = {f"s{i}": groups[i] for i in range(40)}
    dev_groups = {group_of[t[0]] for t in parts["dev"].texts}
    train_groups = {group_of[t[0]] for t in parts["train"].texts}
    assert not dev_groups & train_groups
    assert len(dev_groups) == round(0.25 * 10) and len(parts["dev"]) == 4 * len(dev_groups)


def test_a_shipped_tasks_version_from_2_moves_its_cells_and_teachers():
    from study.tasks.catalogue import version_identity

    assert version_identity("sst2") == {}  # version 1: the ids it always had
    assert version_identity("boolq-devsplit") == {"task_version": "2"}  # held_out: dev changed its train part
    assert version_identity("no-such-task") == {}


def test_held_out_drops_other_parts_passages_sharing_13_words_with_it():
    """``held_out: dev``: a train passage that is an edit of a dev passage (13 words in a row in
    common) is dropped with its questions; unrelated passages stay; without it, both stay."""
    import dataclasses

    words = [f"w{i}" for i in range(200)]
    passages = [" ".join(words[10 * k:10 * k + 20]) for k in range(12)]  # neighbours share 10 words
    edit = " ".join(words[0:14]) + " changed"  # shares 14 words with passage 0
    texts = [(f"q{i}", p) for i, p in enumerate(passages + [edit])]
    toy = Split(texts=texts, labels=[0] * len(texts))
    groups = [t[1] for t in texts]
    spec = _spec_with_split(3, "passage")  # seed 3 puts the edit (unit 12) in dev
    plain = apply_split(spec, toy, groups)
    held = apply_split(dataclasses.replace(spec, split=dataclasses.replace(spec.split, held_out="dev")), toy, groups)
    dev = {t[1] for t in held["dev"].texts}
    assert dev == {t[1] for t in plain["dev"].texts}  # the held-out part is unchanged
    leaked = {t[1] for t in plain["train"].texts} - {t[1] for t in held["train"].texts}
    assert edit in dev and leaked == {passages[0]}  # neighbours share 10 words only: they stay
    assert len(plain["train"]) + len(plain["dev"]) == len(texts)
    with pytest.raises(ValueError, match="split.held_out 'test' is not one of the parts"):
        from study.tasks.schema import SplitDoc, TaskDoc

        TaskDoc(name="t", version=1, task_type="classification", format="jsonl", metrics=["accuracy"],
                files={"all": "a.jsonl"}, split=SplitDoc(source="all", seed=0, fractions={"dev": 0.3, "train": 0.7},
                                                         held_out="test"))


# --------------------------------------------------------------------------- metrics


def test_macro_f1_by_hand_and_sst5_scores_accuracy():
    # Classes 0, 1, 2: F1 per class 1.0 (0 right twice), 2/3 (1: TP 1, FP 0, FN 1), 2/3 (2: TP 1, FP 1, FN 0).
    preds, labels = [0, 0, 1, 2, 2], [0, 0, 1, 1, 2]
    out = compute_metrics(TASKS["sst5"], preds, labels)
    assert list(out) == ["accuracy", "macro_f1", "score"]
    assert out["accuracy"] == pytest.approx(4 / 5)
    assert out["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    assert out["score"] == out["accuracy"]


# --------------------------------------------------------------------------- bring your own data


def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


CSV_TASK = """\
name: reviews
version: 1
task_type: classification
format: csv
files: {train: data/train.csv, dev: data/dev.csv}
text_fields: [review]
label_field: stars
labels: [bad, good]
metrics: [accuracy, macro_f1]
"""
CSV_FILES = {
    "data/train.csv": 'review,stars\n"Great, really",good\nawful,bad\n"said ""meh""",bad\n',
    "data/dev.csv": "review,stars\nfine,good\n",
}


def test_user_csv_task_resolves_to_a_path_free_id(tmp_path):
    _write(tmp_path / "a", {"task.yaml": CSV_TASK, **CSV_FILES})
    dataset_id, spec = resolve_dataset(tmp_path / "a" / "task.yaml")
    assert re.fullmatch(r"reviews-[0-9a-f]{12}", dataset_id)
    assert spec.name == dataset_id and data.TASKS[dataset_id] is spec and get_task(dataset_id) is spec
    assert str(tmp_path) not in dataset_id
    splits = load_task(dataset_id, None)  # a user's task ignores the data directory
    assert splits["train"].texts == [("Great, really",), ("awful",), ('said "meh"',)]
    assert splits["train"].labels == [1, 0, 0]
    assert compute_metrics(spec, [1], [1])["score"] == 1.0

    # The same YAML and files in another folder, named relative to a base: the same id.
    _write(tmp_path / "b" / "deeper", {"task.yaml": CSV_TASK, **CSV_FILES})
    assert resolve_dataset("deeper/task.yaml", base=tmp_path / "b")[0] == dataset_id
    # One byte changed in a file: another id.
    _write(tmp_path / "c", {"task.yaml": CSV_TASK, **CSV_FILES, "data/dev.csv": "review,stars\nfine,bad\n"})
    assert resolve_dataset(tmp_path / "c" / "task.yaml")[0] != dataset_id
    # A changed declaration (a metric more): another id.
    _write(tmp_path / "d", {"task.yaml": CSV_TASK.replace("macro_f1]", "macro_f1, f1]"), **CSV_FILES})
    assert resolve_dataset(tmp_path / "d" / "task.yaml")[0] != dataset_id


def test_get_task_takes_a_yaml_path(tmp_path):
    _write(tmp_path, {"task.yaml": CSV_TASK, **CSV_FILES})
    spec = get_task(str(tmp_path / "task.yaml"))
    assert spec.num_labels == 2 and spec.metrics == ("accuracy", "macro_f1")


def test_user_tsv_and_jsonl_pair_tasks(tmp_path):
    tsv = CSV_TASK.replace("format: csv", "format: tsv").replace(".csv", ".tsv").replace(
        "text_fields: [review]", "text_fields: [premise, hypothesis]")
    _write(tmp_path / "t", {"task.yaml": tsv, "data/train.tsv": 'premise\thypothesis\tstars\n"a\tb\tgood\n',
                            "data/dev.tsv": "premise\thypothesis\tstars\nc\td\tbad\n"})
    splits = load_task(resolve_dataset(tmp_path / "t" / "task.yaml")[0], None)
    assert splits["train"].texts == [('"a', "b")] and splits["dev"].labels == [0]

    jsonl = CSV_TASK.replace("format: csv", "format: jsonl").replace(".csv", ".jsonl").replace(
        "labels: [bad, good]", "labels: [0, 1]")
    _write(tmp_path / "j", {"task.yaml": jsonl, "data/train.jsonl": '{"review": "x", "stars": 1}\n{"review": "y", "stars": 0}\n',
                            "data/dev.jsonl": '{"review": "z", "stars": "1"}\n'})
    splits = load_task(resolve_dataset(tmp_path / "j" / "task.yaml")[0], None)
    assert splits["train"].labels == [1, 0] and splits["dev"].labels == [1]


def test_user_regression_task_with_a_range(tmp_path):
    task = """\
name: scores
version: 2
task_type: regression
format: jsonl
files: {all: all.jsonl}
split: {source: all, seed: 0, fractions: {dev: 0.5, train: 0.5}}
text_fields: [text]
label_field: y
label_range: [0, 1]
metrics: [pearson, spearman]
"""
    rows = "".join(json.dumps({"text": f"t{i}", "y": i / 10}) + "\n" for i in range(10))
    _write(tmp_path, {"task.yaml": task, "all.jsonl": rows})
    dataset_id, spec = resolve_dataset(tmp_path / "task.yaml")
    assert spec.task_type == "regression" and spec.num_labels == 1
    splits = load_task(dataset_id, None)
    assert len(splits["train"]) == len(splits["dev"]) == 5
    _write(tmp_path, {"all.jsonl": rows + '{"text": "t", "y": 1.5}\n'})
    with pytest.raises(StudyConfigError, match=r"all.jsonl' line 11: score 1.5 is not a number in \[0.0, 1.0\]"):
        resolve_dataset(tmp_path / "task.yaml")


@pytest.mark.parametrize("files, pattern", [
    ({"data/dev.csv": "review,stars\nfine,great\n"},
     r"dev.csv' line 2: label 'great' is not one of the declared labels \['bad', 'good'\]"),
    ({"data/train.csv": "review,stars\nok,good\ntwo,fields,here\n"},
     r"train.csv' line 3: 3 comma-separated fields, expected 2"),
    ({"data/train.csv": "text,stars\nok,good\n"},
     r"train.csv' line 1 \(header\): no column 'review'; the columns are \['text', 'stars'\]"),
    ({"data/train.csv": ""}, r"train.csv' is empty"),
    ({"data/train.csv": "review,stars\n"}, r"train.csv' holds no examples \(only a header line\)"),
    ({"data/train.csv": 'review,stars\nok,good\n"open quote,bad\n'}, r"train.csv' line 3: not valid CSV"),
    ({"data/train.csv": "review,stars\n,good\n"}, r"train.csv' line 2: field 'review' is ''; expected non-empty text"),
    ({"data/train.csv": b"review,stars\ncaf\xe9,good\n"}, r"train.csv' line 2: byte b'\\xe9' is not valid utf-8"),
])
def test_user_csv_errors_name_file_and_line(tmp_path, files, pattern):
    _write(tmp_path, {"task.yaml": CSV_TASK, **CSV_FILES, **files})
    with pytest.raises(StudyConfigError, match=pattern) as info:
        resolve_dataset(tmp_path / "task.yaml")
    assert str(tmp_path / "data") in str(info.value)


@pytest.mark.parametrize("content, pattern", [
    ('{"review": "x", "stars": "good"}\n{"review": "y"\n', r"line 2: not valid JSON"),
    ('{"review": "x", "stars": "good"}\n\n{"review": "y", "stars": "bad"}\n', r"line 2: not valid JSON"),
    ('["x", "good"]\n', r"line 1: a JSON list, expected one JSON object per line"),
    ('{"review": "x", "stars": "good"}\n{"text": "y", "stars": "bad"}\n', r"line 2: no field 'review'"),
    ('{"review": "x", "stars": true}\n', r"line 1: label 'true' is not one of the declared labels"),
    ('{"review": 3, "stars": "good"}\n', r"line 1: field 'review' is 3; expected non-empty text"),
])
def test_user_jsonl_errors_name_file_and_line(tmp_path, content, pattern):
    task = CSV_TASK.replace("format: csv", "format: jsonl").replace(".csv", ".jsonl")
    _write(tmp_path, {"task.yaml": task, "data/train.jsonl": content, "data/dev.jsonl": '{"review": "z", "stars": "bad"}\n'})
    with pytest.raises(StudyConfigError, match=r"train.jsonl' " + pattern):
        resolve_dataset(tmp_path / "task.yaml")


def test_user_tsv_malformed_line(tmp_path):
    task = CSV_TASK.replace("format: csv", "format: tsv").replace(".csv", ".tsv")
    _write(tmp_path, {"task.yaml": task, "data/train.tsv": "review\tstars\nok\tgood\nno tab\n",
                      "data/dev.tsv": "review\tstars\nz\tbad\n"})
    with pytest.raises(StudyConfigError, match=r"train.tsv' line 3: 1 tab-separated fields, expected 2"):
        resolve_dataset(tmp_path / "task.yaml")


@pytest.mark.parametrize("edit, pattern", [
    (("data/dev.csv", "data/missing.csv"), r"Data file '.*data/missing.csv' \(files.dev of task file '.*task.yaml'\) does not exist"),
    (("metrics: [accuracy, macro_f1]", "metrics: [acuracy]"), r"task.yaml': unknown metric 'acuracy'.*Did you mean 'accuracy'"),
    (("labels: [bad, good]", "lables: [bad, good]"), r"task.yaml': unknown key 'lables'.*Did you mean 'labels'"),
    (("format: csv", "format: xlsx"), r"task.yaml': format 'xlsx' is not one of"),
    (("labels: [bad, good]", "labels: [good]"), r"labels declares 1 class"),
    (("labels: [bad, good]\n", ""), r"a classification task declares its label set"),
    (("files: {train: data/train.csv, dev: data/dev.csv}", "files: {train: data/train.csv}"),
     r"the splits are \['train'\]; a task needs 'train' and 'dev'"),
    (("name: reviews", "name: my reviews"), r"name 'my reviews' must be"),
    (("text_fields: [review]", "text_fields: [review"), r"task.yaml' line \d+: not valid YAML"),
])
def test_user_yaml_errors(tmp_path, edit, pattern):
    _write(tmp_path, {"task.yaml": CSV_TASK.replace(*edit), **CSV_FILES})
    with pytest.raises(StudyConfigError, match=pattern):
        resolve_dataset(tmp_path / "task.yaml")


def test_missing_task_yaml_and_unknown_name(tmp_path):
    with pytest.raises(StudyConfigError, match=r"Task file '.*nope.yaml' does not exist"):
        resolve_dataset(tmp_path / "nope.yaml")
    with pytest.raises(StudyConfigError, match=r"Unknown dataset 'sst-2'.*Did you mean 'sst2'"):
        resolve_dataset("sst-2")


def test_a_file_edited_after_resolving_is_refused(tmp_path):
    _write(tmp_path, {"task.yaml": CSV_TASK, **CSV_FILES})
    dataset_id, _ = resolve_dataset(tmp_path / "task.yaml")
    _write(tmp_path, {"data/dev.csv": "review,stars\nfine,bad\n"})
    with pytest.raises(StudyConfigError, match=r"dev.csv' changed since task 'reviews-[0-9a-f]{12}' was resolved"):
        load_task(dataset_id, None)


def test_user_lines_format_with_a_seeded_split(tmp_path):
    task = """\
name: polarity
version: 1
task_type: classification
format: lines
encoding: latin-1
files:
  all:
    - {path: neg.txt, label: negative}
    - {path: pos.txt, label: positive}
split: {source: all, seed: 7, fractions: {dev: 0.2, train: 0.8}}
labels: [negative, positive]
metrics: [accuracy]
"""
    _write(tmp_path, {"task.yaml": task, "neg.txt": "".join(f"bad {i}\n" for i in range(10)),
                      "pos.txt": b"good\xe9 0\n" + b"".join(b"good %d\n" % i for i in range(1, 10))})
    dataset_id, _ = resolve_dataset(tmp_path / "task.yaml")
    splits = load_task(dataset_id, None)
    assert len(splits["dev"]) == 4 and len(splits["train"]) == 16
    assert ("good\u00e9 0",) in splits["dev"].texts + splits["train"].texts
    _write(tmp_path, {"neg.txt": "bad 0\n\nbad 2\n"})
    with pytest.raises(StudyConfigError, match=r"neg.txt' line 2: empty; expected one sentence per line"):
        resolve_dataset(tmp_path / "task.yaml")
