"""The ``offline_wiki`` source: real Wikipedia paragraphs already in the data folder, less every
passage an offline task is scored on. The shipped corpus ``wiki-offline`` (``wiki-offline.yaml``)
is this source over ``squad-devsplit`` (SQuAD v1.1 dev contexts, ``qa/squad_v1.1/dev-v1.1.json``)
and ``boolq-devsplit`` (BoolQ dev passages, ``other/BoolQ/dev.jsonl``).

Each task is read by the task catalogue (``study.tasks.catalogue.load_task``, which locates the
files from the task's YAML and applies its ``split:`` rule with ``study.tasks.splits``), so the
held-out part is exactly the one the task evaluates on. A document is the last text field of an
example (SQuAD's context, BoolQ's passage), stripped; the documents are the distinct passages of
every split but ``dev``, in task order, then split order, then file order, less:

- every passage of any listed task's ``dev`` split (one SQuAD paragraph is also a BoolQ dev
  passage: it is left out too);
- every document that shares a 13-word span (lower-cased words, ``\\w+``; the contamination
  test of GPT-3, Brown et al. 2020, appendix C) with a ``dev`` passage. BoolQ holds several
  edits of one Wikipedia paragraph, which a split by exact passage put on both sides (37
  documents, 21,861 characters; up to 200 shared spans each); the tasks' splits now drop them
  from ``train`` themselves (``held_out: dev``), so this rule is a second guard.

So a student distilled on ``wiki-offline`` never saw the text it is scored on in
squad-devsplit or boolq-devsplit. Measured on /work/shared/data: 3,475 documents, 2,264,964
characters (squad-devsplit's train part gives 1,455 paragraphs, boolq-devsplit's 2,021
passages; their dev parts, 611 and 881, are left out).
"""

from __future__ import annotations

from pathlib import Path

from study.core.errors import StudyConfigError
from study.corpora.spec import CorpusSpec
from study.tasks.catalogue import get_task, load_task
from study.tasks.hub import DATA_DIR_ENV
from study.tasks.spec import Split
from study.tasks.splits import word_spans

HELD_OUT = "dev"


def passages(split: Split) -> list[str]:
    """The distinct passages of a split: the last text field of each example, stripped, in order
    of first appearance."""
    return list(dict.fromkeys(texts[-1].strip() for texts in split.texts))


def offline_wiki_documents(spec: CorpusSpec, data_dir: Path | None) -> list[str]:
    """The documents of an ``offline_wiki`` corpus (see the module docstring): the passages of the
    tasks ``spec.tasks`` outside their ``dev`` splits, less the ``dev`` passages and every
    document sharing a ``LEAK_NGRAM``-word span with one.

    Raises:
        StudyConfigError: no data folder, an unknown task, a task without a ``dev`` split, or
            the task's own refusals (a missing file names it).
    """
    if data_dir is None:
        raise StudyConfigError(
            f"Corpus {spec.name!r} is read from the task files in the data folder "
            f"({', '.join(spec.tasks)}): point --data-dir or ${DATA_DIR_ENV} at it (e.g. ../shared/data)."
        )
    kept: list[str] = []
    held_out: set[str] = set()
    for task in spec.tasks:
        names = get_task(task).split_names
        if HELD_OUT not in names:
            raise StudyConfigError(f"Corpus {spec.name!r}: task {task!r} has no {HELD_OUT!r} split to leave "
                                   f"out (it has {', '.join(names)}).")
        splits = load_task(task, Path(data_dir))
        held_out.update(passages(splits[HELD_OUT]))
        kept += [p for name in names if name != HELD_OUT for p in passages(splits[name])]
    spans: set[str] = set()
    for passage in held_out:
        spans |= word_spans(passage)
    return [doc for doc in dict.fromkeys(kept) if doc not in held_out and not word_spans(doc) & spans]
