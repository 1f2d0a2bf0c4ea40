"""Reading a corpus's documents (``load_documents``) from a text file, a jsonl file, a folder of
either, or a Hugging Face dataset, and their content identity (``corpus_identity``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets

from study.core.errors import StudyConfigError
from study.corpora.offline_wiki import offline_wiki_documents
from study.corpora.spec import CorpusSpec
from study.tasks.hub import DATA_DIR_ENV

_SUFFIX = {"text": ".txt", "jsonl": ".jsonl"}
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
#: what a saved dataset's folder holds (``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``)
_SAVED = ("state.json", "dataset_dict.json")


def _files(spec: CorpusSpec, data_dir: Path | None) -> list[Path]:
    path = Path(spec.path).expanduser()
    if not path.is_absolute():
        if data_dir is None:
            raise StudyConfigError(
                f"Corpus {spec.name!r} reads {spec.path!r}, relative to the data folder, and no data folder "
                f"was given: point --data-dir or ${DATA_DIR_ENV} at the folder holding it, or give an absolute path."
            )
        path = Path(data_dir) / path
    if path.is_dir():
        found = sorted(p for p in path.rglob(f"*{_SUFFIX[spec.source]}") if p.is_file())
        if not found:
            raise StudyConfigError(f"Corpus {spec.name!r}: the folder {str(path)!r} holds no "
                                   f"*{_SUFFIX[spec.source]} file; put the {spec.source} files there.")
        return found
    if not path.is_file():
        raise StudyConfigError(f"Corpus {spec.name!r}: the file {str(path)!r} does not exist; fix the "
                               "path (relative paths of a registered corpus start at the data folder).")
    return [path]


def _read_text(path: Path, name: str) -> str:
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise StudyConfigError(f"Corpus {name!r}: {str(path)!r} is a binary file (it holds a NUL byte at "
                               f"offset {nul}); give a UTF-8 text file.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise StudyConfigError(f"Corpus {name!r}: {str(path)!r} is not UTF-8 (byte {exc.start}, line {line}: "
                               f"{exc.reason}); convert it, e.g. iconv -f latin1 -t utf-8.") from None


def _text_documents(path: Path, spec: CorpusSpec) -> Iterator[str]:
    text = _read_text(path, spec.name)
    parts = text.split("\n") if spec.separator == "line" else _BLANK_LINE.split(text)
    return (p.strip() for p in parts)


def _jsonl_documents(path: Path, spec: CorpusSpec) -> Iterator[str]:
    field = spec.text_field or "text"
    for number, line in enumerate(_read_text(path, spec.name).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"Corpus {spec.name!r}: {str(path)!r} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StudyConfigError(f"{where} is not JSON ({exc.msg}); each line must be one JSON object.") from None
        if not isinstance(record, dict):
            raise StudyConfigError(f"{where} is a JSON {type(record).__name__}, not an object with a "
                                   f"{field!r} field.")
        if field not in record:
            raise StudyConfigError(f"{where} has no field {field!r} (it has {', '.join(map(repr, record)) or 'none'}); "
                                   f"name the text field as 'file.jsonl:FIELD' or text_field in the corpus YAML.")
        value = record[field]
        if not isinstance(value, str):
            raise StudyConfigError(f"{where}: field {field!r} is a {type(value).__name__} ({value!r:.60}), not a string.")
        yield value.strip()


def _load_hub(hub: dict, name: str):
    path = hub["path"]
    local = Path(path).expanduser()
    try:
        if local.is_dir() and any((local / f).is_file() for f in _SAVED):
            ds = datasets.load_from_disk(str(local))
            return ds[hub["split"]] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(path, hub.get("name"), split=hub["split"])
    except (ConnectionError, OSError, ValueError, KeyError) as exc:
        raise StudyConfigError(
            f"Corpus {name!r}: the dataset {path!r} (config {hub.get('name')!r}, split {hub['split']!r}) could not "
            f"be loaded: {type(exc).__name__}: {exc}. Offline, use the corpus 'wiki-offline' or a local .txt/.jsonl file."
        ) from exc


def _hub_documents(spec: CorpusSpec) -> Iterator[str]:
    hub = spec.hub
    ds = _load_hub(hub, spec.name)
    field = hub["text_field"]
    if field not in ds.column_names:
        raise StudyConfigError(f"Corpus {spec.name!r}: the dataset {hub['path']!r} has no column {field!r} "
                               f"(it has {', '.join(ds.column_names)}); set hub.text_field in the corpus YAML.")
    row = 0
    for batch in ds.select_columns([field]).iter(batch_size=10_000):
        for value in batch[field]:
            if not isinstance(value, str):
                raise StudyConfigError(f"Corpus {spec.name!r}: row {row} of {hub['path']!r} has a "
                                       f"{type(value).__name__} in column {field!r}, not a string.")
            row += 1
            yield value.strip()


def _raw_documents(spec: CorpusSpec, data_dir: Path | None) -> Iterable[str]:
    if spec.source == "hub":
        return _hub_documents(spec)
    if spec.source == "offline_wiki":
        return offline_wiki_documents(spec, data_dir)
    read = _text_documents if spec.source == "text" else _jsonl_documents
    return (doc for path in _files(spec, data_dir) for doc in read(path, spec))


def load_documents(spec: CorpusSpec, data_dir: Path | None) -> list[str]:
    """The documents of ``spec``: stripped, non-empty strings in file (or dataset) order, the
    first ``spec.max_documents`` of them when set. Folders are read file by file in sorted path
    order. A hub source with a local folder holding a saved dataset is read by
    ``datasets.load_from_disk`` (tested offline); any other path by ``datasets.load_dataset(path,
    name, split=split)`` (hub ids such as wikitext; also a local folder of data files, tested
    offline). ``data_dir`` anchors relative paths and the offline_wiki source's task files.

    Raises:
        StudyConfigError: a missing file or folder, a binary or non-UTF-8 file, a jsonl line that
            is not a JSON object or lacks the text field, a text value that is not a string (each
            naming the file and line, or the row), a dataset that cannot be loaded or lacks the
            column, or a corpus without any non-empty document.
    """
    documents = []
    for doc in _raw_documents(spec, data_dir):
        if doc:
            documents.append(doc)
            if spec.max_documents is not None and len(documents) >= spec.max_documents:
                break
    if not documents:
        where = spec.path or (spec.hub or {}).get("path") or ", ".join(spec.tasks)
        raise StudyConfigError(f"Corpus {spec.name!r} holds no document (read from {where!r}): every line or "
                               "record is empty; give a corpus with text in it.")
    return documents


def corpus_identity(documents: list[str]) -> str:
    """The content identity of a corpus: 16 hex digits of the sha256 of its documents in order
    (each UTF-8 encoded, length-prefixed, so boundaries count). No path enters it: the same text
    at another path has the same identity; one changed character, or another order, changes it."""
    digest = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]
