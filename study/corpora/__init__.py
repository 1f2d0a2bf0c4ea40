"""Corpora of raw text for general (task-agnostic) distillation, as DistilBERT, TinyBERT and MiniLM
distil on unlabelled text: declared as YAML like tasks (``study/corpora/*.yaml``, ``CORPORA``),
read into documents (``documents``), packed into blocks of token ids (``packing``).

The shipped corpora: ``wiki-offline`` (the offline default: Wikipedia paragraphs from the SQuAD
and BoolQ files in the data folder, less every passage squad-devsplit and boolq-devsplit are
scored on; ``offline_wiki``) and ``wikitext-103`` (the hub). ``get_corpus`` also takes a .txt or
.jsonl path or ``hub:<path>[/<name>]``. This package sits beside ``study.tasktypes``: it imports
``study.core`` and ``study.tasks`` only.
"""

from study.corpora.documents import corpus_identity, load_documents
from study.corpora.packing import VERSION, PackedCorpus, pack, packed_corpus
from study.corpora.spec import CORPORA, CorpusSpec, get_corpus

__all__ = ["CORPORA", "VERSION", "CorpusSpec", "PackedCorpus", "corpus_identity", "get_corpus",
           "load_documents", "pack", "packed_corpus"]
