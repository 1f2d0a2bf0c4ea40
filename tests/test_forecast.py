"""The wall-time forecast of `study run --dry-run`: calibration, scaling and arithmetic."""

from __future__ import annotations

import pytest

from study.execution import forecast as fc
from study.grid import parse_grid

SPEC = {"name": "f", "axes": {"dataset": ["sst2"], "student": ["L2_H384", "L4_H384"],
                              "objective": ["ce", "logit_kd", "attention_kl"]},
        "teacher": {"epochs": 2, "max_train_examples": 1000}, "training": {"epochs": 3, "max_train_examples": 500}}


def calibration():
    return fc.Calibration({("cpu", "L2_H384", "plain"): 0.01, ("cpu", "L2_H384", "logits"): 0.02,
                           ("cpu", "L2_H384", "features"): 0.04},
                          {("cpu", "sentence-transformers/all-MiniLM-L6-v2"): 0.1}, source="test")


def test_objective_kinds():
    kinds = {c.objective: fc.objective_kind(c) for c in parse_grid(SPEC).cells()}
    assert kinds == {"ce": "plain", "logit_kd": "logits", "attention_kl": "features"}


def test_forecast_is_rate_times_examples_and_scales_by_size():
    grid = parse_grid(SPEC)
    cells = grid.cells()
    f = fc.forecast(cells, grid.teachers(), {"sst2": 67349}, calibration(), "cpu")
    by = {(c.student, c.objective): f.cell_seconds[c.cell_id] for c in cells}
    assert by[("L2_H384", "ce")] == pytest.approx(0.01 * 500 * 3)
    assert by[("L2_H384", "attention_kl")] == pytest.approx(0.04 * 500 * 3)
    assert by[("L4_H384", "logit_kd")] == pytest.approx(2 * 0.02 * 500 * 3)  # twice the layers
    assert f.basis["L4_H384 logits"] == "scaled from L2_H384" and f.basis["L2_H384 plain"] == "measured"
    assert sum(f.teacher_seconds.values()) == pytest.approx(0.1 * 1000 * 2)
    # a dataset smaller than the budget caps the examples
    small = fc.forecast(cells[:1], [], {"sst2": 100}, calibration(), "cpu")
    assert small.total_s == pytest.approx(0.01 * 100 * 3)


def test_missing_figures_say_so():
    cal = fc.Calibration({("cpu", "L2_H384", "plain"): 0.01}, {}, source="test")
    cells = parse_grid(SPEC).cells()
    with pytest.raises(LookupError, match="no calibration figure for features objectives on cuda"):
        fc.forecast([c for c in cells if c.objective == "attention_kl"], [], {"sst2": 10}, cal, "cuda")


def test_shipped_calibration_covers_the_cpu_kinds():
    cal = fc.shipped_calibration()
    for kind in fc.KINDS:
        assert cal.rate("cpu", "L2_H384", kind)[0] > 0
    assert cal.teacher_rate("cpu", "sentence-transformers/all-MiniLM-L6-v2") > 0


def _run(wall, examples, group_size=None, alpha="0.5", cpu_share=0.99, device="cpu", dataset="sst2", max_length=64):
    from types import SimpleNamespace

    metrics = {"wall_time_s": wall, "train_examples": examples}
    if cpu_share is not None:
        metrics.update(cpu_time_s=cpu_share * wall * 2, cpu_threads=2)
    if group_size is not None:
        metrics["group_size"] = group_size
    return SimpleNamespace(info=SimpleNamespace(status="FINISHED"),
                           data=SimpleNamespace(params={"epochs": "1", "student": "L2_H384", "prediction.alpha": alpha,
                                                        "dataset": dataset, "max_length": str(max_length)},
                                                metrics=metrics, tags={"study.device": device}))


def test_store_calibration_leaves_grouped_cells_out():
    # A grouped cell's wall time is its whole group's: read as one cell's, it would forecast 8x.
    runs = {"a": [_run(10.0, 1000)], "b": [_run(80.0, 1000, group_size=8)], "c": [_run(12.0, 1000, group_size=1)]}
    cal = fc.store_calibration(runs, [])
    assert cal.train[("cpu", "L2_H384", "logits")] == pytest.approx(0.011)  # median of 0.010 and 0.012


def test_store_calibration_leaves_runs_that_shared_the_cpu_out():
    # 2 cores: alone a run gets ~0.99 of them; beside a second training process ~0.5, and its
    # wall time (twice as long) would double the forecast.
    runs = {"alone": [_run(10.0, 1000)], "shared": [_run(20.0, 1000, cpu_share=0.5)],
            "unlogged": [_run(30.0, 1000, cpu_share=None)]}
    cal = fc.store_calibration(runs, [])
    assert cal.train == {("cpu", "L2_H384", "logits"): pytest.approx(0.010)}
    assert fc.cpu_share({"cpu_time_s": 19.8, "wall_time_s": 10.0, "cpu_threads": 2}) == pytest.approx(0.99)
    assert fc.cpu_share({"wall_time_s": 10.0}) is None
    # a GPU run's wall time counts whatever its CPU share (the host waits on the device)
    gpu = fc.store_calibration({"g": [_run(5.0, 1000, cpu_share=0.1, device="cuda")]}, [])
    assert gpu.train == {("cuda", "L2_H384", "logits"): pytest.approx(0.005)}


def test_a_group_shares_its_teacher_pass():
    from study.execution.units import work_units

    spec = {**SPEC, "axes": {"dataset": ["sst2"], "student": ["L2_H384"],
                             "objective": ["ce", "logit_kd", "logit_mse", "attention_kl", "hidden_mse"]}}
    cells = [c for c in parse_grid(spec).cells()]
    feats = [c for c in cells if fc.objective_kind(c) == "features"]
    assert len(feats) == 2
    alone = fc.forecast(cells, [], {"sst2": 67349}, calibration(), "cpu", groups=work_units(cells, 1))
    grouped = fc.forecast(cells, [], {"sst2": 67349}, calibration(), "cpu", groups=work_units(cells, 8))
    assert alone.group_saving_s == 0 and alone.total_s == pytest.approx(sum(alone.cell_seconds.values()))
    # one group of five: the second features student saves (0.04 - 0.02) s per example
    assert len(work_units(cells, 8)) == 1
    assert grouped.group_saving_s == pytest.approx((0.04 - 0.02) * 500 * 3)
    assert grouped.total_s == pytest.approx(alone.total_s - grouped.group_saving_s)


def test_examples_are_priced_by_their_tokens(shared_data):
    from study.execution.datacache import DataCache

    data = DataCache(shared_data)
    model = "sentence-transformers/all-MiniLM-L6-v2"
    tokens = fc.example_tokens({("sst2", 64, model), ("mrpc", 128, model), ("mrpc", 16, model),
                                ("squad-devsplit", 256, model), ("no-such-set", 64, model)}, data)
    assert set(tokens) == {("sst2", 64), ("mrpc", 128), ("mrpc", 16), ("squad-devsplit", 256)}
    cal = fc.shipped_calibration()
    # SST-2 at 64 is the calibration's reference example; MRPC's sentence pairs are about 4x as
    # long; truncation at 16 caps them; a SQuAD question reads one or more windows of up to 256.
    assert tokens[("sst2", 64)] == pytest.approx(cal.reference_tokens, abs=0.05)
    assert 45 < tokens[("mrpc", 128)] < 60 and tokens[("mrpc", 16)] == 16
    assert tokens[("squad-devsplit", 256)] > 150
    spec = {**SPEC, "axes": {"dataset": ["sst2", "mrpc"], "student": ["L2_H384"], "objective": ["logit_kd"]},
            "training": {"epochs": 1, "max_train_examples": 1000, "max_length": 128}}
    cells = parse_grid(spec).cells()
    f = fc.forecast(cells, [], {"sst2": 67349, "mrpc": 3668}, calibration(), "cpu",
                    tokens={**tokens, ("sst2", 128): tokens[("sst2", 64)]})
    by = {c.dataset: f.cell_seconds[c.cell_id] for c in cells}
    ratio = (cal.overhead_tokens + tokens[("mrpc", 128)]) / (cal.overhead_tokens + tokens[("sst2", 64)])
    assert by["mrpc"] / by["sst2"] == pytest.approx(ratio)
    assert by["sst2"] == pytest.approx(0.02 * 1000 * cal.token_factor(tokens[("sst2", 64)]))
    unknown = fc.forecast(cells, [], {"sst2": 67349, "mrpc": 3668}, calibration(), "cpu")
    assert unknown.basis["mrpc tokens"] == "not known: priced as the reference example"


def test_store_calibration_reads_rates_per_reference_example():
    # the same per-reference-example rate measured on SST-2 (13 tokens) and on a set twice as costly
    ref = fc.shipped_calibration()
    long = 2 * (ref.overhead_tokens + ref.reference_tokens) - ref.overhead_tokens
    runs = {"a": [_run(10.0, 1000)], "b": [_run(20.0, 1000, dataset="long", max_length=128)]}
    cal = fc.store_calibration(runs, [], {("sst2", 64): ref.reference_tokens, ("long", 128): long}, ref)
    assert cal.train == {("cpu", "L2_H384", "logits"): pytest.approx(0.010)}


def test_teacher_fine_tuning_has_its_own_token_overhead():
    cal = fc.shipped_calibration()
    assert cal.token_factor(cal.reference_tokens, teacher=True) == pytest.approx(1.0)
    # 100 tokens cost the 6-layer teacher nearly in proportion, the 2-layer student less so
    assert cal.token_factor(100.0, teacher=True) == pytest.approx((1.0 + 100) / (1.0 + 13.19))
    assert cal.token_factor(100.0) == pytest.approx((18.0 + 100) / (18.0 + 13.19))
    spec = {**SPEC, "teacher": {"epochs": 1, "max_train_examples": 1000, "max_length": 128}}
    grid = parse_grid(spec)
    f = fc.forecast([], grid.teachers(), {"sst2": 67349}, calibration(), "cpu", tokens={("sst2", 128): 100.0})
    assert sum(f.teacher_seconds.values()) == pytest.approx(0.1 * 1000 * cal.token_factor(100.0, teacher=True))
