"""Data augmentation: EDA operations, determinism, and the JSONL cache."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from study.augment import (
    AUGMENTATIONS,
    augment,
    cache_path,
    random_deletion,
    random_insertion,
    random_swap,
    resolve_params,
    synonym_replacement,
    wordnet,
)
from study.core.errors import StudyConfigError
from study.tasks.spec import Split

WORDS = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun".split()


def single(n: int = 20) -> Split:
    rng = random.Random(123)
    texts = [(" ".join(rng.sample(WORDS, 10)),) for _ in range(n)]
    return Split(texts=texts, labels=[i % 2 for i in range(n)])


def pairs(n: int = 10) -> Split:
    rng = random.Random(7)
    texts = [(" ".join(rng.sample(WORDS, 12)), " ".join(rng.sample(WORDS, 8))) for _ in range(n)]
    return Split(texts=texts, labels=[float(i) / 2 for i in range(n)])


@pytest.fixture(autouse=True)
def no_wordnet(monkeypatch):
    """Tests run the same with or without a wordnet corpus on the machine."""
    monkeypatch.setattr(wordnet, "synonym_lookup", lambda: None)


# --- operations -------------------------------------------------------------------------------


def test_random_swap_keeps_the_words():
    rng = random.Random(0)
    out = random_swap(WORDS, 3, rng)
    assert Counter(out) == Counter(WORDS) and out != WORDS
    assert random_swap(["alone"], 3, rng) == ["alone"]


def test_random_deletion_removes_n_and_never_all():
    rng = random.Random(0)
    out = random_deletion(WORDS, 2, rng)
    assert len(out) == len(WORDS) - 2
    assert not Counter(out) - Counter(WORDS)
    assert random_deletion(["a", "b", "c"], 10, rng) in (["a"], ["b"], ["c"])
    assert random_deletion(["alone"], 5, rng) == ["alone"]
    assert random_deletion([], 1, rng) == []


def test_random_insertion_inserts_copies_of_own_words():
    rng = random.Random(0)
    out = random_insertion(WORDS, 3, rng)
    assert len(out) == len(WORDS) + 3
    assert set(out) == set(WORDS)
    assert random_insertion([], 2, rng) == []


def test_synonym_replacement_skips_stop_words():
    syn = {"quick": ["fast"], "the": ["ZZZ"], "dog": ["hound dog"]}
    out = synonym_replacement(
        ["the", "quick", "dog", "the"], 2, random.Random(0), lambda w: syn.get(w, [])
    )
    assert out == ["the", "fast", "hound", "dog", "the"]


# --- augment() --------------------------------------------------------------------------------


def test_deterministic_per_seed_and_different_across_seeds():
    split = single()
    a, meta_a = augment(split, "eda", seed=0)
    b, meta_b = augment(split, "eda", seed=0)
    c, _ = augment(split, "eda", seed=1)
    assert a.texts == b.texts and meta_a == meta_b
    assert a.texts != c.texts


def test_does_not_use_the_global_rng():
    split = single()
    random.seed(1)
    state = random.getstate()
    a, _ = augment(split, "eda", seed=0)
    assert random.getstate() == state
    random.seed(999)
    b, _ = augment(split, "eda", seed=0)
    assert a.texts == b.texts


def test_originals_first_then_copies_with_copied_labels():
    split = single(15)
    out, meta = augment(split, "eda", seed=3, params={"n_aug": 3})
    n = len(split)
    assert len(out) == (1 + 3) * n
    assert out.texts[:n] == split.texts and out.labels[:n] == split.labels
    for i in range(n):
        for k in range(3):
            assert out.labels[n + 3 * i + k] == split.labels[i]
    copies = out.texts[n:]
    assert sum(c != split.texts[j // 3] for j, c in enumerate(copies)) > 0.9 * len(copies)
    assert meta["n_aug"] == 3 and meta["alpha"] == 0.1 and meta["version"] == "1"


def test_alpha_sets_how_many_words_change():
    # 20 words, alpha 0.25: every operation changes int(0.25 * 20) = 5 words.
    split = Split(texts=[(" ".join(f"w{i}" for i in range(20)),)], labels=[0])
    out, meta = augment(split, "eda", seed=0, params={"n_aug": 30, "alpha": 0.25})
    lengths = Counter(len(t[0].split()) for t in out.texts[1:])
    assert set(lengths) <= {15, 20, 25}  # deletion, swap, insertion
    assert sum(meta["operation_counts"].values()) == 30


def test_pairs_augment_each_field():
    split = pairs()
    out, meta = augment(split, "eda", seed=0, params={"n_aug": 2})
    n = len(split)
    assert len(out) == 3 * n
    assert all(len(t) == 2 for t in out.texts)
    assert out.labels[n:] == [y for y in split.labels for _ in range(2)]
    assert sum(meta["operation_counts"].values()) == 2 * 2 * n  # two fields per copy
    changed_second = sum(out.texts[n + j][1] != split.texts[j // 2][1] for j in range(2 * n))
    assert changed_second > 0.8 * 2 * n


def test_deletion_never_yields_empty_text():
    split = Split(texts=[("word",), ("two words",), ("",)], labels=[0, 1, 0])
    out, _ = augment(split, "eda", seed=0, params={"n_aug": 20, "alpha": 1.0})
    copies = out.texts[3:]
    assert all(t[0].split() and set(t[0].split()) == {"word"} for t in copies[:20])
    assert all(len(t[0].split()) >= 1 for t in copies[20:40])
    assert all(t[0] == "" for t in copies[40:])  # nothing to augment: copied unchanged


def test_operations_recorded_without_and_with_wordnet(monkeypatch):
    _, meta = augment(single(), "eda", seed=0)
    assert meta["operations"] == ["random_insertion", "random_swap", "random_deletion"]
    assert set(meta["operation_counts"]) == set(meta["operations"])

    fake = {"quick": ["fast"], "brown": ["chocolate"], "fox": ["vixen"]}
    monkeypatch.setattr(wordnet, "synonym_lookup", lambda: lambda w: fake.get(w, []))
    out, meta = augment(single(), "eda", seed=0, params={"n_aug": 10})
    assert meta["operations"][0] == "synonym_replacement"
    assert meta["operation_counts"]["synonym_replacement"] > 0
    assert any(w in t[0].split() for t in out.texts for w in ("fast", "chocolate", "vixen"))


def test_none_policy_is_identity():
    split = single()
    out, meta = augment(split, "none", seed=0)
    assert out is split
    assert meta["policy"] == "none" and meta["n_aug"] == 0 and meta["operations"] == []


def test_unknown_policy_and_params():
    assert set(AUGMENTATIONS) == {"none", "eda", "mlm", "backtranslation"}
    allowed = "Allowed: backtranslation, eda, mlm, none"
    with pytest.raises(StudyConfigError, match=rf"'edaa'.*{allowed}.*Did you mean 'eda'"):
        augment(single(), "edaa", seed=0)
    with pytest.raises(StudyConfigError,
                       match=r"'n_augs'.*augmentation_params.eda. Allowed: n_aug, alpha"):
        augment(single(), "eda", seed=0, params={"n_augs": 2})
    with pytest.raises(StudyConfigError, match="'alpha'.*Allowed: none"):
        augment(single(), "none", seed=0, params={"alpha": 0.1})
    with pytest.raises(StudyConfigError, match=r"eda\.alpha: must be in \(0, 1\], got 0\.0"):
        augment(single(), "eda", seed=0, params={"alpha": 0.0})
    with pytest.raises(StudyConfigError, match=r"eda\.n_aug: must be an int >= 1, got 0"):
        augment(single(), "eda", seed=0, params={"n_aug": 0})


def test_resolved_params_keep_the_values_as_given():
    """Resolved parameters enter cell ids: validation neither converts nor reorders them."""
    resolved = resolve_params("eda", {"alpha": 1})
    assert resolved == {"n_aug": 1, "alpha": 1} and type(resolved["alpha"]) is int
    assert list(resolve_params("mlm", {"top_k": 3})) == ["model", "p", "n_aug", "top_k"]
    assert type(resolve_params("backtranslation", {"temperature": 2})["temperature"]) is int
    for bad in ({"n_aug": True}, {"n_aug": 2.0}, {"alpha": "0.5"}, {"alpha": None}):
        with pytest.raises(StudyConfigError, match=r"params\.eda\.\w+: must be .*got "):
            resolve_params("eda", bad)
    with pytest.raises(StudyConfigError,
                       match=r"'x', 'y' in augmentation_params.none.*Allowed: none"):
        resolve_params("none", {"y": 1, "x": 2})


# --- cache ------------------------------------------------------------------------------------


def test_cache_round_trip(tmp_path):
    split = pairs()
    fresh, meta = augment(split, "eda", seed=4, cache_dir=tmp_path, cache_key="toy-train")
    path = tmp_path / "augment" / "eda-toy-train-s4.jsonl"
    assert path == cache_path(tmp_path, "eda", "toy-train", 4) and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    again, meta_again = augment(split, "eda", seed=4, cache_dir=tmp_path, cache_key="toy-train")
    assert again.texts == fresh.texts and again.labels == fresh.labels
    assert all(type(y) is float for y in again.labels)
    assert meta_again == meta


def test_cache_is_read_not_rebuilt(tmp_path):
    split = single(5)
    augment(split, "eda", seed=0, cache_dir=tmp_path, cache_key="k")
    path = cache_path(tmp_path, "eda", "k", 0)
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["texts"] = ["edited in the cache"]
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    out, _ = augment(split, "eda", seed=0, cache_dir=tmp_path, cache_key="k")
    assert out.texts[len(split)] == ("edited in the cache",)


def test_stale_cache_is_rebuilt(tmp_path):
    split = single(5)
    augment(split, "eda", seed=0, cache_dir=tmp_path, cache_key="k")
    # Other parameters, or other originals under the same key: the cache does not apply.
    out, meta = augment(
        split, "eda", seed=0, params={"n_aug": 2}, cache_dir=tmp_path, cache_key="k"
    )
    assert len(out) == 15 and meta["n_aug"] == 2
    other = single(6)
    out, _ = augment(other, "eda", seed=0, params={"n_aug": 2}, cache_dir=tmp_path, cache_key="k")
    assert out.texts == augment(other, "eda", seed=0, params={"n_aug": 2})[0].texts
    expected = augment(split, "eda", seed=0)[0].texts
    path = cache_path(tmp_path, "eda", "k", 0)
    path.write_text("not json\n")
    out, _ = augment(split, "eda", seed=0, cache_dir=tmp_path, cache_key="k")
    assert out.texts == expected
    # A truncated file (right header, missing copies) is rebuilt too.
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    out, _ = augment(split, "eda", seed=0, cache_dir=tmp_path, cache_key="k")
    assert out.texts == expected
    assert len(path.read_text().splitlines()) == 1 + len(split)


def test_cache_key_must_be_a_file_name_part(tmp_path):
    with pytest.raises(StudyConfigError, match="cache_key"):
        augment(single(), "eda", seed=0, cache_dir=tmp_path, cache_key="../escape")
