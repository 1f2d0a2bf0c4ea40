"""The fault suite (``scripts/faults.py``) under pytest: each injected fault on a tiny real grid,
then the recovery, checked for lost or duplicated cells, an unusable store, runs left RUNNING and
temp folders left behind; and each bad input refused with exit 2 in one line.

Every scenario starts ``study`` processes (a few seconds of imports each) and trains a 4-cell
grid, so this module takes minutes on a 2-core CPU; ``-m "not faults"`` leaves it out. By default
(and so in CI, which must stay under 20 minutes) it runs a short form: SIGTERM mid-cell and the
bad inputs. ``STUDY_FAULTS=full`` (or ``STUDY_TESTS=full``) adds the rest (three workers starting
together on a new project, whose parts ``tests/test_reliability.py`` (the schema), ``tests/test_locks.py``
(six processes racing for a cell) and ``tests/test_distributed.py`` (two drivers, one teacher) test
in CI; a deleted store; SIGKILL during the teacher, Ctrl-C, zeroed and truncated teachers, a garbled
``teacher.json``, a copied store, stopping the UI, a full disk while the teacher is saved, the
tracking server SIGKILLed mid-cell and restarted, ``study server`` SIGKILLed; the checkpoint
cases: a group of 8 SIGKILLed at 80% and resumed bit-identical, a kill during a checkpoint's write,
a full disk while a checkpoint is saved, a Ray worker killed mid-group and its task retried), whose
code paths ``tests/test_reliability.py`` and ``tests/test_checkpoint.py`` also cover (the latter's
``study run`` SIGKILLed mid-group is the short form that runs in CI), and ``python scripts/faults.py`` runs them all with the table.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.faults]
FULL = os.environ.get("STUDY_FAULTS") == "full" or os.environ.get("STUDY_TESTS") == "full"
full_only = pytest.mark.skipif(not FULL, reason="full fault suite only: set STUDY_FAULTS=full")

_spec = importlib.util.spec_from_file_location(
    "faults", Path(__file__).resolve().parents[1] / "scripts" / "faults.py")
faults = importlib.util.module_from_spec(_spec)
sys.modules["faults"] = faults  # dataclasses look their module up there
_spec.loader.exec_module(faults)
if not FULL and "STUDY_FAULTS_REPEAT" not in os.environ:
    faults.SIGTERM_REPEAT = 1  # the short form kills once; the full suite three times


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def data() -> Path:
    path = faults.default_data_dir()
    if not (path / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="module")
def warm(base, data) -> Path:
    """The grid's teacher, fine-tuned once for the scenarios that start from a cached one."""
    return faults.warm_teacher(base, data)


def _check(row) -> None:
    assert row.ok, faults.format_row(row)


@pytest.mark.parametrize("name", [pytest.param("concurrent", marks=full_only), pytest.param("kill_teacher", marks=full_only),
                                  pytest.param("ui", marks=full_only), pytest.param("full_disk", marks=full_only),
                                  pytest.param("server_sigkill", marks=full_only)])
def test_fault_from_scratch(name, base, data):
    _check(faults.SCENARIOS[name](base, data, None))


@pytest.mark.parametrize("name", [
    "sigterm", pytest.param("ctrl_c", marks=full_only), pytest.param("zeroed_teacher", marks=full_only),
    pytest.param("truncated_teacher", marks=full_only), pytest.param("store_deleted", marks=full_only),
    pytest.param("prep_failure", marks=full_only), pytest.param("copied_store", marks=full_only),
    pytest.param("server_killed", marks=full_only), pytest.param("server_frozen", marks=full_only),
    pytest.param("kill_80", marks=full_only),
    pytest.param("kill_write", marks=full_only), pytest.param("full_disk_checkpoint", marks=full_only),
    pytest.param("ray_retry", marks=full_only)])
def test_fault_with_cached_teacher(name, base, data, warm):
    _check(faults.SCENARIOS[name](base, data, warm))


def test_bad_input_is_refused_in_one_line(base, data):
    rows = faults.bad_inputs(base, data)
    assert len(rows) >= 9
    failed = [faults.format_row(r) for r in rows if not r.ok]
    assert not failed, "\n".join(failed)
