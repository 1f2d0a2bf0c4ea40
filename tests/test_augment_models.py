"""Model-based augmentation (``mlm``, ``backtranslation``) on tiny models built here and loaded
by path through the real ``from_pretrained``; and the refusal when a model cannot be loaded."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizer, MarianConfig, MarianMTModel

from study.augment import augment, augment_pipeline, resolve_pipeline, step_cache_path
from study.augment.models import load_masked_lm, load_seq2seq
from study.core.errors import StudyConfigError
from study.tasks.spec import Split

WORDS = "the quick brown fox jumps over lazy dog cat sleeps in warm sun".split()
PIVOT = "der schnelle braune fuchs springt ueber faulen hund katze schlaeft".split()
# Words only the backward model knows: its translations, and nothing else, can contain them.
BACK = "zebra yak otter heron lynx bison moose walrus".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer(tmp_path, name, words, extra=()):
    vocab = tmp_path / f"{name}-vocab.txt"
    vocab.write_text("\n".join(SPECIALS + list(extra) + list(words)) + "\n")
    return BertTokenizer(vocab=str(vocab))


@pytest.fixture(autouse=True)
def fresh_models():
    """Models are cached per name in the process; a test that rewrites a directory must reload."""
    load_masked_lm.cache_clear()
    load_seq2seq.cache_clear()
    yield
    load_masked_lm.cache_clear()
    load_seq2seq.cache_clear()


def save_mlm(tmp_path, bias: dict[str, float] | None = None, seed: int = 0):
    """A 1-layer BertForMaskedLM over WORDS (+ a WordPiece piece and punctuation); ``bias`` adds
    to the output bias of the named tokens, so its predictions are known."""
    tok = tokenizer(tmp_path, "mlm", WORDS, extra=["##s", ","])
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64))
    with torch.no_grad():
        for token, b in (bias or {}).items():
            model.cls.predictions.bias[tok.convert_tokens_to_ids(token)] += b
    path = tmp_path / "tiny-mlm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_marian(tmp_path, name, words):
    tok = tokenizer(tmp_path, name, words)
    torch.manual_seed(len(name))
    model = MarianMTModel(MarianConfig(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.pad_token_id))
    path = tmp_path / name
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def single(n: int = 6) -> Split:
    rng = random.Random(1)
    return Split(texts=[(" ".join(rng.sample(WORDS, 10)),) for _ in range(n)],
                 labels=[i % 2 for i in range(n)])


# --- mlm ----------------------------------------------------------------------------------------


def test_mlm_puts_the_models_top_word_at_the_masked_positions(tmp_path):
    # "[SEP]" and "##s" and "," score higher still, but are not words: "cat" wins, and where the
    # original word is "cat" the next best, "dog".
    path = save_mlm(tmp_path, {"[SEP]": 60.0, "##s": 55.0, ",": 52.0, "cat": 50.0, "dog": 45.0})
    split = single()
    out, meta = augment(split, "mlm", seed=0, params={"model": str(path), "p": 0.3, "top_k": 1})
    n = len(split)
    assert out.texts[:n] == split.texts and out.labels == split.labels * 2
    for original, copy in zip(split.texts, out.texts[n:], strict=True):
        before, after = original[0].split(), copy[0].split()
        assert len(after) == len(before)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(changed) == 3  # max(1, int(0.3 * 10))
        assert all(after[i] == ("dog" if before[i] == "cat" else "cat") for i in changed)
    assert meta["replaced"] == 3 * n and meta["kept"] == 0 and meta["policy"] == "mlm"


def test_mlm_samples_among_top_k_deterministically(tmp_path):
    path = save_mlm(tmp_path)
    split = Split(texts=[("the quick brown fox jumps", "over the lazy dog")] * 4, labels=[0.5] * 4)
    params = {"model": str(path), "p": 0.5, "n_aug": 3, "top_k": 5}
    a, _ = augment(split, "mlm", seed=0, params=params)
    b, _ = augment(split, "mlm", seed=0, params=params)
    c, _ = augment(split, "mlm", seed=1, params=params)
    assert a.texts == b.texts and a.texts != c.texts
    assert len(a) == 4 * 4 and all(len(t) == 2 for t in a.texts)
    copies = a.texts[4:]
    assert len(set(copies)) > 1  # sampled, not the same argmax everywhere
    for (first, second) in copies:
        assert set(first.split()) | set(second.split()) <= set(WORDS)
        assert len(first.split()) == 5 and len(second.split()) == 4


def test_mlm_keeps_empty_fields_and_words_past_the_models_length(tmp_path):
    path = save_mlm(tmp_path, {"cat": 50.0})
    long = " ".join(["sun"] * 100)  # 100 words, the model reads 64 positions
    split = Split(texts=[("", long)], labels=[1])
    out, meta = augment(split, "mlm", seed=0, params={"model": str(path), "p": 1.0, "top_k": 1})
    empty, copy = out.texts[1]
    words = copy.split()
    assert empty == "" and len(words) == 100
    cut = 64 - 2  # [CLS] and [SEP]
    assert words[:cut] == ["cat"] * cut and words[cut:] == ["sun"] * (100 - cut)
    assert meta["replaced"] == cut and meta["kept"] == 100 - cut


def test_mlm_refuses_a_model_it_cannot_load(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(StudyConfigError, match=rf"'mlm' cannot load its masked LM '{missing}'"):
        augment(single(), "mlm", seed=0, params={"model": str(missing)})
    # The default names a hub model; without a hub (offline here) it is refused by name.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(StudyConfigError, match="masked LM 'bert-base-uncased'"):
        augment(single(), "mlm", seed=0)


def test_mlm_params_are_checked():
    allowed = r"'alpha' in augmentation_params.mlm. Allowed: model, p, n_aug, top_k"
    with pytest.raises(StudyConfigError, match=allowed):
        resolve_pipeline("mlm", {"mlm": {"alpha": 0.1}})
    with pytest.raises(StudyConfigError, match=r"augmentation_params\.mlm\.p: must be in \(0, 1\]"):
        resolve_pipeline("mlm", {"mlm": {"p": 1.5}})
    with pytest.raises(StudyConfigError, match=r"mlm\.top_k: must be an int >= 1"):
        resolve_pipeline("mlm", {"mlm": {"top_k": 0}})
    with pytest.raises(StudyConfigError, match=r"mlm\.model: must be a model name or directory"):
        resolve_pipeline("mlm", {"mlm": {"model": ""}})


def test_mlm_cache_rebuilt_when_the_weights_under_the_path_change(tmp_path):
    path = save_mlm(tmp_path, {"cat": 50.0})
    steps = resolve_pipeline("mlm", {"mlm": {"model": str(path), "top_k": 1}})
    cache = tmp_path / "cache"
    first, _ = augment_pipeline(single(), steps, seed=0, cache_dir=cache, cache_key="toy")
    assert step_cache_path(cache, steps, 0, "toy", 0).is_file()
    save_mlm(tmp_path, {"dog": 50.0})  # same path, other weights
    load_masked_lm.cache_clear()
    second, _ = augment_pipeline(single(), steps, seed=0, cache_dir=cache, cache_key="toy")
    assert "cat" in " ".join(t[0] for t in first.texts[6:])
    assert "dog" in " ".join(t[0] for t in second.texts[6:]) and first.texts != second.texts


# --- backtranslation ----------------------------------------------------------------------------


@pytest.fixture
def marian(tmp_path):
    forward = save_marian(tmp_path, "en-pivot", WORDS + PIVOT)
    backward = save_marian(tmp_path, "pivot-en", PIVOT + BACK)
    return {"forward_model": str(forward), "backward_model": str(backward)}


def test_backtranslation_copies_come_from_the_backward_model(marian):
    split = Split(texts=[("the quick brown fox", ""), ("lazy dog sleeps", "in warm sun")],
                  labels=[0, 1])
    out, meta = augment(split, "backtranslation", seed=0, params={**marian, "n_aug": 3})
    assert len(out) == 2 + 2 * 3 and out.labels == [0, 1, 0, 0, 0, 1, 1, 1]
    copies = out.texts[2:]
    assert all(len(t) == 2 for t in copies)
    assert [t[1] for t in copies[:3]] == ["", "", ""]  # an empty field stays empty
    fields = [f for i, t in enumerate(copies) for f in (t if i >= 3 else t[:1])]
    originals = {"the quick brown fox", "lazy dog sleeps", "in warm sun"}
    # The backward model's vocabulary (pivot and BACK words, no English word), or the original
    # where the round trip came back empty.
    translated = [text for text in fields if text not in originals]
    assert len(translated) == len(fields) - meta["empty_kept"] > 0
    for text in translated:
        assert set(text.split()) <= set(PIVOT) | set(BACK) | {"[UNK]"}
    assert set(" ".join(translated).split()) & set(BACK)
    assert meta["translated"] == 3 * 3 and meta["empty_kept"] < len(fields)


def test_backtranslation_is_seeded_and_leaves_the_global_torch_rng(marian):
    split = Split(texts=[("the quick brown fox jumps",), ("over the lazy dog",)], labels=[0, 1])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, _ = augment(split, "backtranslation", seed=0, params={**marian, "n_aug": 2})
    assert torch.equal(torch.get_rng_state(), state)
    b, _ = augment(split, "backtranslation", seed=0, params={**marian, "n_aug": 2})
    c, _ = augment(split, "backtranslation", seed=5, params={**marian, "n_aug": 2})
    assert a.texts == b.texts and a.texts != c.texts


def test_backtranslation_refuses_a_model_it_cannot_load(tmp_path, marian):
    missing = tmp_path / "no-such-model"
    with pytest.raises(StudyConfigError, match=rf"'backtranslation'.*forward_model '{missing}'"):
        augment(single(), "backtranslation", seed=0,
                params={**marian, "forward_model": str(missing)})
    with pytest.raises(StudyConfigError, match=r"backtranslation\.temperature: must be > 0"):
        resolve_pipeline("backtranslation", {"backtranslation": {"temperature": 0}})


def test_backtranslation_step_is_cached(tmp_path, marian):
    steps = resolve_pipeline(["backtranslation"], {"backtranslation": marian})
    split = single(3)
    cache = tmp_path / "cache"
    fresh, _ = augment_pipeline(split, steps, seed=0, cache_dir=cache, cache_key="toy")
    path = step_cache_path(cache, steps, 0, "toy", 0)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3
    record = json.loads(lines[1])
    record["texts"] = ["edited in the cache"]
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    again, _ = augment_pipeline(split, steps, seed=0, cache_dir=cache, cache_key="toy")
    assert again.texts[3] == ("edited in the cache",) and again.texts[4:] == fresh.texts[4:]
