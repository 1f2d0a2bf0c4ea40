"""The JSONL cache of augmented copies: where a file lives, its header (what the copies were
built from), and atomic reads and writes. A file whose header differs from the one asked for, or
that is cut short, is not used (the caller rebuilds it)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from study.core.errors import StudyConfigError
from study.tasks.spec import Split

_CACHE_KEY = re.compile(r"^[A-Za-z0-9._-]+$")


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars among the labels
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")


def _sha256_json(value) -> str:
    payload = json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def fingerprint(split: Split) -> str:
    """sha256 of a split's texts and labels (which originals a cache was built from)."""
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


def read_cache(path: Path, header: dict, n_copies: int) -> tuple[Split, dict] | None:
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


def write_cache(path: Path, header: dict, copies: Split, extra: dict) -> None:
    """Write ``header`` and ``extra`` (first line) and one line per copy, atomically."""
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


def check_cache_key(cache_key: str) -> None:
    """Raises StudyConfigError unless ``cache_key`` is a plain file-name part ([A-Za-z0-9._-])."""
    if not _CACHE_KEY.match(cache_key):
        raise StudyConfigError(
            f"cache_key {cache_key!r} must be a plain file-name part ([A-Za-z0-9._-])"
        )


def model_files_sha256(name: str) -> str | None:
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
