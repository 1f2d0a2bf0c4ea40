"""Data augmentation of a training split: a table of policies (``AUGMENTATIONS``) and an ordered
pipeline of them.

Policies (each one's ``make_copies`` docstring gives its paper and where this code differs):

- ``eda``: EDA (Wei & Zou 2019), ``_eda_copies``.
- ``mlm``: contextual substitution by a masked LM (Kobayashi 2018; Wu et al. 2019),
  ``_mlm_copies``.
- ``backtranslation``: a round trip through a pivot language with two translation models
  (Sennrich et al. 2016; Edunov et al. 2018), ``_backtranslation_copies``.
- ``none``: no copies.

Every policy keeps the originals and appends copies (the copies of example 0, then of example 1,
...); a copy's label is its original's. Pair tasks get each text field augmented independently.
Randomness comes only from the ``seed`` passed in: a ``random.Random``, from which the model-based
policies seed torch inside ``torch.random.fork_rng``; the global generators are left alone.

The pipeline API the grid calls (``value`` is the grid's ``augmentation`` axis value):

- ``resolve_pipeline(value, params_by_name) -> steps``, ``steps = [{"name", "params"}, ...]``;
- ``pipeline_label(steps)`` (``"none"``, ``"eda"``, ``"eda+mlm"``) and ``pipeline_version(steps)``;
- ``augment_pipeline(split, steps, seed, cache_dir, cache_key) -> (split, meta)``.

What each step is applied to: step 1 augments the originals, step k > 1 augments the copies step
k - 1 made (chained), as Distiller's ``AutoAugmenter.augment`` feeds each augmenter the previous
one's output (He et al. 2021, "Distiller: A Systematic Study of Model Distillation Methods in
Natural Language Processing"; github.com/Cli212/Distiller, ``src/Distiller/autoaug.py``). Unlike
Distiller, which trains on the originals plus the final chained copies only, the result keeps every
step's copies: ``originals + copies_1 + copies_2 + ...``. With ``n_aug`` = a for step 1 and b for
step 2 there are ``1 + a + a * b`` examples per original.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import random
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from study.tasks.catalogue import Split
from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup

VERSION = "1"  # of EDA and of the table's conventions (layout, cache format)

Words = list[str]

# EDA's stop-word list (from the authors' code), kept out of synonym replacement.
_STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now""".split()
)


def _n_changed(words: Words, fraction: float) -> int:
    return max(1, int(fraction * len(words)))


# --- EDA operations -----------------------------------------------------------------------------


def random_swap(words: Words, n: int, rng: random.Random) -> Words:
    """Swap two random positions ``n`` times (EDA retries up to 3 times to get two different
    positions). Fewer than 2 words: unchanged."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i = rng.randrange(len(out))
        j = i
        for _ in range(3):
            j = rng.randrange(len(out))
            if j != i:
                break
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: Words, n: int, rng: random.Random) -> Words:
    """Delete ``min(n, len(words) - 1)`` distinct random words; at least one word always stays."""
    k = min(n, len(words) - 1)
    if k <= 0:
        return list(words)
    drop = set(rng.sample(range(len(words)), k))
    return [w for i, w in enumerate(words) if i not in drop]


def random_insertion(
    words: Words, n: int, rng: random.Random, synonyms: Callable[[str], list[str]] | None = None
) -> Words:
    """Insert a word at a random position, ``n`` times.

    With ``synonyms`` (WordNet), as EDA's ``add_word``: a random synonym of a random word of the
    (growing) text, up to 10 tries to find a word that has one; a multi-word synonym becomes
    several words. Without: a copy of a random word of the text.
    """
    out = list(words)
    if not out:
        return out
    for _ in range(n):
        if synonyms is None:
            out.insert(rng.randrange(len(out) + 1), rng.choice(out))
            continue
        for _ in range(10):
            options = synonyms(rng.choice(out))
            if options:
                out.insert(rng.randrange(len(out) + 1), rng.choice(options))
                break
    return " ".join(out).split()


def synonym_replacement(
    words: Words, n: int, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> Words:
    """Replace every occurrence of up to ``n`` distinct non-stop words by one random synonym
    (EDA's ``synonym_replacement``)."""
    out = list(words)
    candidates = sorted({w for w in out if w.lower() not in _STOP_WORDS})
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        options = synonyms(word)
        if not options:
            continue
        new = rng.choice(options)
        out = [new if w == word else w for w in out]
        replaced += 1
        if replaced >= n:
            break
    # A multi-word synonym ("look up") becomes several words, as in EDA.
    return " ".join(out).split()


# --- WordNet, from NLTK's data path or from Debian's wordnet-base --------------------------------

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
    try:
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
def _wordnet():
    """(reader, source) for the first WordNet that loads, else None: NLTK's own ``wordnet``
    corpus (``nltk.download("wordnet")`` where the internet is reachable), then Debian's."""
    try:
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
    found = _wordnet()
    return found[1] if found else None


@functools.lru_cache(maxsize=1)
def _wordnet_synonyms() -> Callable[[str], list[str]] | None:
    """WordNet synonym lookup (EDA's ``get_synonyms``) when a WordNet loads, else None."""
    found = _wordnet()
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


def eda_operations() -> dict[str, Callable[[Words, int, random.Random], Words]]:
    """The EDA operations available in this environment, by name (fixed order)."""
    ops: dict[str, Callable[[Words, int, random.Random], Words]] = {}
    synonyms = _wordnet_synonyms()
    if synonyms is not None:
        ops["synonym_replacement"] = functools.partial(synonym_replacement, synonyms=synonyms)
        ops["random_insertion"] = functools.partial(random_insertion, synonyms=synonyms)
    else:
        ops["random_insertion"] = random_insertion
    ops["random_swap"] = random_swap
    ops["random_deletion"] = random_deletion
    return ops


def _eda_operation_names() -> list[str]:
    names = list(eda_operations())
    if "synonym_replacement" in names:
        # Synonyms depend on the WordNet release; a fake lookup (tests) has no source.
        names.append(wordnet_source() or "wordnet-unknown")
    return names


def _eda_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on
    Text Classification Tasks", Sec. 2): each copy applies one randomly chosen operation to a
    whitespace-split text, changing ``n = max(1, int(alpha * len(words)))`` words.

    Operations and how they differ from the paper:
    - ``synonym_replacement``: replace ``n`` distinct non-stop words by a random WordNet synonym
      (as in EDA). Offered only where a WordNet loads (NLTK's data, or Debian's ``wordnet-base``);
      the metadata's ``operations`` and ``version()`` say which operations a run had.
    - ``random_insertion``: with WordNet, insert a random synonym of a random word, ``n`` times
      (as in EDA); without, insert a copy of a random word of the text.
    - ``random_swap``: swap two random positions, ``n`` times (as in EDA).
    - ``random_deletion``: delete ``n`` distinct random words, never all of them. EDA deletes each
      word with probability ``alpha``; a fixed count makes ``alpha`` the same "fraction of words
      changed" for every operation and cannot empty a text.

    EDA's text cleaning (lower-casing, dropping non-letters) is not applied: the copies should
    differ from the originals only by the operation. EDA applies all four operations to make
    ``n_aug`` copies per sentence (``n_aug / 4`` each); here each copy draws one operation.
    Metadata: ``operations``, ``operation_counts`` (text fields each operation changed).
    """
    ops = eda_operations()
    names = list(ops)
    counts = dict.fromkeys(names, 0)
    texts: list[tuple[str, ...]] = []
    labels = []
    for example, label in zip(split.texts, split.labels, strict=True):
        for _ in range(params["n_aug"]):
            fields = []
            for text in example:
                words = text.split()
                op = rng.choice(names)
                counts[op] += 1
                fields.append(" ".join(ops[op](words, _n_changed(words, params["alpha"]), rng)))
            texts.append(tuple(fields))
            labels.append(label)
    return Split(texts=texts, labels=labels), {"operations": names, "operation_counts": counts}


def _no_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    return Split(texts=[], labels=[]), {"operations": [], "operation_counts": {}}


# --- model-based policies -----------------------------------------------------------------------

_BATCH = 32  # fixed, so that padding (and hence the numbers) do not depend on the machine


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def _torch_rng(seed: int):
    """torch's global generators seeded with ``seed`` inside, restored on leaving."""
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _refuse_model(policy: str, role: str, name: str, err: Exception) -> StudyConfigError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return StudyConfigError(
        f"Data augmentation {policy!r} cannot load its {role} {name!r}: {first} Give a Hugging "
        f"Face model name this machine can download or has in its cache (HF_HOME), or a local "
        f"directory written by save_pretrained."
    )


@functools.lru_cache(maxsize=2)
def _load_masked_lm(name: str):
    """(tokenizer, model in eval mode) for a masked LM, loaded with ``from_pretrained(name)``.

    Raises:
        StudyConfigError: it cannot be loaded (no hub, no cache, no such directory) or has no mask
            token.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForMaskedLM.from_pretrained(name)
    except (OSError, ValueError, ImportError) as err:
        raise _refuse_model("mlm", "masked LM", name, err) from err
    if tokenizer.mask_token_id is None:
        raise StudyConfigError(f"Data augmentation 'mlm': tokenizer of {name!r} has no mask token")
    return tokenizer, model.eval()


@functools.lru_cache(maxsize=2)
def _load_seq2seq(name: str, role: str):
    """(tokenizer, model in eval mode) for a translation model, loaded with
    ``from_pretrained(name)``.

    Raises:
        StudyConfigError: it cannot be loaded (no hub, no cache, no such directory, or a missing
            tokenizer library such as sentencepiece for Marian models).
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSeq2SeqLM.from_pretrained(name)
    except (OSError, ValueError, ImportError) as err:
        raise _refuse_model("backtranslation", role, name, err) from err
    return tokenizer, model.eval()


def _model_files_sha256(name: str) -> str | None:
    """sha256 over a local model directory's files (names and contents), so a cache built with
    other weights under the same path is rebuilt; None for a hub name."""
    path = Path(name)
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _is_whole_word(tokenizer, token_id: int) -> str | None:
    """The text of a vocabulary entry when it can stand as a word, else None (special tokens,
    WordPiece continuations ``##x``, punctuation-only pieces)."""
    if token_id in tokenizer.all_special_ids:
        return None
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if piece.startswith("##"):
        return None
    word = tokenizer.decode([token_id]).strip()
    return word if word and any(c.isalnum() for c in word) else None


def _mlm_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """Contextual augmentation by a masked LM (Kobayashi 2018, "Contextual Augmentation: Data
    Augmentation by Words with Paradigmatic Relations"; Wu et al. 2019, "Conditional BERT
    Contextual Augmentation"), as Distiller's ``contextual`` augmenter (nlpaug
    ``ContextualWordEmbsAug``) uses it.

    Each copy masks ``n = max(1, int(p * len(words)))`` distinct random words of a whitespace-split
    text (each word one mask token), runs the masked LM ``model`` once over the masked text, and
    replaces each masked word by a word drawn from the model's ``top_k`` most probable whole-word
    tokens at that position, weighted by their probability (the original word, special tokens and
    ``##`` pieces excluded). A position with no such candidate, or cut off by the model's maximum
    length, keeps its word. Differences from the papers: no label conditioning (Wu et al.
    condition BERT on the label; Kobayashi's LM is label-conditional too), all masks of a copy are
    predicted in one pass rather than one word at a time, and sampling is from the top ``top_k``
    rather than the full distribution at a temperature.

    Texts are batched ``_BATCH`` at a time; on a GPU the logits (and so, rarely, a draw) can differ
    from the CPU's. Metadata: ``replaced`` (words replaced), ``kept`` (masked words kept).
    """
    import torch

    with _torch_rng(0):  # loading initialises weights from the global generator: keep it
        tokenizer, model = _load_masked_lm(params["model"])
    device = _device()
    model.to(device)
    jobs: list[tuple[int, int, Words, list[int]]] = []  # (copy, field, words, masked positions)
    copies: list[list[str]] = []
    labels = []
    for example, label in zip(split.texts, split.labels, strict=True):
        for _ in range(params["n_aug"]):
            fields = list(example)
            for f, text in enumerate(fields):
                words = text.split()
                if words:
                    n = min(_n_changed(words, params["p"]), len(words))
                    jobs.append((len(copies), f, words, sorted(rng.sample(range(len(words)), n))))
            copies.append(fields)
            labels.append(label)

    replaced = kept = 0
    max_length = min(tokenizer.model_max_length,
                     getattr(model.config, "max_position_embeddings", 512))
    for start in range(0, len(jobs), _BATCH):
        batch = jobs[start : start + _BATCH]
        masked = []
        for _, _, words, positions in batch:
            at = set(positions)
            masked.append(" ".join(tokenizer.mask_token if i in at else w
                                   for i, w in enumerate(words)))
        enc = tokenizer(masked, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        with torch.no_grad():
            probs = model(**enc).logits.float().softmax(-1)  # (B, T, V)
        width = min(probs.shape[-1], params["top_k"] + 64)  # room for the excluded entries
        for b, (c, f, words, positions) in enumerate(batch):
            mask_at = (enc["input_ids"][b] == tokenizer.mask_token_id).nonzero().flatten().tolist()
            if len(mask_at) > len(positions):  # the text itself holds a mask token: leave it
                kept += len(positions)
                continue
            out = list(words)
            for position, t in zip(positions, mask_at, strict=False):
                top_p, top_i = probs[b, t].topk(width)
                options, weights = [], []
                for pr, i in zip(top_p.tolist(), top_i.tolist(), strict=True):
                    word = _is_whole_word(tokenizer, i)
                    if word is not None and word.lower() != words[position].lower():
                        options.append(word)
                        weights.append(pr)
                        if len(options) == params["top_k"]:
                            break
                if options:
                    out[position] = rng.choices(options, weights=weights)[0]
                    replaced += 1
                else:
                    kept += 1
            kept += len(positions) - min(len(positions), len(mask_at))  # truncated away
            copies[c][f] = " ".join(out)
    texts = [tuple(fields) for fields in copies]
    return Split(texts=texts, labels=labels), {"replaced": replaced, "kept": kept}


def _translate(tokenizer, model, texts: list[str], n: int, temperature: float) -> list[str]:
    """``n`` sampled translations of each text (grouped by text), with transformers' generate."""
    import torch

    device = _device()
    model.to(device)
    max_length = min(tokenizer.model_max_length,
                     getattr(model.config, "max_position_embeddings", 512))
    out: list[str] = []
    for start in range(0, len(texts), _BATCH):
        enc = tokenizer(texts[start : start + _BATCH], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)
        # Room for a translation twice as long as the source, within the model's limit.
        new_tokens = min(max_length, 2 * enc["input_ids"].shape[1] + 8)
        with torch.no_grad():  # only ids and mask: some tokenizers add token_type_ids
            ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 do_sample=True, temperature=temperature, top_k=0,
                                 top_p=1.0, num_beams=1, num_return_sequences=n,
                                 max_new_tokens=new_tokens)  # (B * n, T')
        out.extend(t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


def _backtranslation_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """Back-translation (Sennrich et al. 2016, "Improving Neural Machine Translation Models with
    Monolingual Data"; used for augmentation of classification data by Xie et al. 2020, UDA, and by
    Distiller's ``back_translation`` augmenter): translate each text field to a pivot language
    with ``forward_model`` and back with ``backward_model``.

    Both directions sample (Edunov et al. 2018, "Understanding Back-Translation at Scale", find
    unrestricted sampling a better source of synthetic data than beam search): softmax at
    ``temperature``, no top-k/top-p cut, one beam. The ``n_aug`` copies of a text are ``n_aug``
    sampled pivots, each translated back once. Generation is transformers' ``generate``, seeded
    from ``rng`` inside ``torch.random.fork_rng`` (the global torch generator is left alone).
    A round trip that comes back empty keeps the original field (counted in ``empty_kept``).
    Metadata: ``translated`` (fields round-tripped), ``empty_kept``.
    """
    n = params["n_aug"]
    sources = [text for example in split.texts for text in example if text.strip()]
    with _torch_rng(0):  # loading initialises weights from the global generator: keep it
        forward = _load_seq2seq(params["forward_model"], "forward_model")
        backward = _load_seq2seq(params["backward_model"], "backward_model")
    with _torch_rng(rng.getrandbits(63)):
        pivots = _translate(*forward, sources, n, params["temperature"]) if sources else []
        backs = _translate(*backward, pivots, 1, params["temperature"]) if pivots else []

    texts: list[tuple[str, ...]] = []
    labels = []
    empty_kept = 0
    k = 0  # index of the next source text
    for example, label in zip(split.texts, split.labels, strict=True):
        rows: list[list[str]] = [[] for _ in range(n)]
        for text in example:
            if not text.strip():
                for row in rows:
                    row.append(text)
                continue
            for c in range(n):
                back = backs[k * n + c]
                empty_kept += not back
                rows[c].append(back or text)
            k += 1
        texts.extend(tuple(row) for row in rows)
        labels.extend([label] * n)
    return Split(texts=texts, labels=labels), {"translated": len(backs), "empty_kept": empty_kept}


# --- the table ----------------------------------------------------------------------------------


def _check_n_aug(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyConfigError(f"Augmentation parameter n_aug must be an int >= 1, got {value!r}")


def _check_fraction(name: str) -> Callable[[object], None]:
    def check(value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise StudyConfigError(
                f"Augmentation parameter {name} must be in (0, 1], got {value!r}"
            )

    return check


def _check_top_k(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyConfigError(f"Augmentation parameter top_k must be an int >= 1, got {value!r}")


def _check_temperature(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise StudyConfigError(f"Augmentation parameter temperature must be > 0, got {value!r}")


def _check_model(name: str) -> Callable[[object], None]:
    def check(value) -> None:
        if not isinstance(value, str) or not value.strip():
            raise StudyConfigError(
                f"Augmentation parameter {name} must be a model name or directory, got {value!r}"
            )

    return check


@dataclass(frozen=True)
class Augmentation:
    """A policy: ``make_copies(split, rng, params) -> (copies, metadata)`` plus its parameters'
    defaults and checks, and ``models``: the parameters that name models (a local directory's
    files are hashed into the cache header)."""

    name: str
    make_copies: Callable[[Split, random.Random, dict], tuple[Split, dict]]
    defaults: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    operations: Callable[[], list[str]] = list  # names this environment offers
    version: str = VERSION
    models: tuple[str, ...] = ()


AUGMENTATIONS: dict[str, Augmentation] = {
    "none": Augmentation("none", _no_copies),
    "eda": Augmentation(
        "eda",
        _eda_copies,
        defaults={"n_aug": 1, "alpha": 0.1},
        checks={"n_aug": _check_n_aug, "alpha": _check_fraction("alpha")},
        operations=_eda_operation_names,
    ),
    "mlm": Augmentation(
        "mlm",
        _mlm_copies,
        defaults={"model": "bert-base-uncased", "p": 0.15, "n_aug": 1, "top_k": 10},
        checks={"model": _check_model("model"), "p": _check_fraction("p"),
                "n_aug": _check_n_aug, "top_k": _check_top_k},
        version="1",
        models=("model",),
    ),
    "backtranslation": Augmentation(
        "backtranslation",
        _backtranslation_copies,
        defaults={"forward_model": "Helsinki-NLP/opus-mt-en-de",
                  "backward_model": "Helsinki-NLP/opus-mt-de-en", "n_aug": 1, "temperature": 1.0},
        checks={"forward_model": _check_model("forward_model"),
                "backward_model": _check_model("backward_model"),
                "n_aug": _check_n_aug, "temperature": _check_temperature},
        version="1",
        models=("forward_model", "backward_model"),
    ),
}

_CACHE_KEY = re.compile(r"^[A-Za-z0-9._-]+$")


def _resolve_params(aug: Augmentation, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(aug.defaults))
    if unknown:
        allowed = ", ".join(sorted(aug.defaults)) or "none"
        raise StudyConfigError(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))} for data augmentation policy "
            f"{aug.name!r}. Allowed: {allowed}.{did_you_mean(unknown[0], aug.defaults)}"
        )
    resolved = {**aug.defaults, **params}
    for name, check in aug.checks.items():
        check(resolved[name])
    return resolved


# --- cache --------------------------------------------------------------------------------------


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars among the labels
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")


def _sha256_json(value) -> str:
    payload = json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _fingerprint(split: Split) -> str:
    return _sha256_json([split.texts, split.labels])


def cache_path(cache_dir: Path, policy: str, cache_key: str, seed: int) -> Path:
    """Where ``augment`` keeps the copies of (dataset ``cache_key``, ``policy``, ``seed``)."""
    return Path(cache_dir) / "augment" / f"{policy}-{cache_key}-s{seed}.jsonl"


def step_cache_path(cache_dir: Path, steps: list[dict], k: int, cache_key: str, seed: int) -> Path:
    """Where ``augment_pipeline`` keeps the copies of step ``k`` (0-based): named by the step's
    policy, the dataset ``cache_key``, the position, a hash of steps 0..k (names and parameters:
    what step k's input and output depend on) and the seed."""
    digest = _sha256_json([[s["name"], s["params"]] for s in steps[: k + 1]])[:10]
    return (Path(cache_dir) / "augment"
            / f"{steps[k]['name']}-{cache_key}-step{k}-{digest}-s{seed}.jsonl")


def _read_cache(path: Path, header: dict, n_copies: int) -> tuple[Split, dict] | None:
    """The cached copies when the file exists, is whole and was built from the same inputs,
    else None (the caller rebuilds it)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline())
            if first.get("header") != header:
                return None
            records = [json.loads(line) for line in f]
        texts = [tuple(r["texts"]) for r in records]
        labels = [r["label"] for r in records]
        extra = first["extra"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if len(texts) != n_copies:
        return None
    return Split(texts=texts, labels=labels), extra


def _write_cache(path: Path, header: dict, copies: Split, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"header": header, "extra": extra}, ensure_ascii=False) + "\n")
            for t, y in zip(copies.texts, copies.labels, strict=True):
                f.write(
                    json.dumps(
                        {"texts": list(t), "label": y}, ensure_ascii=False, default=_json_default
                    )
                    + "\n"
                )
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_cache_key(cache_key: str) -> None:
    if not _CACHE_KEY.match(cache_key):
        raise StudyConfigError(
            f"cache_key {cache_key!r} must be a plain file-name part ([A-Za-z0-9._-])"
        )


def _copies(
    source: Split, aug: Augmentation, resolved: dict, rng: random.Random, path: Path | None,
    header: dict,
) -> tuple[Split, dict]:
    """``aug``'s copies of ``source``: read from ``path`` when it holds them for the same
    ``header`` (completed here with the source, operations and model files), else made and
    written there."""
    if path is not None:
        header = {
            **header,
            "operations": aug.operations(),
            "models_sha256": {m: _model_files_sha256(resolved[m]) for m in aug.models},
            "n_source": len(source),
            "source_sha256": _fingerprint(source),
        }
        cached = _read_cache(path, header, n_copies=resolved.get("n_aug", 0) * len(source))
        if cached is not None:
            return cached
    copies, extra = aug.make_copies(source, rng, resolved)
    if path is not None:
        _write_cache(path, header, copies, extra)
    return copies, extra


def _join(originals: Split, *copies: Split) -> Split:
    texts, labels = list(originals.texts), list(originals.labels)
    for c in copies:
        texts += c.texts
        labels += c.labels
    return Split(texts=texts, labels=labels)


# --- one policy ---------------------------------------------------------------------------------


def augment(
    split: Split,
    policy: str,
    seed: int,
    params: dict | None = None,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
) -> tuple[Split, dict]:
    """Return (originals followed by augmented copies, metadata) for one policy.

    The result has ``(1 + n_aug) * len(split)`` examples, or is ``split`` itself for ``none``.
    Randomness comes only from ``random.Random(seed)``. Metadata (JSON-friendly, for logging):
    ``policy``, ``version``, ``n_aug``, ``alpha`` (None unless EDA), ``operations`` and
    ``operation_counts`` for EDA, and what the policy's ``make_copies`` reports.

    With both ``cache_dir`` and ``cache_key`` (a name for the dataset, e.g. "sst2-train-n1000"),
    the copies are read from / written atomically to
    ``<cache_dir>/augment/<policy>-<cache_key>-s<seed>.jsonl``; a cache built from other
    originals, parameters, operations, model files or version is rebuilt.

    Raises:
        StudyConfigError: unknown policy, unknown or invalid parameter, a model that cannot be
            loaded, or a ``cache_key`` that is not a plain file-name part ([A-Za-z0-9._-]).
    """
    aug = lookup(AUGMENTATIONS, policy, "data augmentation policy")
    resolved = _resolve_params(aug, params)
    meta = {
        "policy": aug.name,
        "version": aug.version,
        "n_aug": resolved.get("n_aug", 0),
        "alpha": resolved.get("alpha"),
    }
    if aug.name == "none":
        return split, {**meta, "operations": [], "operation_counts": {}}
    path = None
    if cache_dir is not None and cache_key is not None:
        _check_cache_key(cache_key)
        path = cache_path(cache_dir, aug.name, cache_key, seed)
    copies, extra = _copies(split, aug, resolved, random.Random(seed), path, {**meta, "seed": seed})
    return _join(split, copies), {**meta, **extra}


def resolve_params(policy: str, params: dict | None) -> dict:
    """The policy's parameters with defaults filled in (used to build a cell's identity).

    Raises:
        StudyConfigError: unknown policy or parameter, or a value out of range.
    """
    return _resolve_params(lookup(AUGMENTATIONS, policy, "data augmentation policy"), params)


def version(policy: str) -> str:
    """The policy's version for a cell's identity, including the operations this machine offers
    (EDA's synonym operations exist only where a WordNet loads, and which WordNet matters)."""
    aug = lookup(AUGMENTATIONS, policy, "data augmentation policy")
    ops = aug.operations()
    return f"{aug.version}:{'+'.join(sorted(ops))}" if ops else aug.version


# --- the ordered pipeline -----------------------------------------------------------------------


def resolve_pipeline(value, params_by_name: dict | None = None) -> list[dict]:
    """The grid's ``augmentation`` value as ordered, resolved steps.

    ``value``: ``"none"``, ``None`` or ``[]`` -> ``[]``; a policy name (``"eda"``) or a label
    joined by ``+`` (``"eda+mlm"``) or a list of names (``["eda", "mlm"]``) -> one step per name,
    in order: ``[{"name": "eda", "params": {...defaults filled in...}}, ...]``.
    ``params_by_name``: ``{policy: params}`` (the grid's ``augmentation_params``); a policy used
    twice gets the same parameters both times; entries for policies not in ``value`` are checked
    for their names only.

    Raises:
        StudyConfigError: a value of another type, an unknown policy (with the closest name),
            ``none`` inside a list of several, or an unknown or out-of-range parameter.
    """
    if value is None:
        return []
    if isinstance(value, str):
        names = value.split("+")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise StudyConfigError(
            f"Data augmentation must be a policy name or an ordered list of names, got {value!r}. "
            f"Allowed names: {', '.join(sorted(AUGMENTATIONS))}."
        )
    params_by_name = dict(params_by_name or {})
    for name in params_by_name:
        lookup(AUGMENTATIONS, name, "data augmentation policy in augmentation_params")
    if names in (["none"], []):
        if params_by_name.get("none"):
            _resolve_params(AUGMENTATIONS["none"], params_by_name["none"])  # refuses any
        return []
    if "none" in names:
        raise StudyConfigError(
            f"Data augmentation {value!r}: 'none' cannot be a step of a pipeline; give 'none' "
            f"alone or only the policies to apply."
        )
    steps = []
    for name in names:
        aug = lookup(AUGMENTATIONS, name, "data augmentation policy")
        steps.append({"name": aug.name, "params": _resolve_params(aug, params_by_name.get(name))})
    return steps


def pipeline_label(steps: list[dict]) -> str:
    """A short name for display and cell names: ``"none"``, ``"eda"``, ``"eda+mlm"``."""
    return "+".join(s["name"] for s in steps) or "none"


def pipeline_version(steps: list[dict]) -> str:
    """The versions of the steps' policies, for a cell's identity: ``version("none")`` for no
    steps, else ``"<name>=<version(name)>"`` joined by ``,`` in step order (EDA's version names
    the operations and WordNet this machine offers)."""
    if not steps:
        return version("none")
    return ",".join(f"{s['name']}={version(s['name'])}" for s in steps)


def _step_rng(seed: int, k: int) -> random.Random:
    # Step 0 draws as augment() does, so a one-step pipeline gives augment()'s copies; later steps
    # get their own stream, named by position (a string seed is hashed with sha512: stable).
    return random.Random(seed) if k == 0 else random.Random(f"augment-step{k}-seed{seed}")


def augment_pipeline(
    split: Split,
    steps: list[dict],
    seed: int,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
) -> tuple[Split, dict]:
    """Return (originals followed by the copies of every step, metadata).

    ``steps`` as ``resolve_pipeline`` returns them. Step 1 augments the originals; step k > 1
    augments step k - 1's copies (chained, as Distiller applies its augmenters in order; see the
    module docstring). The result is ``originals + copies_1 + ... + copies_K``; every copy keeps
    its original's label. No steps: ``split`` itself.

    Step k (0-based) draws from its own ``random.Random`` derived from ``seed`` and k (step 0 from
    ``random.Random(seed)``, so a one-step pipeline equals ``augment(split, name, seed, params)``).
    With ``cache_dir`` and ``cache_key`` each step's copies are cached in
    ``step_cache_path(cache_dir, steps, k, cache_key, seed)``; a file built from another input,
    parameters, operations, model files or version is rebuilt.

    Metadata: ``pipeline`` (label), ``version`` (``pipeline_version``), ``n_original``,
    ``steps``: per step ``name``, ``params``, ``version``, ``n_copies`` and the policy's report.

    Raises:
        StudyConfigError: an unknown policy or parameter in ``steps``, a model that cannot be
            loaded, or a ``cache_key`` that is not a plain file-name part.
    """
    if cache_dir is not None and cache_key is not None:
        _check_cache_key(cache_key)
    resolved_steps = []
    for step in steps:
        aug = lookup(AUGMENTATIONS, step["name"], "data augmentation policy")
        params = _resolve_params(aug, step.get("params"))
        resolved_steps.append({"name": aug.name, "params": params})
    meta = {"pipeline": pipeline_label(resolved_steps),
            "version": pipeline_version(resolved_steps), "n_original": len(split), "steps": []}
    source = split
    all_copies: list[Split] = []
    for k, step in enumerate(resolved_steps):
        aug = AUGMENTATIONS[step["name"]]
        path = None
        if cache_dir is not None and cache_key is not None:
            path = step_cache_path(cache_dir, resolved_steps, k, cache_key, seed)
        header = {"policy": aug.name, "version": aug.version, "step": k, "params": step["params"],
                  "seed": seed}
        copies, extra = _copies(source, aug, step["params"], _step_rng(seed, k), path, header)
        meta["steps"].append({"name": aug.name, "params": step["params"],
                              "version": version(aug.name), "n_copies": len(copies), **extra})
        all_copies.append(copies)
        source = copies
    if not all_copies:
        return split, meta
    return _join(split, *all_copies), meta
