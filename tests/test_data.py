"""Loading GLUE from the official TSV files in /work/shared/data (real data, no hub).

The other shipped tasks (SST-5, TREC, MR, SUBJ, BoolQ) and users' task YAMLs: tests/test_tasks.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from study.core.errors import StudyConfigError
from study.tasks import catalogue as data
from study.tasks.catalogue import TASKS, load_task, resolve_data_dir
from study.tasks.formats import read_tsv
from study.tasks.spec import Split
from study.tasks.splits import subsample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GLUE = SHARED_DATA / "glue"
GLUE_TASKS = sorted(name for name, spec in TASKS.items() if spec.collection == "glue")
needs_data = pytest.mark.skipif(
    not GLUE.is_dir(), reason=f"shared GLUE data not found at {GLUE} (see shared/data/README.md)"
)


def manifest_rows() -> dict[str, int]:
    with open(SHARED_DATA / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return {r["file"]: int(r["rows"]) for r in csv.DictReader(f, delimiter="\t")}


@pytest.fixture(scope="module")
def loaded() -> dict[str, dict[str, Split]]:
    return {task: load_task(task, GLUE) for task in GLUE_TASKS}


@needs_data
@pytest.mark.parametrize("task", GLUE_TASKS)
def test_row_counts_match_manifest(loaded, task):
    rows = manifest_rows()
    spec = TASKS[task]
    for split in ("train", "dev"):
        assert len(loaded[task][split]) == rows[f"glue/{spec.glue_dir}/{split}.tsv"], split


@needs_data
@pytest.mark.parametrize("task", GLUE_TASKS)
def test_texts_and_labels_well_formed(loaded, task):
    spec = TASKS[task]
    for split in loaded[task].values():
        assert all(len(t) == len(spec.text_fields) for t in split.texts)
        assert all(isinstance(s, str) and s.strip() for t in split.texts for s in t)
        if spec.task_type == "regression":
            assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in split.labels)
        else:
            assert all(type(y) is int for y in split.labels)
            # Both classes occur: a label column read from the wrong position would not do this.
            assert set(split.labels) == set(range(spec.num_labels))


@needs_data
def test_known_label_counts(loaded):
    # From the files: RTE train has 1249 "entailment" (id 0, as on the hub); CoLA train 6023
    # acceptable (1); STS-B spans the whole 0-5 scale.
    assert loaded["rte"]["train"].labels.count(0) == 1249
    assert loaded["rte"]["train"].labels[0] == 1  # first row is not_entailment
    assert loaded["cola"]["train"].labels.count(1) == 6023
    assert min(loaded["stsb"]["train"].labels) == 0.0
    assert max(loaded["stsb"]["train"].labels) == 5.0
    assert loaded["stsb"]["train"].labels[1] == 3.8


@needs_data
def test_mrpc_header_has_no_bom():
    header, _ = read_tsv(GLUE / "MRPC" / "train.tsv")
    assert header[0] == "Quality"
    assert (GLUE / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")


@needs_data
def test_cola_first_sentence_and_no_header(loaded):
    cola = loaded["cola"]["train"]
    assert cola.texts[0] == (
        "Our friends won't buy this analysis, let alone the next one we propose.",
    )
    assert cola.labels[0] == 1
    # CoLA dev ends without a final newline; its last row must still be there.
    assert loaded["cola"]["dev"].texts[-1][0].endswith(".")


@needs_data
def test_literal_quotes_survive(loaded):
    mrpc = loaded["mrpc"]
    assert mrpc["train"].texts[0] == (
        'Amrozi accused his brother, whom he called "the witness", of deliberately distorting '
        "his evidence.",
        'Referring to him as only "the witness", Amrozi accused his brother of deliberately '
        "distorting his evidence.",
    )
    # An unbalanced opening quote: a quote-aware reader would swallow the following lines.
    assert mrpc["dev"].texts[0][1] == (
        '"The foodservice pie business does not fit our long-term growth strategy.'
    )


@needs_data
def test_sst2_text_kept_verbatim(loaded):
    # The files (and the hub) keep SST-2's tokenised text with a trailing space.
    assert loaded["sst2"]["train"].texts[0] == ("hide new secretions from the parental units ",)


def test_malformed_row_is_an_error_not_dropped(tmp_path):
    task_dir = tmp_path / "SST-2"
    task_dir.mkdir()
    (task_dir / "train.tsv").write_text("sentence\tlabel\ngood film\t1\nno label here\nbad\t0\n")
    (task_dir / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(StudyConfigError, match=r"train.tsv' line 3: 1 tab-separated fields"):
        load_task("sst2", tmp_path)


def test_label_out_of_range_is_an_error(tmp_path):
    task_dir = tmp_path / "SST-2"
    task_dir.mkdir()
    (task_dir / "train.tsv").write_text("sentence\tlabel\ngood film\t2\n")
    (task_dir / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(StudyConfigError, match="label 2 outside"):
        load_task("sst2", tmp_path)


def test_unknown_task():
    with pytest.raises(
        StudyConfigError, match=r"'sst3'.*Allowed: boolq, boolq-devsplit, cola, conll2003, mr, mrpc, rte, squad, "
        r"squad-devsplit, sst2, sst5, stsb, subj, trec, wnli, wnut17\. Did you mean 'sst5'\?"
    ):
        load_task("sst3", GLUE)


def test_missing_task_folder(tmp_path):
    with pytest.raises(StudyConfigError, match="RTE"):
        load_task("rte", tmp_path)


def test_missing_split_file(tmp_path):
    (tmp_path / "WNLI").mkdir()
    (tmp_path / "WNLI" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    with pytest.raises(StudyConfigError, match=r"WNLI/dev\.tsv"):
        load_task("wnli", tmp_path)


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) is None
    assert resolve_data_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(other) == other  # the explicit value wins over the environment


def test_resolve_data_dir_missing(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(StudyConfigError) as err:
        resolve_data_dir(missing)
    assert str(missing) in str(err.value)
    assert "--data-dir" in str(err.value) and "STUDY_DATA_DIR" in str(err.value)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(missing))
    with pytest.raises(StudyConfigError, match="no-such-dir"):
        resolve_data_dir(None)


def test_hub_path_maps_columns_and_validation_split(monkeypatch):
    """The hub branch, with ``datasets.load_dataset`` replaced (no network in tests)."""
    import datasets

    calls = []

    def fake_load_dataset(name, config):
        calls.append((name, config))
        return {
            "train": {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1.5, 4.0]},
            "validation": {"sentence1": ["e"], "sentence2": ["f"], "label": [0.25]},
            "test": {"sentence1": ["g"], "sentence2": ["h"], "label": [-1.0]},
        }

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_task("stsb", None)
    assert calls == [("nyu-mll/glue", "stsb")]
    assert set(splits) == {"train", "dev"}
    assert splits["train"].texts == [("a", "c"), ("b", "d")]
    assert splits["dev"].labels == [0.25]


def _toy(n: int) -> Split:
    return Split(texts=[(f"s{i}",) for i in range(n)], labels=[i % 2 for i in range(n)])


def test_subsample_deterministic_and_seed_dependent():
    split = _toy(1000)
    a, b = subsample(split, 100, seed=0), subsample(split, 100, seed=0)
    c = subsample(split, 100, seed=1)
    assert a.texts == b.texts and a.labels == b.labels
    assert a.texts != c.texts
    assert len(a) == 100 and len(set(a.texts)) == 100  # without replacement
    # Kept in original order, and labels stay with their texts.
    idx = [int(t[0][1:]) for t in a.texts]
    assert idx == sorted(idx)
    assert a.labels == [i % 2 for i in idx]


def test_subsample_none_or_too_large_is_unchanged():
    split = _toy(10)
    assert subsample(split, None, seed=0) is split
    assert subsample(split, 10, seed=0) is split
    assert subsample(split, 50, seed=0) is split
    with pytest.raises(ValueError):
        subsample(split, -1, seed=0)


def test_unreachable_hub_says_how_to_point_at_local_data(monkeypatch):
    import datasets

    def offline(name, config):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(StudyConfigError) as info:
        load_task("rte", None)
    assert "nyu-mll/glue" in str(info.value) and "--data-dir" in str(info.value) and "STUDY_DATA_DIR" in str(info.value)
