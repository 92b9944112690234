"""Smoke test of the latency benchmark: the quick configuration, schema only (no timing)."""

import json

import pandas as pd

from benchmarks import latency


def test_latency_quick(tmp_path):
  out = tmp_path / "results" / "latency.csv"
  frame = latency.main(["--quick", "--out", str(out)])
  written = pd.read_csv(out)
  assert sorted(p.name for p in tmp_path.joinpath("results").iterdir()) == [
      "latency.csv", "latency.json"]  # no temp file left behind
  assert list(written.columns) == latency.COLUMNS
  assert len(written) == len(frame)
  # --quick: dense + dkp at 4x, step mode, 1 thread, XNNPack off and on: one row each.
  keys = set(zip(written["structure"], written["compression"], written["mode"],
                 written["threads"], written["xnnpack"]))
  assert len(keys) == len(written)
  assert keys == {(s, c, "step", 1, x) for s, c in (("dense", 1.0), ("dkp", 4.0), ("dkp-1x1", 4.0))
                  for x in (False, True)}
  assert (written["latency_us_median"] > 0).all()
  assert (written["latency_us_p10"] > 0).all() and (written["latency_us_p90"] > 0).all()
  assert (written["latency_us_p10"] <= written["latency_us_p90"]).all()
  assert (written["model_bytes"] > 0).all() and (written["speedup_vs_dense"] > 0).all()
  dense = written[written["structure"] == "dense"]
  assert (dense["speedup_vs_dense"] == 1.0).all()
  sidecar = json.loads((tmp_path / "results" / "latency.json").read_text())
  assert sidecar["config"]["quick"] and sidecar["host"]["device"]


def test_a_lowering_try_is_timed_in_its_modes_only(tmp_path):
  out = tmp_path / "latency.csv"
  frame = latency.main(["--quick", "--structures", "dense,dkp,dkp-fused-s", "--modes",
                        "step,sequence", "--out", str(out)])
  fused = frame[frame["structure"] == "dkp-fused-s"]
  assert set(fused["mode"]) == {"step"} and len(fused) == 2  # XNNPack off and on
  assert (fused["speedup_vs_dense"] > 0).all()
  assert (fused["verify_max_error"] < 1e-4).all()
  plain = frame[(frame["structure"] == "dkp") & (frame["mode"] == "step")]
  # Same model, same S: the fused lowering stores the same weights.
  assert fused["weights_bytes"].max() <= plain["weights_bytes"].max() * 1.05

