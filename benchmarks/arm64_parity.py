"""Output parity of converted models between LiteRT on x86 and on emulated arm64 cores.

Builds tiny LSTM stacks (``--units`` x ``--layers``, default 2x64, as
`benchmarks.latency` builds them), converts each with `pipelines.convert` in
step and sequence mode, feeds the same random inputs to LiteRT on this host
(x86) and inside the arm64 root of `benchmarks/on_device/emulated/build_root.sh`
under qemu-user pinned to each ``--cpus`` core (cortex-a72: Raspberry Pi 4,
cortex-a76: Pi 5, max: every feature qemu has, no real chip), XNNPack on and
off, both sides running `guest_outputs.py`. Each arm64 run's outputs are
compared with x86's of the same XNNPack setting (max normwise error over the
samples, `dkp_keras.verify.normwise_error`) against the tolerance
`pipelines.convert --verify` uses for the model's quantization. The x86
XNNPack-on rows compare x86 with its own builtin kernels.

Models (``--models``): ``dense`` (Keras LSTM), ``dkp`` (1x4 S, block kernel),
``dkp-csr`` (1x1 S stored as CSR), ``dkp-int8`` / ``dense-int8`` (dynamic int8),
``dkp-f16`` (float16), ``lmf``, ``hmd``.

Everything is emulated: the errors are the aarch64 runtime's, computed by
qemu's models of the cores, not a board's. Needs root (chroot) and the root.

    sudo python -m benchmarks.arm64_parity          # every model, the three cores
    sudo python -m benchmarks.arm64_parity --quick  # dense and dkp, cortex-a72 only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import common  # imports dkp_keras first
from benchmarks import latency

from dkp_keras import verify as dkp_verify  # noqa: E402  pylint: disable=wrong-import-order
from pipelines import choices  # noqa: E402
from pipelines import conversion  # noqa: E402
from tflite_ops import files  # noqa: E402

EMULATED_DIR = os.path.join(common.PROJECT_ROOT, "benchmarks", "on_device", "emulated")
GUEST_OUTPUTS = os.path.join(EMULATED_DIR, "guest_outputs.py")
RUN_IN_ROOT = os.path.join(EMULATED_DIR, "run_in_root.sh")


def _script_setting(script, name):
  """A ``NAME=value`` line of an emulated/ script: the scripts' setting, written there once."""
  with open(os.path.join(EMULATED_DIR, script), encoding="utf-8") as handle:
    match = re.search(rf"^{name}=(\S+)$", handle.read(), re.MULTILINE)
  if match is None:
    raise RuntimeError(f"emulated/{script} sets no {name}")
  return match.group(1)


# Where run_in_root.sh --share mounts the work directory in the root.
SHARE_AT = _script_setting("run_in_root.sh", "SHARE_AT")
GUEST_VENV = _script_setting("root.sh", "DKP_ARM64_VENV")  # the root's venv, as the guest sees it
GUEST_PYTHON = f"{GUEST_VENV}/bin/python"
BINFMT_QEMU = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"  # a link to qemu-aarch64-static
HOST = "x86"
CPUS = ("cortex-a72", "cortex-a76", "max")
# name -> (latency.build_model structure, quantize, sparse kernel)
MODELS = {
    "dense": ("baseline", "none", "auto"),
    "dkp": ("dkp", "none", "block"),
    "dkp-csr": ("dkp-1x1", "none", "csr"),
    "dkp-int8": ("dkp", "dynamic-int8", "block"),
    "dense-int8": ("baseline", "dynamic-int8", "auto"),
    "dkp-f16": ("dkp", "float16", "block"),
    "lmf": ("lmf", "none", "auto"),
    "hmd": ("hmd", "none", "auto"),
}
MODES = ("step", "sequence")
COLUMNS = ["model", "structure", "compression", "quantize", "kernel", "mode", "platform",
           "xnnpack", "reference", "samples", "max_error", "tolerance", "within_tolerance",
           "status", "emulated"]
DEFAULTS = {"units": 64, "layers": 2, "compression": 25.0, "samples": 4, "steps": 8,
            "models": tuple(MODELS), "cpus": CPUS, "modes": MODES, "seed": 0}
QUICK = {"models": ("dense", "dkp"), "cpus": ("cortex-a72",), "modes": ("step",),
         "samples": 2, "steps": 3}
DEFAULT_OUT = os.path.join("benchmarks", "results", "arm64_parity_emulated.csv")

# --------------------------------------------------------------------------- models


def build_and_convert(config, work, log=print, models=MODELS):
  """Converts every model x mode into ``work``; writes its inputs; returns manifest entries.

  ``models`` maps ``config["models"]``' names to (structure, quantize, kernel) and
  optionally a dict of further `conversion.convert` options.
  """
  for sub in ("models", "inputs"):
    os.makedirs(os.path.join(work, sub), exist_ok=True)
  rng = np.random.default_rng(config["seed"])
  entries, built = [], {}
  for name in config["models"]:
    structure, quantize, kernel = models[name][:3]
    options = models[name][3] if len(models[name]) > 3 else {}
    compression = 1.0 if structure == "baseline" else config["compression"]
    if structure not in built:
      model = latency.build_model(structure, config["units"], config["layers"], compression,
                                  config["seed"])
      if latency.DKP_KWARGS.get(structure, {}).get("doped"):
        model = latency.anneal_cheaply(model, config["units"], config["seed"])
      built[structure] = model
    for mode in config["modes"]:
      stem = f"{name}_{compression:g}x_{mode}"
      path = os.path.join(work, "models", stem + ".tflite")
      entry = {"name": stem, "file": f"models/{stem}.tflite", "mode": mode,
               "inputs": f"inputs/{stem}.npy", "model": name, "structure": structure,
               "compression": compression, "quantize": quantize, "kernel": kernel,
               "tolerance": choices.TOLERANCES[quantize]}
      start = time.perf_counter()
      try:
        conversion.convert(built[structure], path, mode=mode, seq_len=config["steps"],
                                 sparse_kernel=kernel, quantize=quantize, verify_samples=2,
                                 force=True, **options)
      except (ValueError, conversion.ConversionError) as error:
        entry["convert_error"] = str(error).splitlines()[0][:200]
        log(f"  {stem}: conversion failed: {entry['convert_error']}")
        entries.append(entry)
        continue
      inputs = rng.normal(size=(config["samples"], 1, config["steps"], config["units"]))
      np.save(os.path.join(work, entry["inputs"]), inputs.astype(np.float32))
      entries.append(entry)
      log(f"  converted {stem} in {time.perf_counter() - start:.1f} s")
  return entries


def write_manifest(entries, work):
  """The manifest guest_outputs.py reads (the models that converted); its path."""
  path = os.path.join(work, "manifest.json")
  runnable = [{k: e[k] for k in ("name", "file", "mode", "inputs")} for e in entries
              if "convert_error" not in e]
  files.write_json_atomic(path, {"models": runnable, "xnnpack": ["on", "off"]})
  return path


# --------------------------------------------------------------------------- runs


def run_host(work, out):
  """guest_outputs.py with this host's Python and LiteRT."""
  subprocess.run([sys.executable, GUEST_OUTPUTS, "--manifest",
                  os.path.join(work, "manifest.json"), "--out", out], check=True)


def qemu_version(qemu=None):
  """The version (e.g. ``7.2.22``) of ``qemu`` or of binfmt's qemu-aarch64; None if unknown."""
  binary = qemu or os.path.realpath(BINFMT_QEMU)
  try:
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False,
                          timeout=30).stdout
  except OSError:
    return None
  match = re.search(r"version (\d[\d.]*)", text)
  return match.group(1) if match else None


def run_emulated(work, cpu, out_name, root=None, qemu=None):
  """guest_outputs.py inside the arm64 root under ``QEMU_CPU=cpu`` (nice: shared host),
  run by binfmt's qemu-aarch64 or by the static ``qemu`` given."""
  command = ["nice", "-n", "10", "bash", RUN_IN_ROOT, "--cpu", cpu, "--share", work]
  if root:
    command += ["--root", root]
  if qemu:
    command += ["--qemu", qemu]
  command += ["--", GUEST_PYTHON, f"{SHARE_AT}/guest_outputs.py", "--manifest",
              f"{SHARE_AT}/manifest.json", "--out", f"{SHARE_AT}/{out_name}"]
  subprocess.run(command, check=True)


# --------------------------------------------------------------------------- comparison


def load_run(directory):
  """{key: outputs array or the error text} of one guest_outputs.py output directory."""
  with open(os.path.join(directory, "status.json"), encoding="utf-8") as handle:
    status = json.load(handle)["status"]
  return {key: np.load(os.path.join(directory, key + ".npy")) if value == "ok" else value
          for key, value in status.items()}


def max_error(outputs, reference):
  """Max over samples of the normwise error of ``outputs`` against ``reference``."""
  return max(dkp_verify.normwise_error(o, r) for o, r in zip(outputs, reference))


def parity_rows(entries, runs):
  """One row per model x platform x XNNPack setting.

  Args:
    entries: manifest entries of `build_and_convert` (with their metadata).
    runs: {platform: `load_run` dict}; ``"x86"`` is the reference.
  """
  rows = []
  host = runs[HOST]
  for entry in entries:
    meta = {k: entry[k] for k in ("structure", "compression", "quantize", "kernel", "mode",
                                  "tolerance")}
    meta["model"] = entry["name"]
    if "convert_error" in entry:
      rows.append({**meta, "platform": HOST, "status": "conversion failed: " +
                   entry["convert_error"], "emulated": False})
      continue
    for platform, run in runs.items():
      for xnn in ("on", "off"):
        if platform == HOST and xnn == "off":
          continue  # the reference itself
        reference = "x86 builtin" if platform == HOST else f"x86 xnnpack {xnn}"
        ref = host.get(f"{entry['name']}__xnn{'off' if platform == HOST else xnn}")
        mine = run.get(f"{entry['name']}__xnn{xnn}")
        row = {**meta, "platform": platform if platform == HOST else f"emulated {platform}",
               "xnnpack": xnn == "on", "reference": reference, "emulated": platform != HOST}
        if isinstance(mine, str) or mine is None:
          row["status"] = mine or "not run"
        elif isinstance(ref, str) or ref is None:
          row["status"] = f"no reference ({ref or 'not run'})"
        else:
          row.update(samples=len(mine), max_error=max_error(mine, ref))
          row["within_tolerance"] = bool(row["max_error"] <= entry["tolerance"])
          row["status"] = "ok" if row["within_tolerance"] else "DISAGREES"
        rows.append(row)
  return rows


def write_csv(rows, out, columns=COLUMNS):
  """The rows as CSV (empty cells for missing values), atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with files.atomic_path(out) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
      writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
      writer.writeheader()
      for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def read_csv(path):
  """The rows of `write_csv`, with numbers and booleans parsed back (None where empty)."""
  kinds = {"compression": float, "samples": int, "max_error": float, "tolerance": float,
           "xnnpack": lambda v: v == "True", "within_tolerance": lambda v: v == "True",
           "emulated": lambda v: v == "True"}
  with open(path, encoding="utf-8", newline="") as handle:
    return [{k: (kinds[k](v) if k in kinds else v) if v != "" else None for k, v in row.items()}
            for row in csv.DictReader(handle)]


def format_table(rows):
  lines = [f"{'model':<26}{'platform':<36}{'xnnpack':<9}{'max error':>11}  {'tol':>6}  status"]
  for r in rows:
    error = "" if r.get("max_error") is None else f"{r['max_error']:.2e}"
    lines.append(f"{r['model']:<26}{r['platform']:<36}{str(r.get('xnnpack', '')):<9}"
                 f"{error:>11}  {r['tolerance']:>6.0e}  {r['status']}")
  return "\n".join(lines)


# --------------------------------------------------------------------------- main


def name_list(choices, separator=","):
  """An argparse type: names from ``choices`` (a name may carry ,suffixes) split by separator."""
  def parse(text):
    items = tuple(item for item in text.split(separator) if item)
    bad = [item for item in items if item.split(",")[0] not in choices]
    if bad or not items:
      raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {choices}")
    return items
  return parse


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.arm64_parity",
                                   description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--units", type=int)
  parser.add_argument("--layers", type=int)
  parser.add_argument("--compression", type=float)
  parser.add_argument("--samples", type=int, help="random input sequences per model")
  parser.add_argument("--steps", type=int, help="time steps per sequence")
  parser.add_argument("--models", type=name_list(tuple(MODELS)))
  parser.add_argument("--modes", type=name_list(MODES))
  parser.add_argument("--cpus", type=name_list(CPUS, separator=";"),
                      help="emulated cores separated by ';', each maybe with qemu properties: "
                      "'cortex-a72;max;max,sme=off'")
  parser.add_argument("--seed", type=int)
  parser.add_argument("--root", help="the arm64 root (default: build_root.sh's)")
  parser.add_argument("--qemu", help="a static qemu-aarch64 to run the emulated cores with "
                      "instead of binfmt's (e.g. a newer qemu)")
  parser.add_argument("--keep", help="keep the models, inputs and outputs in this new directory")
  parser.add_argument("--out", default=DEFAULT_OUT, help="the CSV to write")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "samples", "steps", "compression"))
  out = os.path.abspath(args.out)
  if os.path.isdir(out) or not out.endswith(".csv"):
    parser.error(f"--out {args.out!r} must be a .csv file name")
  if args.qemu and not (os.path.isfile(args.qemu) and os.access(args.qemu, os.X_OK)):
    parser.error(f"--qemu {args.qemu!r} is not an executable file")
  if args.keep and os.path.exists(args.keep):
    parser.error(f"--keep {args.keep!r} exists; give a new directory")
  if os.geteuid() != 0:
    parser.error("the emulated runs need root (chroot, mount): run it with sudo")
  return config, args


def main(argv=None):
  config, args = parse_args(argv)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="dkp-parity.")
  os.makedirs(work, exist_ok=True)
  try:
    print(f"converting into {work}")
    entries = build_and_convert(config, work)
    write_manifest(entries, work)
    shutil.copy(GUEST_OUTPUTS, work)
    print("x86 (this host)")
    run_host(work, os.path.join(work, "outputs-x86"))
    runs_dirs = {HOST: os.path.join(work, "outputs-x86")}
    version = qemu_version(args.qemu)
    for cpu in config["cpus"]:
      label = f"{cpu} (qemu {version or 'unknown'})"
      print(f"emulated {label}")
      name = "outputs-" + cpu.replace(",", "_").replace("=", "_")
      run_emulated(work, cpu, name, args.root, args.qemu)
      runs_dirs[label] = os.path.join(work, name)
    rows = parity_rows(entries, {name: load_run(d) for name, d in runs_dirs.items()})
  finally:
    if not args.keep:
      shutil.rmtree(work, ignore_errors=True)
  write_csv(rows, args.out)
  common.write_json_atomic(os.path.splitext(args.out)[0] + ".json", {
      "config": config, "host": common.host_info(), "commit": common.git_commit(),
      "emulated": "arm64 outputs computed under qemu-user (QEMU_CPU), not on a board"})
  print(format_table(rows))
  bad = [r for r in rows if r["status"] != "ok"]
  print(f"wrote {len(rows)} rows to {args.out}; {len(bad)} not ok")
  return rows


if __name__ == "__main__":
  main()
