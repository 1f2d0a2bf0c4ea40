"""Loading the Hugging Face models of the model-based policies, and seeding torch for them without
touching the caller's generators. Models load with ``from_pretrained(name)``: a hub name this
machine can download or has in its cache (HF_HOME), or a local ``save_pretrained`` directory."""

from __future__ import annotations

import contextlib
import functools

import torch
from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

from study.core.errors import StudyConfigError

BATCH = 32  # fixed, so that padding (and hence the numbers) do not depend on the machine


@contextlib.contextmanager
def torch_rng(seed: int):
    """torch's global generators seeded with ``seed`` inside, restored on leaving."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def max_length(tokenizer, model) -> int:
    """The longest input in tokens: the tokenizer's limit within the model's positions."""
    return min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512))


def _refuse_model(policy: str, role: str, name: str, err: Exception) -> StudyConfigError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return StudyConfigError(
        f"Data augmentation {policy!r} cannot load its {role} {name!r}: {first} Give a Hugging "
        f"Face model name this machine can download or has in its cache (HF_HOME), or a local "
        f"directory written by save_pretrained."
    )


@functools.lru_cache(maxsize=2)
def load_masked_lm(name: str):
    """(tokenizer, model in eval mode) for a masked LM, loaded with ``from_pretrained(name)``.

    Raises:
        StudyConfigError: it cannot be loaded (no hub, no cache, no such directory) or has no mask
            token.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForMaskedLM.from_pretrained(name)
    except (OSError, ValueError, ImportError) as err:
        raise _refuse_model("mlm", "masked LM", name, err) from err
    if tokenizer.mask_token_id is None:
        raise StudyConfigError(f"Data augmentation 'mlm': tokenizer of {name!r} has no mask token")
    return tokenizer, model.eval()


@functools.lru_cache(maxsize=2)
def load_seq2seq(name: str, role: str):
    """(tokenizer, model in eval mode) for a translation model, loaded with
    ``from_pretrained(name)``.

    Raises:
        StudyConfigError: it cannot be loaded (no hub, no cache, no such directory, or a missing
            tokenizer library such as sentencepiece for Marian models).
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSeq2SeqLM.from_pretrained(name)
    except (OSError, ValueError, ImportError) as err:
        raise _refuse_model("backtranslation", role, name, err) from err
    return tokenizer, model.eval()
