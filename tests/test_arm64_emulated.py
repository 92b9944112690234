"""The emulated arm64 target for real: runs only where build_root.sh's root exists (as root)."""

import csv
import os
import subprocess

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ON_DEVICE = os.path.join(REPO, "benchmarks", "on_device")
EMULATED = os.path.join(ON_DEVICE, "emulated")
ARM64_ROOT = os.environ.get("DKP_ARM64_ROOT") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dkp-keras", "arm64-root")


def _why_not():
  if os.geteuid() != 0:
    return "emulation needs root (chroot, mount)"
  if not os.path.exists(os.path.join(ARM64_ROOT, ".dkp-arm64-root-ready")):
    return (f"no arm64 root at {ARM64_ROOT}; build it with "
            "`sudo bash benchmarks/on_device/emulated/build_root.sh`")
  return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def _in_root(cpu, *command, share=None):
  args = ["bash", os.path.join(EMULATED, "run_in_root.sh"), "--root", ARM64_ROOT, "--cpu", cpu]
  if share:
    args += ["--share", str(share)]
  return subprocess.run(["nice", "-n", "10", *args, "--", *command], capture_output=True,
                        text=True, timeout=300, check=True).stdout


def test_qemu_cpu_is_pinned():
  """The guest's AT_HWCAP follows QEMU_CPU: no i8mm / SVE on the Pis' cores, all on max."""
  script = "/mnt/dkp-share/guest_cpuinfo.py"
  seen = {cpu: set(_in_root(cpu, "/usr/bin/python3", script, "--features", share=EMULATED)
                   .split()) for cpu in ("cortex-a72", "cortex-a76", "max")}
  assert "asimd" in seen["cortex-a72"] and not seen["cortex-a72"] & {"asimddp", "i8mm", "sve"}
  assert "asimddp" in seen["cortex-a76"] and not seen["cortex-a76"] & {"i8mm", "sve", "sme"}
  assert {"asimddp", "i8mm", "sve", "sve2", "sme"} <= seen["max"]


def test_rpi_sh_runs_emulated(tmp_path):
  """rpi.sh --target emulated-a76 times a real model in the root and parses it on the host."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  models = tmp_path / "models"
  models.mkdir()
  dense = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(4)])
  (models / "dense_1x_step.tflite").write_bytes(
      tf.lite.TFLiteConverter.from_keras_model(dense).convert())
  out = tmp_path / "emu.csv"
  result = subprocess.run(
      ["nice", "-n", "10", "bash", os.path.join(ON_DEVICE, "rpi.sh"), str(models), "--target",
       "emulated-a76", "--root", ARM64_ROOT, "--threads", "1", "--runs", "3", "--out", str(out)],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  with open(out, encoding="utf-8") as handle:
    rows = list(csv.DictReader(handle))
  assert sorted(r["xnnpack"] for r in rows) == ["False", "True"]
  assert all(r["device"] == "emulated cortex-a76 aarch64" and r["source"] == "time_tflite"
             for r in rows)
  assert all(float(r["latency_us_median"]) > 0 and r["runs"] == "3" for r in rows)
  assert np.isclose(float(rows[0]["speedup_vs_dense"]), 1.0)


def test_multi_row_int8_fc_agrees_without_sme(tmp_path):
  """Issue 22's finding, on the cores that must be right: a dynamic-int8 FC with 2 input rows
  (what the DKP Kronecker factors run) agrees with x86 on a Pi 5's core and on qemu's max CPU
  with SME off (with SME on, qemu 7.2 gets XNNPack's SME kernel wrong, qemu 10 right:
  studies/results/arm64_fc_probe*_emulated.csv)."""
  # pylint: disable=import-outside-toplevel
  import shutil
  from benchmarks.studies import arm64_fc_probe
  from benchmarks import arm64_parity
  work = str(tmp_path)
  entries = arm64_fc_probe.write_models([2], [(32, 64)], 1, work)
  arm64_parity.write_manifest(entries, work)
  shutil.copy(arm64_parity.GUEST_OUTPUTS, work)
  arm64_parity.run_host(work, os.path.join(work, "outputs-x86"))
  runs = {"x86": arm64_parity.load_run(os.path.join(work, "outputs-x86"))}
  for cpu, name in (("cortex-a76", "outputs-a76"), ("max,sme=off", "outputs-nosme")):
    arm64_parity.run_emulated(work, cpu, name, ARM64_ROOT)
    runs[cpu] = arm64_parity.load_run(os.path.join(work, name))
  rows = arm64_fc_probe.probe_rows(entries, runs)
  assert len(rows) == 4
  assert all(row["status"] == "ok" for row in rows), rows


def test_insn_plugin_counts_exactly():
  """build_plugins.sh's libinsn.so counts the guest's instructions, the same count each run."""
  # pylint: disable=import-outside-toplevel
  import glob
  import re
  plugins = sorted(glob.glob(os.path.join(os.path.dirname(ARM64_ROOT), "qemu-plugins-*",
                                          "libinsn.so")))
  if not plugins:
    pytest.skip("no libinsn.so; build it with "
                "`bash benchmarks/on_device/emulated/build_plugins.sh`")
  command = ["qemu-aarch64", "-cpu", "cortex-a72", "-L", ARM64_ROOT, "-plugin", plugins[-1],
             "-d", "plugin", os.path.join(ARM64_ROOT, "bin", "true")]
  counts = []
  for _ in range(2):
    text = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          check=True).stderr + "\n"
    counts.append(int(re.search(r"total insns: (\d+)", text).group(1)))
  assert counts[0] > 1000 and counts[0] == counts[1]
