"""The ordered augmentation pipeline (resolve, label, version, chained steps and their cache),
EDA's WordNet from Debian's wordnet-base, and DataCache's augmented training split."""

from __future__ import annotations

import json
import random

import pytest

from study.augment import (
    AUGMENTATIONS,
    Augmentation,
    augment,
    augment_pipeline,
    pipeline_label,
    pipeline_version,
    random_insertion,
    resolve_pipeline,
    step_cache_path,
    synonym_replacement,
    version,
    wordnet,
)
from study.augment.params import PolicyParams, PositiveInt
from study.core.errors import StudyConfigError
from study.tasks.spec import Split

WORDS = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun".split()


def single(n: int = 8) -> Split:
    rng = random.Random(123)
    return Split(texts=[(" ".join(rng.sample(WORDS, 10)),) for _ in range(n)],
                 labels=[i % 3 for i in range(n)])


@pytest.fixture
def no_wordnet(monkeypatch):
    monkeypatch.setattr(wordnet, "synonym_lookup", lambda: None)


def _tag_copies(split, rng, params):
    """A policy whose copies are hand-computable: append the tag to every field."""
    n = params["n_aug"]
    texts = [tuple(f"{t} {params['tag']}" for t in ex) for ex in split.texts for _ in range(n)]
    labels = [y for y in split.labels for _ in range(n)]
    return Split(texts=texts, labels=labels), {"tagged": len(texts)}


class TagParams(PolicyParams):
    n_aug: PositiveInt = 1
    tag: str = "X"


@pytest.fixture
def tag_policy(monkeypatch):
    AUGMENTATIONS.discover()
    # Registered for one test only: the registry has no removal, so patch its table.
    monkeypatch.setitem(AUGMENTATIONS._entries, "tag", Augmentation("tag", _tag_copies, TagParams))


# --- resolve_pipeline / label / version ---------------------------------------------------------


def test_resolve_pipeline_forms():
    assert resolve_pipeline("none", {}) == [] == resolve_pipeline([], {}) == resolve_pipeline(None)
    assert resolve_pipeline(["none"]) == []
    assert resolve_pipeline("eda", {}) == [{"name": "eda", "params": {"n_aug": 1, "alpha": 0.1}}]
    steps = resolve_pipeline(["eda", "mlm"], {"eda": {"n_aug": 2}, "mlm": {"p": 0.3}})
    assert [s["name"] for s in steps] == ["eda", "mlm"]
    assert steps[0]["params"] == {"n_aug": 2, "alpha": 0.1}
    assert steps[1]["params"] == {"model": "bert-base-uncased", "p": 0.3, "n_aug": 1, "top_k": 10}
    assert resolve_pipeline("eda+mlm", {"eda": {"n_aug": 2}, "mlm": {"p": 0.3}}) == steps
    assert [s["name"] for s in resolve_pipeline(["mlm", "eda"])] == ["mlm", "eda"]  # order kept
    # Parameters for policies this value does not use are checked by name only.
    assert resolve_pipeline("eda", {"backtranslation": {"n_aug": 2}})[0]["name"] == "eda"


def test_resolve_pipeline_refusals():
    allowed = "Allowed: backtranslation, eda, mlm, none"
    with pytest.raises(StudyConfigError, match=rf"'mlmm'.*{allowed}.*Did you mean 'mlm'"):
        resolve_pipeline(["eda", "mlmm"], {})
    with pytest.raises(StudyConfigError, match=r"'n_augs'.*Allowed: n_aug, alpha.*mean 'n_aug'"):
        resolve_pipeline(["eda"], {"eda": {"n_augs": 2}})
    with pytest.raises(StudyConfigError, match=r"params\.eda\.alpha: must be in \(0, 1\], got 2"):
        resolve_pipeline("eda", {"eda": {"alpha": 2}})
    with pytest.raises(StudyConfigError, match="'none' cannot be a step"):
        resolve_pipeline(["eda", "none"], {})
    with pytest.raises(StudyConfigError, match=r"got 3.*Allowed names: backtranslation, eda"):
        resolve_pipeline(3, {})
    with pytest.raises(StudyConfigError, match="augmentation_params 'eda_'.*Did you mean 'eda'"):
        resolve_pipeline("eda", {"eda_": {}})
    with pytest.raises(StudyConfigError, match="'alpha'.*Allowed: none"):
        resolve_pipeline("none", {"none": {"alpha": 0.1}})


def test_label_and_version(no_wordnet):
    assert pipeline_label([]) == "none" and pipeline_version([]) == "1"
    steps = resolve_pipeline(["eda", "mlm"])
    assert pipeline_label(steps) == "eda+mlm"
    assert pipeline_version(steps) == "eda=1:random_deletion+random_insertion+random_swap,mlm=1"
    assert pipeline_version(resolve_pipeline(["mlm", "eda"])).startswith("mlm=1,eda=1:")


# --- augment_pipeline ---------------------------------------------------------------------------


def test_steps_are_chained_and_every_steps_copies_kept(tag_policy):
    split = Split(texts=[("a",), ("b", "c")], labels=[0, 1])
    steps = resolve_pipeline(["tag", "tag"], {"tag": {"n_aug": 2}})
    out, meta = augment_pipeline(split, steps, seed=0)
    # originals, 2 copies each of step 1, 2 copies of each step-1 copy in step 2
    assert out.texts == [("a",), ("b", "c"),
                         ("a X",), ("a X",), ("b X", "c X"), ("b X", "c X"),
                         *[("a X X",)] * 4, *[("b X X", "c X X")] * 4]
    assert out.labels == [0, 1] + [0, 0, 1, 1] + [0] * 4 + [1] * 4
    assert [s["n_copies"] for s in meta["steps"]] == [4, 8]
    assert meta["pipeline"] == "tag+tag" and meta["n_original"] == 2


def test_no_steps_is_identity():
    split = single()
    out, meta = augment_pipeline(split, [], seed=0)
    assert out is split and meta["pipeline"] == "none" and meta["steps"] == []


def test_one_step_equals_augment(no_wordnet):
    split = single()
    steps = resolve_pipeline("eda", {"eda": {"n_aug": 3}})
    out, meta = augment_pipeline(split, steps, seed=7)
    assert out.texts == augment(split, "eda", seed=7, params={"n_aug": 3})[0].texts
    assert meta["steps"][0]["operation_counts"]


def test_two_eda_steps_deterministic_and_seeded(no_wordnet):
    split = single()
    steps = resolve_pipeline(["eda", "eda"], {"eda": {"n_aug": 2, "alpha": 0.3}})
    a, _ = augment_pipeline(split, steps, seed=0)
    b, _ = augment_pipeline(split, steps, seed=0)
    c, _ = augment_pipeline(split, steps, seed=1)
    n = len(split)
    assert len(a) == n * (1 + 2 + 4) and a.texts == b.texts and a.texts != c.texts
    assert a.labels[3 * n:] == [y for y in a.labels[n:3 * n] for _ in range(2)]
    # Step 2 draws from its own stream: its copies of the step-1 copies are not step 1's draws.
    assert a.texts[3 * n:] != augment(Split(a.texts[n:3 * n], a.labels[n:3 * n]), "eda", seed=0,
                                      params={"n_aug": 2, "alpha": 0.3})[0].texts[2 * n:]


def test_each_step_cached_and_a_changed_input_rebuilds_the_next(tmp_path, tag_policy, no_wordnet):
    split = single(4)
    steps = resolve_pipeline(["eda", "tag"], {})
    fresh, _ = augment_pipeline(split, steps, seed=2, cache_dir=tmp_path, cache_key="toy")
    paths = [step_cache_path(tmp_path, steps, k, "toy", 2) for k in range(2)]
    assert all(p.is_file() for p in paths)
    assert paths[0].name.startswith("eda-toy-step0-") and paths[1].name.startswith("tag-toy-step1-")
    assert sorted(p.name for p in (tmp_path / "augment").iterdir()) == sorted(p.name for p in paths)
    # Edit step 1's cached copy: it is read back, and step 2 (whose input changed) is rebuilt.
    lines = paths[0].read_text().splitlines()
    record = json.loads(lines[1])
    record["texts"] = ["edited"]
    lines[1] = json.dumps(record)
    paths[0].write_text("\n".join(lines) + "\n")
    again, _ = augment_pipeline(split, steps, seed=2, cache_dir=tmp_path, cache_key="toy")
    assert again.texts[4] == ("edited",) and again.texts[8] == ("edited X",)
    assert again.texts[9:] == fresh.texts[9:]
    # Other parameters of step 1 give other files for both steps (the hash covers steps 0..k).
    other = resolve_pipeline(["eda", "tag"], {"eda": {"n_aug": 2}})
    assert step_cache_path(tmp_path, other, 1, "toy", 2) != paths[1]
    with pytest.raises(StudyConfigError, match="cache_key"):
        augment_pipeline(split, steps, seed=2, cache_dir=tmp_path, cache_key="a/b")


def test_unresolved_bad_step_is_refused():
    with pytest.raises(StudyConfigError, match="'edda'.*Did you mean 'eda'"):
        augment_pipeline(single(), [{"name": "edda", "params": {}}], seed=0)
    with pytest.raises(StudyConfigError, match="n_aug"):
        augment_pipeline(single(), [{"name": "eda", "params": {"n_aug": 0}}], seed=0)


# --- WordNet from Debian's wordnet-base ---------------------------------------------------------

needs_wordnet = pytest.mark.skipif(
    not (wordnet.DEBIAN_WORDNET_DIR / "data.noun").is_file(),
    reason="Debian's wordnet-base is not installed (scripts/setup.sh installs it)")


@needs_wordnet
def test_packaged_wordnet_reads_debians_files():
    reader = wordnet.open_packaged_wordnet()
    assert reader.get_version() == "3.0"
    # lexnames served from code: each synset's lexicographer file is the right one
    assert reader.synset("dog.n.01").lexname() == "noun.animal"
    assert reader.synset("run.v.01").lexname() == "verb.motion"
    assert reader.synset("quick.a.01").lexname() == "adj.all"
    assert "fast" in {l.name() for s in reader.synsets("quick") for l in s.lemmas()}


@needs_wordnet
def test_eda_synonyms_from_wordnet():
    synonyms = wordnet.synonym_lookup()
    assert "fast" in synonyms("quick") and "quick" not in synonyms("quick")
    assert "felicitous" in synonyms("happy") and synonyms("the") == []
    assert version("eda") == (
        "1:random_deletion+random_insertion+random_swap+synonym_replacement+wordnet-3.0")
    out = synonym_replacement(["a", "quick", "the"], 2, random.Random(0), synonyms)
    assert out[0] == "a" and out[-1] == "the" and " ".join(out[1:-1]) in synonyms("quick")


def test_missing_wordnet_directory_is_none(tmp_path):
    assert wordnet.open_packaged_wordnet(tmp_path) is None


def test_random_insertion_with_synonyms_inserts_synonyms():
    syn = {"quick": ["fast"], "fox": ["red fox"]}
    out = random_insertion(["the", "quick", "fox"], 3, random.Random(0), lambda w: syn.get(w, []))
    inserted = list(out)
    for w in ["the", "quick", "fox"]:
        inserted.remove(w)
    assert inserted and set(inserted) <= {"fast", "red", "fox"}
    assert random_insertion(["the"], 2, random.Random(0), lambda w: []) == ["the"]


# --- DataCache ----------------------------------------------------------------------------------


def test_datacache_train_split_takes_resolved_steps(tmp_path, no_wordnet):
    from study.execution.datacache import DataCache

    cache = DataCache(data_dir=None, cache_dir=tmp_path)
    cache._raw["toy"] = {"train": single(6)}
    plain = cache.train_split("toy", None, data_seed=0)
    assert len(plain) == 6
    steps = resolve_pipeline(["eda", "eda"], {"eda": {"n_aug": 2}})
    out = cache.train_split("toy", None, data_seed=0, augmentation=steps, augmentation_seed=3)
    assert len(out) == 6 * (1 + 2 + 4) and out.texts[:6] == plain.texts
    assert out.texts == augment_pipeline(plain, steps, seed=3)[0].texts
    assert len(list((tmp_path / "augment").glob("eda-toy-*-step*.jsonl"))) == 2
    # The single-policy keywords still work (a policy name and its parameters).
    old = cache.train_split("toy", None, data_seed=0, augmentation="eda",
                            augmentation_params={"n_aug": 2}, augmentation_seed=3)
    assert old.texts == out.texts[:18]
    assert cache.train_split("toy", None, 0, augmentation=[]).texts == plain.texts
