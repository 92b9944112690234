"""arm64 output parity: the comparison, the CSV on recorded outputs, and guest_outputs.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import arm64_parity
from benchmarks import latency
from pipelines import choices
from pipelines import conversion


def _entry(name, quantize="none", **extra):
  return {"name": name, "file": f"models/{name}.tflite", "mode": "step",
          "inputs": f"inputs/{name}.npy", "model": name.split("_")[0], "structure": "dkp",
          "compression": 25.0, "quantize": quantize, "kernel": "block",
          "tolerance": choices.TOLERANCES[quantize], **extra}


def _record(directory, outputs):
  """A guest_outputs.py output directory: {key: array or error text}."""
  os.makedirs(directory)
  status = {}
  for key, value in outputs.items():
    if isinstance(value, str):
      status[key] = value
    else:
      np.save(os.path.join(directory, key + ".npy"), value)
      status[key] = "ok"
  with open(os.path.join(directory, "status.json"), "w", encoding="utf-8") as handle:
    json.dump({"machine": "aarch64", "status": status}, handle)
  return str(directory)


def test_rows_csv_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  ref = rng.normal(size=(2, 1, 3, 4)).astype(np.float32)
  off = ref + np.float32(1e-6)
  wrong = ref.copy()
  wrong[1, 0, 2, 0] += 0.42 * np.abs(ref[1]).max()  # one sample, one value: 42% normwise
  entries = [_entry("dkp_25x_step"), _entry("dkp-int8_25x_step", "dynamic-int8"),
             _entry("hmd_25x_step", convert_error="the TFLite converter failed: boom")]
  x86 = _record(tmp_path / "x86", {
      "dkp_25x_step__xnnon": ref, "dkp_25x_step__xnnoff": ref,
      "dkp-int8_25x_step__xnnon": "error: failed to prepare",
      "dkp-int8_25x_step__xnnoff": ref})
  arm = _record(tmp_path / "max", {
      "dkp_25x_step__xnnon": off, "dkp_25x_step__xnnoff": off,
      "dkp-int8_25x_step__xnnon": wrong, "dkp-int8_25x_step__xnnoff": wrong})
  runs = {"x86": arm64_parity.load_run(x86), "max": arm64_parity.load_run(arm)}
  rows = arm64_parity.parity_rows(entries, runs)
  out = tmp_path / "results" / "parity.csv"
  arm64_parity.write_csv(rows, str(out))
  back = arm64_parity.read_csv(str(out))
  assert [r["model"] for r in back] == ["dkp_25x_step"] * 3 + ["dkp-int8_25x_step"] * 3 + [
      "hmd_25x_step"]
  by = {(r["model"], r["platform"], r["xnnpack"]): r for r in back}
  x86_row = by[("dkp_25x_step", "x86", True)]
  assert x86_row["reference"] == "x86 builtin" and x86_row["max_error"] == 0.0
  assert x86_row["emulated"] is False and x86_row["status"] == "ok"
  agree = by[("dkp_25x_step", "emulated max", False)]
  assert agree["status"] == "ok" and agree["within_tolerance"] is True and agree["emulated"]
  assert 0 < agree["max_error"] < 1e-4 and agree["samples"] == 2
  assert by[("dkp-int8_25x_step", "x86", True)]["status"] == "error: failed to prepare"
  assert by[("dkp-int8_25x_step", "emulated max", True)]["status"].startswith("no reference")
  bad = by[("dkp-int8_25x_step", "emulated max", False)]
  assert bad["status"] == "DISAGREES" and bad["within_tolerance"] is False
  assert bad["max_error"] == pytest.approx(0.42, rel=1e-3) and bad["tolerance"] == 0.1
  failed = by[("hmd_25x_step", "x86", None)]
  assert failed["status"].startswith("conversion failed: the TFLite converter failed")
  assert failed["max_error"] is None
  assert "DISAGREES" in arm64_parity.format_table(rows)


def test_cli_refusals(tmp_path, capsys):
  for args, message in ((["--out", str(tmp_path)], "must be a .csv file name"),
                        (["--keep", str(tmp_path)], "exists; give a new directory"),
                        (["--models", "dense,nope"], "unknown ['nope']")):
    with pytest.raises(SystemExit):
      arm64_parity.parse_args(args)
    assert message in capsys.readouterr().err


def test_guest_outputs_step_chain_matches_sequence(tmp_path):
  """guest_outputs.py feeds a step model its states back: the same outputs as sequence mode."""
  model = latency.build_model("baseline", 8, 1, 1.0)
  for mode in ("step", "sequence"):
    conversion.convert(model, str(tmp_path / f"m_{mode}.tflite"), mode=mode, seq_len=5,
                             verify_samples=0)
  inputs = np.random.default_rng(1).normal(size=(2, 1, 5, 8)).astype(np.float32)
  np.save(tmp_path / "x.npy", inputs)
  manifest = {"models": [{"name": f"m_{mode}", "file": f"m_{mode}.tflite", "mode": mode,
                          "inputs": "x.npy"} for mode in ("step", "sequence")],
              "xnnpack": ["off"]}
  (tmp_path / "manifest.json").write_text(json.dumps(manifest))
  subprocess.run([sys.executable, arm64_parity.GUEST_OUTPUTS, "--manifest",
                  str(tmp_path / "manifest.json"), "--out", str(tmp_path / "out")],
                 check=True, capture_output=True)
  run = arm64_parity.load_run(str(tmp_path / "out"))
  assert run["m_step__xnnoff"].shape == (2, 1, 5, 8)
  assert arm64_parity.max_error(run["m_step__xnnoff"], run["m_sequence__xnnoff"]) < 1e-5
  reference = model(inputs[1]).numpy()
  assert np.allclose(run["m_step__xnnoff"][1], reference, atol=1e-5)


def test_cpu_list_takes_qemu_properties():
  parse = arm64_parity.name_list(arm64_parity.CPUS, separator=";")
  assert parse("cortex-a72;max,sme=off") == ("cortex-a72", "max,sme=off")
  with pytest.raises(Exception, match="unknown"):
    parse("cortex-a53")


def test_fc_probe_rows_on_recorded_outputs(tmp_path):
  from benchmarks.studies import arm64_fc_probe  # pylint: disable=import-outside-toplevel
  ref = np.ones((2, 1, 2, 4), np.float32)
  entries = [{"name": "fc_rows2_in25_out52", "rows": 2, "in_features": 25, "out_features": 52}]
  x86 = _record(tmp_path / "x86", {"fc_rows2_in25_out52__xnnon": ref,
                                    "fc_rows2_in25_out52__xnnoff": ref})
  sme = _record(tmp_path / "max", {"fc_rows2_in25_out52__xnnon": -ref,
                                    "fc_rows2_in25_out52__xnnoff": "error: boom"})
  rows = arm64_fc_probe.probe_rows(entries, {"x86": arm64_parity.load_run(x86),
                                             "max": arm64_parity.load_run(sme)})
  assert [(r["platform"], r["xnnpack"], r["status"]) for r in rows] == [
      ("emulated max", True, "DISAGREES"), ("emulated max", False, "error: boom")]
  assert rows[0]["max_error"] == pytest.approx(2.0) and rows[0]["rows"] == 2
  out = tmp_path / "probe.csv"
  arm64_parity.write_csv(rows, str(out), arm64_fc_probe.COLUMNS)
  back = arm64_parity.read_csv(str(out))
  assert back[0]["within_tolerance"] is False and back[1]["max_error"] is None
  assert list(back[0]) == arm64_fc_probe.COLUMNS
