"""Smoke test of the training-step benchmark: tiny sizes, runs in seconds."""

import json
import os
import re
import time

from benchmarks import checkpoint_size, common, train_step


def test_train_step_quick(tmp_path):
  out = tmp_path / "results" / "train_step.json"
  data = train_step.main([
      "--quick", "--units", "32", "--vocab", "200", "--steps", "6", "--layers", "1", "--batch", "4",
      "--compression", "4", "--repeats", "2", "--warmup", "1", "--block", "1", "--out",
      str(out)
  ])
  written = json.loads(out.read_text())
  assert written["config"] == data["config"]
  assert set(written["models"]) == set(train_step.MODELS)
  assert list(tmp_path.joinpath("results").iterdir()) == [out]  # no temp file left behind
  for name, entry in written["models"].items():
    assert entry["median_s"] > 0 and entry["min_s"] > 0, name
    assert len(entry["samples_s"]) == 2
    assert entry["ratio_to_dense"] > 0
    lstm = [row for row in entry["lstm_layers"] if row["layer"] != "total"]
    assert len(lstm) == 1
    for row in lstm:
      assert row["dense_params"] > 0 and row["params"] > 0
      expected = 1.0 if name == "dense" else 4.0
      assert abs(row["planned_compression"] - expected) / expected < 0.2, (name, row)
  assert written["models"]["dense"]["ratio_to_dense"] == 1.0
  assert written["models"]["dense"]["ratio_of_mins"] == 1.0
  assert written["host"]["tensorflow"]
  assert written["host"]["device"].startswith(("CPU", "GPU"))


def test_parse_args_quick_overrides():
  config, _, models = train_step.parse_args(["--quick", "--units", "16"])
  assert config["units"] == 16 and config["vocab"] == train_step.QUICK["vocab"]
  assert models == train_step.MODELS
  config, _, models = train_step.parse_args(["--models", "dense,dkp"])
  assert config["units"] == 650 and models == ("dense", "dkp")


def test_sgd_probe_quick_runs_factored_methods_both_ways(tmp_path):
  from benchmarks.studies import sgd_probe  # pylint: disable=import-outside-toplevel
  out = tmp_path / "sgd_probe.json"
  assert sgd_probe.main(["--quick", "--fraction", "0.02", "--out", str(out)]) == 0
  written = json.loads(out.read_text())
  runs = [(r["method"], r["precondition_factors"]) for r in written["results"]]
  assert runs == [("dense", False), ("kp", False), ("kp", True)]
  assert all(r["valid_ppl"] > 1 and r["seconds"] > 0 for r in written["results"])
  summary = written["summary"]
  assert [(s["method"], s["precondition_factors"]) for s in summary] == runs
  assert summary[0]["median_vs_dense"] == 1.0
  assert summary[2]["valid_ppl_median"] == written["results"][2]["valid_ppl"]  # one seed
  assert written["recipe"]["optimizer"] == "sgd" and written["recipe"]["sum_over_steps"]
  assert written["commit"].startswith(common.git_commit()[:40])
  assert written["data"] == "embedded"
  assert sgd_probe.main(["--quick", "--methods", "dense,nope", "--out", str(out)]) == 2
  assert sgd_probe.main(["--quick", "--seeds", "a", "--out", str(out)]) == 2


def test_project_path_is_relative_to_the_project(monkeypatch, tmp_path):
  assert common.project_path(None) == "embedded"
  beside = os.path.join(common.PROJECT_ROOT, "..", "shared", "data", "ptb")
  assert common.project_path(beside) == os.path.join("..", "shared", "data", "ptb")
  monkeypatch.chdir(common.PROJECT_ROOT)
  assert common.project_path(os.path.join("runs", "accuracy")) == os.path.join("runs", "accuracy")
  monkeypatch.chdir(tmp_path)  # a relative path is read from where the command runs
  assert not os.path.isabs(common.project_path("runs"))
  assert common.project_path("runs").endswith("runs")


def test_checkpoint_size_quick(tmp_path):
  out = tmp_path / "checkpoint_size.json"
  assert checkpoint_size.main(["--quick", "--out", str(out)]) == 0
  rows = json.loads(out.read_text())["rows"]
  assert [(r["structure"], r["compression"]) for r in rows] == [
      ("dense", 1.0), ("dkp", 4.0), ("dkp-1x1", 4.0)]
  assert all(r["bit_exact_reload"] for r in rows)
  # S is stored sparse: the annealed DKP files are smaller than the dense one.
  assert all(r["dense_bytes_over_this"] > 1.5 for r in rows[1:])


def test_result_record_is_what_ran_where_then_its_sections_then_time_and_date():
  start = time.perf_counter()
  record = common.result_record("demo", {"units": 8}, {"device": "CPU"}, start,
                                timing={"clock": "time.perf_counter"}, rows=[1, 2])
  assert list(record) == ["benchmark", "config", "host", "timing", "rows", "wall_s", "created"]
  assert record["benchmark"] == "demo" and record["rows"] == [1, 2]
  assert 0 <= record["wall_s"] <= time.perf_counter() - start
  assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", record["created"])
