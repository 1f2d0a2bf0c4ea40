"""WordNet for EDA's synonym operations: NLTK's own ``wordnet`` corpus where it is installed, else
Debian's ``wordnet-base`` (``/usr/share/wordnet``) read through NLTK's reader; None when neither
loads (EDA then runs without synonym operations, and its version says so)."""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from pathlib import Path

#: Where Debian's ``wordnet-base`` (``apt-get install wordnet-base``) puts the WordNet 3.0 files.
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# WordNet 3.0's ``lexnames`` file (number, lexicographer file, syntactic category), as listed in
# lexnames(5WN). Debian's wordnet-base does not ship the file; NLTK's reader needs it to start.
_LEXNAMES_30 = """adj.all 3
adj.pert 3
adv.all 4
noun.Tops 1
noun.act 1
noun.animal 1
noun.artifact 1
noun.attribute 1
noun.body 1
noun.cognition 1
noun.communication 1
noun.event 1
noun.feeling 1
noun.food 1
noun.group 1
noun.location 1
noun.motive 1
noun.object 1
noun.person 1
noun.phenomenon 1
noun.plant 1
noun.possession 1
noun.process 1
noun.quantity 1
noun.relation 1
noun.shape 1
noun.state 1
noun.substance 1
noun.time 1
verb.body 2
verb.change 2
verb.cognition 2
verb.communication 2
verb.competition 2
verb.consumption 2
verb.contact 2
verb.creation 2
verb.emotion 2
verb.motion 2
verb.perception 2
verb.possession 2
verb.social 2
verb.stative 2
verb.weather 2
adj.ppl 3""".splitlines()
LEXNAMES_30 = "".join(
    f"{i:02d}\t{line.replace(' ', chr(9))}\n" for i, line in enumerate(_LEXNAMES_30)
)

_DEBIAN_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb",
                 "index.adj", "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")


def open_packaged_wordnet(root: Path = DEBIAN_WORDNET_DIR):
    """NLTK's WordNet reader over a WordNet 3.0 database directory laid out as Debian's
    ``wordnet-base`` installs it, or None when the files or nltk are missing.

    Two gaps are bridged: the missing ``lexnames`` file is served from ``LEXNAMES_30``, and the
    WordNet-3.0 sense-key map (``index.sense``, used only by the Open Multilingual WordNet) is not
    built. NLTK (>= 3.9) reads only under its data path, so ``root`` is appended to
    ``nltk.data.path``.
    """
    root = Path(root)
    if not all((root / name).is_file() for name in _DEBIAN_FILES):
        return None
    try:  # nltk is optional: without it EDA runs without synonym operations
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        return None

    class PackagedWordNetReader(WordNetCorpusReader):
        def open(self, file):
            if file == "lexnames" and not (root / "lexnames").is_file():
                return io.StringIO(LEXNAMES_30)
            return super().open(file)

        def map_wn(self, version="wordnet"):
            return None

    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": not used
        warnings.simplefilter("ignore")
        return PackagedWordNetReader(str(root), None)


@functools.lru_cache(maxsize=1)
def _load():
    """(reader, source) for the first WordNet that loads, else None: NLTK's own ``wordnet``
    corpus (``nltk.download("wordnet")`` where the internet is reachable), then Debian's."""
    try:  # nltk is optional (see open_packaged_wordnet)
        from nltk.corpus import wordnet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wordnet.ensure_loaded()
        return wordnet, f"wordnet-{wordnet.get_version()}"
    except (ImportError, LookupError, OSError):
        pass
    try:
        reader = open_packaged_wordnet()
    except (OSError, ValueError, LookupError):
        return None
    return (reader, f"wordnet-{reader.get_version()}") if reader is not None else None


def wordnet_source() -> str | None:
    """Which WordNet EDA uses here (``"wordnet-3.0"``), or None when none loads."""
    found = _load()
    return found[1] if found else None


@functools.lru_cache(maxsize=1)
def synonym_lookup() -> Callable[[str], list[str]] | None:
    """WordNet synonym lookup (EDA's ``get_synonyms``) when a WordNet loads, else None."""
    found = _load()
    if found is None:
        return None
    reader = found[0]

    @functools.lru_cache(maxsize=100_000)
    def synonyms(word: str) -> list[str]:
        names = set()
        for synset in reader.synsets(word):
            for lemma in synset.lemmas():
                name = lemma.name().replace("_", " ").replace("-", " ").lower()
                name = "".join(c for c in name if c == " " or c.isalpha()).strip()
                if name and name != word.lower():
                    names.add(name)
        return sorted(names)

    return synonyms
