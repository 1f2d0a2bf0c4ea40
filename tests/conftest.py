"""Shared test helpers: where the real benchmark data lives, and an isolated runs/ folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No model hub is reachable where the suite runs (CI, the dev machine): offline mode makes a hub
# lookup fail at once instead of after ~20 s of connection retries (a test that names a missing
# hub model took 23 s for that alone). Set before any test imports huggingface_hub, which reads it
# once; `study` processes the tests start inherit it. A run that sets it keeps its own value.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("STUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real GLUE copies in ../shared/data (skips when absent)."""
    if not (DATA / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture
def isolated_runs(tmp_path, monkeypatch) -> Path:
    """A fresh runs/ folder and MLflow store for one test."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("STUDY_RUNS_DIR", str(runs))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{runs / 'mlflow.db'}")
    runs.mkdir()
    return runs


@pytest.fixture(scope="module")
def sst2_tiny():
    """64 SST-2 training and 32 dev sentences tokenised at length 32 with the MiniLM tokenizer, on
    one thread with deterministic algorithms (tiny models: a second thread only contends on a busy
    2-core machine): (tokenizer, train_ds, dev_ds, dev_labels). Skips without the data."""
    import torch
    from transformers import AutoTokenizer

    from study.execution.datacache import DataCache
    from study.models import resolve_teacher_path
    from study.tasks.spec import Split
    from study.tasktypes.sequence import TokenizedSplit

    if not (DATA / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip(f"real data not found at {DATA}")
    torch.use_deterministic_algorithms(True, warn_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(resolve_teacher_path("all-MiniLM-L6-v2"))
    raw = DataCache(DATA).raw("sst2")
    train_split = Split(raw["train"].texts[:64], raw["train"].labels[:64])
    dev_split = Split(raw["dev"].texts[:32], raw["dev"].labels[:32])
    yield (tokenizer, TokenizedSplit(train_split, tokenizer, 32), TokenizedSplit(dev_split, tokenizer, 32),
           list(dev_split.labels))
    torch.set_num_threads(threads)


def tiny_bert(vocab: int, layers: int, hidden: int, seed: int):
    """A BertForSequenceClassification of ``layers`` x ``hidden`` (2 heads), seeded, in eval mode."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, num_labels=2, attn_implementation="sdpa")
    return BertForSequenceClassification(cfg).eval()
