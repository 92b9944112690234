"""The main job on tiny settings: both models trained, converted, verified, timed, reported."""

import json

import pytest

from pipelines import dense_vs_dkp
from pipelines import run
from pipelines import training


def test_main_job_writes_a_complete_report(tmp_path, capsys):
  out = tmp_path / "demo"
  code = run.main(["--out", str(out), "--epochs", "2", "--tokens", "30000", "--units", "32",
                   "--compression", "10"])
  assert code == 0
  report = json.loads((out / "report.json").read_text())
  models = {row["model"]: row for row in report["models"]}
  assert set(models) == {"dense", "dkp"}
  assert models["dkp"]["compression"] > 1.2 and models["dense"]["compression"] == 1  # embedding stays dense
  assert models["dkp"]["tflite_bytes"] < models["dense"]["tflite_bytes"]
  for row in models.values():
    assert row["verification_error"] < 1e-4
    assert row["step_latency_us"] > 0 and row["test_perplexity"] > 1
  for name in ("report.md", "report.png", "dense_step.tflite", "dkp_step.tflite", "dkp.keras"):
    assert (out / name).stat().st_size > 0
  assert "best achievable" in capsys.readouterr().out


def test_refuses_to_overwrite_another_run(tmp_path, capsys):
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "report.json").write_text("{}")
  assert run.main(["--out", str(tmp_path / "old")]) == 1
  assert "already holds a run" in capsys.readouterr().err
  assert (tmp_path / "old" / "report.json").read_text() == "{}"


def test_force_deletes_only_the_jobs_own_files(tmp_path):
  out = tmp_path / "old"
  out.mkdir()
  (out / "report.json").write_text("{}")
  (out / "notes.txt").write_text("mine")
  training.prepare_run_dir(str(out), force=True, run_files=dense_vs_dkp.REPORT_FILES)
  assert not (out / "report.json").exists() and (out / "notes.txt").read_text() == "mine"
  with pytest.raises(ValueError, match="this job cannot resume"):
    training.prepare_run_dir(str(out), resume=True, run_files=dense_vs_dkp.REPORT_FILES)
