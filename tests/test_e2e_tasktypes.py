"""End to end for the plug-in task types: `study run` with the real all-MiniLM teacher on small
slices of CoNLL-2003 (token classification) and SQuAD (squad-devsplit, extractive QA), then what
MLflow holds (metrics, params, status) and what the analysis table and report helpers read.

Budgets are tiny (a CoNLL teacher on 256 sentences, a SQuAD teacher on 48 questions in windows
of 128 tokens, set per dataset with ``overrides``); scores are not the point, the pipeline is.
"""

from __future__ import annotations

import os

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

GRID = {
    "name": "tiny-tasks",
    "axes": {"dataset": ["conll2003", "squad-devsplit"], "student": ["L2_H384"],
             "objective": ["ce", "logit_kd", "hidden_mse"], "initialisation": ["teacher_lower"], "seed": [0]},
    "exclude": [{"dataset": "squad-devsplit", "objective": "hidden_mse"}],
    "teacher": {"epochs": 2, "learning_rate": 2.0e-4, "max_train_examples": 256, "max_eval_examples": 150,
                "max_length": 48, "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 150, "max_length": 48,
                 "batch_size": 16},
    "overrides": [{"when": {"dataset": "squad-devsplit"},
                   "teacher": {"epochs": 1, "max_train_examples": 48, "max_eval_examples": 32, "max_length": 128},
                   "training": {"max_train_examples": 32, "max_eval_examples": 32, "max_length": 128}}],
}


def test_ner_and_qa_grid_end_to_end(tmp_path, isolated_runs, shared_data):
    from study.cli import app

    path = tmp_path / "tiny-tasks.yaml"
    path.write_text(yaml.safe_dump(GRID))
    result = CliRunner().invoke(app, ["run", "--grid", str(path), "--data-dir", str(shared_data), "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tiny-tasks")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], "tags.`study.kind` = 'cell'")}
    assert len(runs) == 5 and {r.info.status for r in runs.values()} == {"FINISHED"}, result.output
    teachers = {r.data.params["dataset"]: r for r in
                client.search_runs([client.get_experiment_by_name("teachers").experiment_id])}
    assert set(teachers) == {"conll2003", "squad-devsplit"}
    assert {t.info.status for t in teachers.values()} == {"FINISHED"}

    for name, run in runs.items():
        p, m = run.data.params, run.data.metrics
        assert p["score_metric"] == "f1" and m["dev_score"] == m["dev_f1"]
        assert all(0.0 <= m[k] <= 1.0 for k in m if k.startswith("dev_") and k != "dev_loss")
        assert m["teacher_dev_score"] == teachers[p["dataset"]].data.metrics["dev_score"]
        if p["dataset"] == "conll2003":
            assert {"dev_precision", "dev_recall"} <= set(m) and "dev_exact_match" not in m
            assert p["max_length"] == "48"
        else:
            assert "dev_exact_match" in m and "dev_precision" not in m
            assert p["max_length"] == "128" and p["max_train_examples"] == "32"  # the override
        if p["objective"] == "logit_kd":
            assert "train_loss_kd" in m and "train_loss_ce" in m
        if p["objective"] == "hidden_mse":
            assert "train_loss_hidden_mse" in m

    conll_teacher = teachers["conll2003"].data.metrics
    squad_teacher = teachers["squad-devsplit"].data.metrics
    print(f"\nteacher conll2003 (256 sentences, 2 epochs): dev F1 {conll_teacher['dev_f1']:.4f}, "
          f"P {conll_teacher['dev_precision']:.4f}, R {conll_teacher['dev_recall']:.4f}; "
          f"squad-devsplit (48 questions, 1 epoch): EM {squad_teacher['dev_exact_match']:.4f}, "
          f"F1 {squad_teacher['dev_f1']:.4f}")
    # 256 sentences are enough for the teacher to find entities (measured: dev F1 0.30 on 150 sentences)
    assert conll_teacher["dev_f1"] > 0.1

    from analysis import report
    from analysis.table import load_runs

    table = load_runs("tiny-tasks")
    assert {"dev_f1", "dev_precision", "dev_recall", "dev_exact_match", "score_metric"} <= set(table.columns)
    side = report.side_by_side(table).set_index("dataset")
    assert list(side["metric"]) == ["f1", "f1"]
    assert side.loc["conll2003", "teacher"] == pytest.approx(conll_teacher["dev_score"])
    assert side.loc["conll2003", "logit_kd / teacher"] == pytest.approx(
        runs["conll2003-L2_H384-logit_kd-teacher_lower-none-s0"].data.metrics["dev_score"] / conll_teacher["dev_score"])
