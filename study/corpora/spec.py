"""What a corpus is (``CorpusSpec``), its YAML schema, the registry of shipped corpora (``CORPORA``,
filled from ``study/corpora/*.yaml`` on first use) and ``get_corpus``, which also takes a file path
or a hub id instead of a registered name.

A corpus YAML (one per corpus, named after it; paths relative to the data folder, or absolute)::

    name: my-notes
    source: text                  # text | jsonl | hub | offline_wiki
    doc: "one line: what it is"
    path: notes/                  # text/jsonl: a file, or a folder of *.txt / *.jsonl (sorted)
    separator: blank_line         # text: line (one document a line) or blank_line
    text_field: body              # jsonl: the field holding the text (default "text")
    hub: {path: Salesforce/wikitext, name: wikitext-103-raw-v1, split: train, text_field: text}
    max_documents: 100000         # optional: the first N documents only
    tasks: [squad-devsplit]       # offline_wiki: the tasks whose passages it holds
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from study.core.errors import StudyConfigError
from study.core.registry import Registry, did_you_mean
from study.core.schema import validate_model

CORPORA_DIR = Path(__file__).resolve().parent
SOURCES = ("text", "jsonl", "hub", "offline_wiki")
SEPARATORS = ("line", "blank_line")
HUB_PREFIX = "hub:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: a path given instead of a name: ``file.txt``, ``file.txt:blank_line``, ``file.jsonl``, ``file.jsonl:body``
_PATH = re.compile(r"^(?P<path>.+\.(?P<suffix>txt|jsonl))(?::(?P<option>[^:/\\]+))?$")


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus of raw text, as its YAML (or ``get_corpus``) declares it.

    ``path`` (text, jsonl) is a file or a folder, absolute or relative to the data folder;
    ``hub`` (hub) holds ``path``, ``name`` (config or None), ``split`` and ``text_field``;
    ``tasks`` (offline_wiki) names the tasks whose passages make the corpus (``offline_wiki``).
    ``source_file`` is the YAML it came from (display only, never in an identity).
    """

    name: str
    source: str
    doc: str = ""
    path: str | None = None
    text_field: str | None = None
    separator: str = "line"
    hub: dict | None = None
    max_documents: int | None = None
    tasks: tuple[str, ...] = ()
    source_file: str | None = None


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubDoc(_Doc):
    """``hub:`` ``datasets.load_dataset(path, name, split=split)``, documents from ``text_field``."""

    path: str
    name: str | None = None
    split: str = "train"
    text_field: str = "text"


class CorpusDoc(_Doc):
    """The keys of a corpus YAML (see the module docstring)."""

    name: str
    source: Literal["text", "jsonl", "hub", "offline_wiki"]
    doc: str = ""
    path: str | None = None
    text_field: str | None = None
    separator: Literal["line", "blank_line"] = "line"
    hub: HubDoc | None = None
    max_documents: StrictInt | None = Field(default=None, ge=1)
    tasks: list[str] = []

    @model_validator(mode="after")
    def _by_source(self):
        if not NAME.match(self.name):
            raise ValueError(f"name {self.name!r} must be letters, digits, '_', '.' or '-'.")
        needs = {"text": "path", "jsonl": "path", "hub": "hub", "offline_wiki": "tasks"}[self.source]
        if not getattr(self, needs):
            raise ValueError(f"source {self.source!r} needs {needs!r}.")
        others = {"path", "hub", "tasks", "text_field"} - {needs} - ({"text_field"} if self.source == "jsonl" else set())
        given = sorted(k for k in others if getattr(self, k))
        if given:
            raise ValueError(f"source {self.source!r} takes no {', '.join(map(repr, given))}.")
        if self.separator != "line" and self.source != "text":
            raise ValueError(f"separator is for source 'text' only, not {self.source!r}.")
        return self


def read_corpus_yaml(path: Path) -> CorpusSpec:
    """The ``CorpusSpec`` a corpus YAML declares.

    Raises:
        StudyConfigError: the file is not a YAML mapping, or a key is unknown, missing or not
            valid for its source (one line naming the file and the key).
    """
    where = f"Corpus file {str(path)!r}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StudyConfigError(f"{where} cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{where} must hold a mapping (name, source, ...), got {type(raw).__name__}.")
    doc = validate_model(CorpusDoc, raw, where)
    text_field = doc.text_field or ("text" if doc.source == "jsonl" else None)
    return CorpusSpec(name=doc.name, source=doc.source, doc=doc.doc, path=doc.path, text_field=text_field,
                      separator=doc.separator, hub=doc.hub.model_dump() if doc.hub else None,
                      max_documents=doc.max_documents, tasks=tuple(doc.tasks), source_file=str(path))


class _CorpusRegistry(Registry[CorpusSpec]):
    """``Registry`` of corpora whose discovery reads ``study/corpora/*.yaml`` (not modules)."""

    def __init__(self) -> None:
        super().__init__("corpus")
        self._discovered = False

    def discover(self) -> None:
        """Read every shipped corpus YAML once; each must be named after its file.

        Raises:
            StudyConfigError: a YAML is not valid, or its name differs from its file's.
        """
        if self._discovered:
            return
        self._discovered = True
        for path in sorted(CORPORA_DIR.glob("*.yaml")):
            spec = read_corpus_yaml(path)
            if spec.name != path.stem:
                raise StudyConfigError(f"Corpus file {str(path)!r} declares name {spec.name!r}; "
                                       "it must match the file name.")
            self.add(spec.name, spec)


CORPORA: Registry[CorpusSpec] = _CorpusRegistry()


def _from_path(name: str, match: re.Match) -> CorpusSpec:
    path, suffix, option = match["path"], match["suffix"], match["option"]
    absolute = str(Path(path).expanduser().absolute())  # relative to where the user stands
    if suffix == "jsonl":
        return CorpusSpec(name=name, source="jsonl", path=absolute, text_field=option or "text",
                          doc=f"the jsonl file {absolute}, field {option or 'text'!r}")
    if option is not None and option not in SEPARATORS:
        raise StudyConfigError(f"Corpus {name!r}: separator {option!r} is not allowed; a text file takes "
                               f"':line' or ':blank_line'.{did_you_mean(option, SEPARATORS)}")
    return CorpusSpec(name=name, source="text", path=absolute, separator=option or "line",
                      doc=f"the text file {absolute}, one document per {option or 'line'}")


def _from_hub(name: str) -> CorpusSpec:
    value = name[len(HUB_PREFIX):].strip()
    if not value:
        raise StudyConfigError(f"Corpus {name!r} names no dataset: write hub:<path>[/<name>], "
                               "e.g. hub:wikitext/wikitext-103-raw-v1.")
    local = Path(value).expanduser()
    if local.is_dir():  # a saved dataset or a folder of data files: no config name
        path, config = str(local.absolute()), None
    elif "/" in value:  # "owner/data/" (an empty last part): a namespaced dataset without a config
        path, config = value.rsplit("/", 1)
        config = config or None
    else:
        path, config = value, None
    hub = {"path": path, "name": config, "split": "train", "text_field": "text"}
    return CorpusSpec(name=name, source="hub", hub=hub, doc=f"the hub dataset {path!r} ({config}), split 'train'")


def get_corpus(name: str) -> CorpusSpec:
    """The spec of a corpus: a registered name (``CORPORA``), or a path to a ``.txt`` file
    (``file.txt`` one document a line, ``file.txt:blank_line`` documents between blank lines) or
    a ``.jsonl`` file (``file.jsonl:field``, default field ``text``), relative to the working
    directory; or ``hub:<path>[/<name>]`` (split ``train``, field ``text``): the last ``/`` part
    is the config name (``hub:wikitext/wikitext-103-raw-v1``, ``hub:Salesforce/wikitext/
    wikitext-103-raw-v1``), unless the whole value is a local folder; a namespaced dataset without
    a config ends in ``/`` (``hub:owner/data/``). Nothing is loaded here (see ``load_documents``).

    Raises:
        StudyConfigError: an unknown name (lists the registered ones, the closest, and the path
            and hub forms), an empty hub id, or an unknown text separator.
    """
    name = str(name)
    if name in CORPORA:
        return CORPORA[name]
    if name.startswith(HUB_PREFIX):
        return _from_hub(name)
    match = _PATH.match(name)
    if match:
        return _from_path(name, match)
    allowed = ", ".join(CORPORA.names())
    raise StudyConfigError(
        f"Unknown corpus {name!r}. Allowed: {allowed}; or a path to a .txt file (one document a line, "
        f"'file.txt:blank_line' for blank-line separated ones) or a .jsonl file ('file.jsonl:field', "
        f"default field 'text'); or hub:<path>[/<name>] for a Hugging Face dataset.{did_you_mean(name, CORPORA)}"
    )
