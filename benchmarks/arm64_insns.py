"""Emulated aarch64 instructions per LSTM step, and an estimated Raspberry Pi 4 step time.

Converts the LSTM stack (``--units`` x ``--layers``, default 2x650, built as
`benchmarks.latency` builds it) in step mode, as `benchmarks.arm64_parity`
does, for ``--structures`` (dense, DKP with 1x4 S, DKP with 1x1 S stored as
CSR, LMF, HMD at each of ``--compressions``; at 25x only ``kp``, the
Kronecker factors without S, for profiling, and the lowering tries of
`VARIANTS`, e.g. ``dkp-fused-s``: one S per layer over the concatenated input
and state, ``lowering.lower_model(fuse_doping=True)``), plus the dynamic-int8
exports of dense and DKP at ``--int8-compressions``. Each model runs in the arm64 root of
`benchmarks/on_device/emulated/build_root.sh` under the dynamic qemu-aarch64
(package qemu-user) pinned to ``--cpu`` (default cortex-a72, a Raspberry Pi
4's core) with qemu's ``insn`` plugin (`emulated/build_plugins.sh`), 1
thread, XNNPack on and off, twice: ``--invokes`` N invokes and none (both
after one warm-up invoke, `emulated/guest_insns.py`); instructions per step =
(count with N - count with 0) / N. The same models' outputs on random inputs
are compared with x86's (`arm64_parity`'s machinery): max normwise error.

``--tflite NAME=PATH,...`` counts given step-mode ``.tflite`` files instead
(the ratios against the one named ``dense``), and ``--run-dir DIR`` those of a
``python -m pipelines.run`` directory (the main job's ``dense_step.tflite`` and
``dkp_step.tflite``, structure and compression as its ``report.json`` gives
them); the kernel column is read from each file, the inputs of the output
check follow its signature (token ids below its embedding's rows).

The estimated Pi 4 step time is a model, not a measurement:
``insns / (IPC * clock) + max(0, weight_bytes - L2) / DRAM bandwidth``, with
the constants of `PI4` (sources in benchmarks/README.md). Every count is
*emulated* (qemu's instruction stream for that core's features, not a
board's timing) and every time *estimated*.

    python -m benchmarks.arm64_insns                       # the whole table (< 30 min)
    python -m benchmarks.arm64_insns --compressions 25 --structures dense,dkp --no-int8
    python -m benchmarks.arm64_insns --profile --compressions 25 --structures dkp,kp \\
        --no-int8 --invokes 200 --out benchmarks/results/arm64_emulated_profile.csv
    python -m benchmarks.arm64_insns --run-dir runs/demo \\
        --out benchmarks/results/arm64_emulated_main_job.csv
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import arm64_parity
from benchmarks import common  # imports dkp_keras first

import numpy as np  # noqa: E402  pylint: disable=wrong-import-order
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from pipelines import choices  # noqa: E402
from pipelines import dense_vs_dkp  # noqa: E402
from pipelines import figures  # noqa: E402
from tflite_ops import describe  # noqa: E402
from tflite_ops import files  # noqa: E402

GUEST_INSNS = os.path.join(arm64_parity.EMULATED_DIR, "guest_insns.py")
GUEST_CPUINFO = os.path.join(arm64_parity.EMULATED_DIR, "guest_cpuinfo.py")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                     "dkp-keras")
DEFAULT_ROOT = os.environ.get("DKP_ARM64_ROOT", os.path.join(CACHE, "arm64-root"))
GUEST_VENV_SITE = f"{arm64_parity.GUEST_VENV}/lib/python3.11/site-packages"
GUEST_PYTHON = "/usr/bin/python3.11"
# qemu's MIDR per -cpu model, as emulated/root.sh's emulated_midr gives them.
MIDR = {"cortex-a72": 0x410fd083, "cortex-a76": 0x414fd0b1}
# A Raspberry Pi 4 (BCM2711) for the estimate; sources in benchmarks/README.md.
PI4 = {"clock_hz": 1.5e9, "ipc": 1.0, "l2_bytes": 1 << 20, "dram_bytes_per_s": 5.5e9}
# name -> (latency.build_model structure, quantize, sparse kernel, conversion.convert options)
MODELS = {
    "dense": ("baseline", "none", "auto", {}),
    "dkp": ("dkp", "none", "block", {}),
    "dkp-csr": ("dkp-1x1", "none", "csr", {}),
    "lmf": ("lmf", "none", "auto", {}),
    "hmd": ("hmd", "none", "auto", {}),
    "kp": ("kp", "none", "auto", {}),
    "dense-int8": ("baseline", "dynamic-int8", "auto", {}),
    "dkp-int8": ("dkp", "dynamic-int8", "block", {}),
    # lowering tries: rows of the model VARIANTS names, with a variant
    "dkp-fused-s": ("dkp", "none", "block", {"fuse_doping": True}),
    "dkp-csr-fused-s": ("dkp-1x1", "none", "csr", {"fuse_doping": True}),
    "dkp-int8-fused-s": ("dkp", "dynamic-int8", "block", {"fuse_doping": True}),
}
# lowering try -> (the row's model, its variant column)
VARIANTS = {"dkp-fused-s": ("dkp", "fused-s"), "dkp-csr-fused-s": ("dkp-csr", "fused-s"),
            "dkp-int8-fused-s": ("dkp-int8", "fused-s")}
STRUCTURES = ("dense", "dkp", "dkp-csr", "lmf", "hmd", "kp", "dkp-fused-s", "dkp-csr-fused-s")
# kp (a profiling row: its factors do not change with the compression) and the lowering
# tries only at this compression.
PROFILE_AT = 25.0
AT_PROFILE_ONLY = ("kp",) + tuple(VARIANTS)
INT8 = {"dense": "dense-int8", "dkp": "dkp-int8", "dkp-fused-s": "dkp-int8-fused-s"}
COLUMNS = ["model", "variant", "structure", "compression", "kernel", "quantize", "mode", "cpu",
           "xnnpack", "insns_per_step", "weight_bytes", "insn_speedup_vs_dense",
           "est_pi4_step_us", "est_pi4_speedup_vs_dense", "max_error_vs_x86", "tolerance",
           "invokes", "status", "emulated"]
DEFAULTS = {"units": 650, "layers": 2, "compressions": (10.0, 25.0, 50.0),
            "structures": STRUCTURES,
            "int8_compressions": (25.0,), "cpu": "cortex-a72", "invokes": 20, "samples": 1,
            "steps": 3, "seed": 0}
QUICK = {"units": 64, "layers": 1, "compressions": (4.0,), "structures": ("dense", "dkp"),
         "int8_compressions": (), "invokes": 5}
DEFAULT_OUT = os.path.join("benchmarks", "results", "arm64_emulated.csv")
# --profile: the library whose functions the hot blocks are attributed to (LiteRT's kernels,
# XNNPack's included), relative to the root venv's site-packages.
PROFILE_LIBRARY = "ai_edge_litert/libpywrap_litert_common.so"
OUTSIDE = "(outside LiteRT)"
# --run-dir: the main job's step-mode files (pipelines.run writes them as <kind>_step.tflite);
# its kinds (dense, dkp) are the `MODELS` of the same names, whose structure the rows take.
STEP_SUFFIX = "_step.tflite"
RUN_FILES = tuple(name for name in dense_vs_dkp.REPORT_FILES if name.endswith(STEP_SUFFIX))
RUN_REPORT = "report.json"
# Options that shape the built models: meaningless with --tflite / --run-dir.
BUILD_OPTIONS = ("units", "layers", "compressions", "structures", "int8_compressions", "no_int8",
                 "quick")
PROFILE_COLUMNS = ["model", "variant", "compression", "cpu", "xnnpack", "function",
                   "insns_per_step", "step_insns_per_step", "share_of_step", "invokes", "emulated"]

# --------------------------------------------------------------------------- pure parts


def parse_insn_count(text):
  """The guest instructions in qemu's ``insn`` plugin log; ValueError when it has none.

  With ``inline=on`` the plugin writes ``insns: N``; without, one ``cpu K insns: N``
  line per vCPU and ``total insns: N``.
  """
  for pattern in (r"^total insns:\s*(\d+)\s*$", r"^insns:\s*(\d+)\s*$"):
    found = re.findall(pattern, text, flags=re.MULTILINE)
    if found:
      return int(found[-1])
  raise ValueError("no 'insns: N' line in the qemu plugin log: was the insn plugin loaded "
                   f"(-plugin libinsn.so -d plugin)? The log reads: {text.strip()[:200]!r}")


def parse_hotblocks(text):
  """qemu's ``hotblocks`` plugin log as (pc, translations, insns, executions) tuples."""
  blocks = []
  for line in text.splitlines():
    fields = [f.strip() for f in line.split(",")]
    if len(fields) == 4 and fields[0].startswith("0x"):
      blocks.append((int(fields[0], 16), int(fields[1]), int(fields[2]), int(fields[3])))
  return blocks


def per_step(count_with, count_without, invokes):
  """Instructions of one invoke: the difference of two runs over the invokes between them."""
  if invokes < 1:
    raise ValueError(f"invokes must be >= 1, got {invokes}")
  return (count_with - count_without) / invokes


def estimate_step_us(insns, weight_bytes, board=None):
  """An estimated step time (µs) on ``board`` (default `PI4`): the instructions at its IPC
  and clock, plus the weight bytes beyond its L2 read from DRAM each step."""
  board = board or PI4
  compute_s = insns / (board["ipc"] * board["clock_hz"])
  memory_s = max(0, weight_bytes - board["l2_bytes"]) / board["dram_bytes_per_s"]
  return (compute_s + memory_s) * 1e6


def add_ratios(rows):
  """insn_speedup_vs_dense, the estimate and its speed-up, against the float ``dense`` row of
  the same XNNPack setting and CPU (int8 rows too: the float dense model is the baseline)."""
  for row in rows:
    if row.get("insns_per_step") is not None:
      row["est_pi4_step_us"] = estimate_step_us(row["insns_per_step"], row["weight_bytes"])
  for row in rows:
    base = [r for r in rows if r["model"] == "dense" and r.get("variant", "") == "" and
            r["xnnpack"] == row["xnnpack"] and r["cpu"] == row["cpu"] and
            r.get("insns_per_step") is not None]
    if not base or row.get("insns_per_step") is None:
      continue
    row["insn_speedup_vs_dense"] = base[0]["insns_per_step"] / row["insns_per_step"]
    row["est_pi4_speedup_vs_dense"] = base[0]["est_pi4_step_us"] / row["est_pi4_step_us"]
  return rows


def plan(config):
  """[(model name, compression)] to convert: baselines once, structures per compression."""
  out = []
  for name in config["structures"]:
    if MODELS[name][0] == "baseline":
      out.append((name, 1.0))
  if "dense" in config["structures"] and config["int8_compressions"]:
    out.append((INT8["dense"], 1.0))
  for compression in config["compressions"]:
    for name in config["structures"]:
      if MODELS[name][0] != "baseline" and (name not in AT_PROFILE_ONLY or
                                            compression == PROFILE_AT):
        out.append((name, compression))
    for name in ("dkp", "dkp-fused-s"):
      if compression in config["int8_compressions"] and name in config["structures"] and (
          name not in AT_PROFILE_ONLY or compression == PROFILE_AT):
        out.append((INT8[name], compression))
  return out


def kernel_label(name):
  """The CSV's kernel column: how the model's weights run (block / csr / dense / int8)."""
  _, quantize, kernel, _ = MODELS[name]
  if quantize == "dynamic-int8":
    return "int8"
  return kernel if kernel in ("block", "csr") else "dense"


def weight_bytes(path):
  """The model's constant bytes plus its sparse index vectors (as `pipelines.convert`'s report
  counts them): what one step reads."""
  info = describe.inspect_model(path)
  return info.weights_bytes + sum(t.sparsity.indices_bytes for t in info.sparse_tensors)


def given_list(text):
  """An argparse ``type``: ``--tflite``'s ``NAME=PATH,...`` as ((name, path), ...)."""
  specs = []
  for item in (item.strip() for item in text.split(",")):
    name, separator, path = (part.strip() for part in item.partition("="))
    if not separator or not path or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
      raise argparse.ArgumentTypeError(
          f"expected NAME=PATH,... (NAME of letters, digits, '_', '.', '-'), got {item!r}")
    specs.append((name, path))
  return tuple(specs)


def file_kernel(info):
  """(kernel, quantization) of a `describe.ModelInfo`, as `kernel_label` and the built
  models' ``quantize`` word them: int8 FULLY_CONNECTED weights are a dynamic-int8 export;
  otherwise the sparse layout S runs in (block: 1x4, csr), else dense."""
  if any(t.dtype == "int8" and "FULLY_CONNECTED" in t.consumers for t in info.constant_tensors):
    return "int8", "dynamic-int8"
  quantize = "float16" if any(t.dtype == "float16" for t in info.constant_tensors) else "none"
  if any(describe.is_fast_block_sparse(t) for t in info.sparse_tensors):
    return "block", quantize
  if any(describe.is_csr_sparse(t) for t in info.sparse_tensors):
    return "csr", quantize
  return "dense", quantize


def vocabulary(info):
  """The rows of the embedding table a GATHER of subgraph 0 reads (token ids must stay below
  them; the table may be a constant or a DEQUANTIZE of one); None when the model has none."""
  tables = {t.index: t for t in info.tensors if t.subgraph == 0}
  for op in info.ops:
    if op.subgraph == 0 and op.name == "GATHER" and op.inputs and op.inputs[0] in tables:
      return tables[op.inputs[0]].shape[0]
  return None


def step_inputs(shape, dtype, vocab, samples, steps, rng):
  """guest_outputs.py's inputs (samples, batch, steps, features...) for a step-mode model
  whose ``inputs`` are ``shape`` (batch, 1, features...): normals, or for integer inputs
  token ids below ``vocab``."""
  size = (samples, shape[0], steps) + tuple(shape[2:])
  if np.issubdtype(dtype, np.integer):
    return rng.integers(0, vocab, size=size).astype(dtype)
  return rng.normal(size=size).astype(dtype)


def output_clashes(out, inputs):
  """The files ``--out`` writes (the CSV, its JSON and PNG) that are one of ``inputs``."""
  stem = os.path.splitext(os.path.abspath(out))[0]
  written = {stem + ".csv", stem + ".json", stem + ".png"}
  return sorted(written & {os.path.abspath(path) for path in inputs})


def library_base(maps_text, suffix):
  """The load address of the library whose path ends with ``suffix`` in a /proc/self/maps
  text (its lowest mapping); None when it is not mapped."""
  starts = [int(line.split("-", 1)[0], 16) for line in maps_text.splitlines()
            if line.rstrip().endswith(suffix)]
  return min(starts) if starts else None


def parse_symbols(nm_text):
  """``nm -C`` output as a sorted [(address, function name)] of the code symbols."""
  symbols = []
  for line in nm_text.splitlines():
    fields = line.split(None, 2)
    if len(fields) == 3 and fields[1] in "tTwW":
      symbols.append((int(fields[0], 16), _without_arguments(fields[2])))
  return sorted(symbols)


def _without_arguments(name):
  """A demangled name without its trailing argument list and qualifiers (template arguments
  may hold parentheses too: the list is the last balanced one)."""
  name = re.sub(r"(\s+(const|volatile)|\s*&{1,2})+$", "", name)
  if not name.endswith(")"):
    return name
  depth = 0
  for index in range(len(name) - 1, -1, -1):
    depth += {")": 1, "(": -1}.get(name[index], 0)
    if depth == 0:
      return name[:index]
  return name


def attribute(blocks, base, symbols):
  """{function: instructions} of hotblocks' blocks (pc, translations, insns, executions),
  by the library symbol at or below each pc; blocks outside the library are ``outside``."""
  addresses = [address for address, _ in symbols]
  totals = {}
  for pc, _, insns, executions in blocks:
    index = bisect.bisect_right(addresses, pc - base) - 1 if base is not None and pc >= base \
        else -1
    name = symbols[index][1] if index >= 0 else OUTSIDE
    totals[name] = totals.get(name, 0) + insns * executions
  return totals


# --------------------------------------------------------------------------- the emulated runs


def guest_view(root, cpu, directory):
  """A directory for qemu-aarch64 ``-L``: the root's entries as links, plus an arm64
  ``proc/cpuinfo`` of ``cpu`` and the ``sys`` CPU lists LiteRT reads (one core).

  qemu-user shows the guest the host's x86 /proc/cpuinfo, on which LiteRT's CPU
  detection crashes; under ``-L`` a path that exists in the view wins. The
  root itself is left untouched (no mounts, no chroot: no root rights needed).
  """
  os.makedirs(os.path.join(directory, "proc"))
  os.makedirs(os.path.join(directory, "sys", "devices", "system", "cpu"))
  for name in os.listdir(root):
    if name not in ("proc", "sys"):
      os.symlink(os.path.join(root, name), os.path.join(directory, name))
  cpuinfo = subprocess.run(
      qemu_command(directory, cpu) + [GUEST_CPUINFO, "--midr", hex(MIDR[cpu]), "--cpus", "1"],
      capture_output=True, text=True, env=guest_env(), check=True).stdout
  files.write_atomic(os.path.join(directory, "proc", "cpuinfo"), cpuinfo)
  for name in ("possible", "present", "online"):
    files.write_atomic(os.path.join(directory, "sys", "devices", "system", "cpu", name), "0\n")
  return directory


def qemu_command(view, cpu, plugin=None, log=None):
  """The qemu-aarch64 command line that runs the root's Python (append its arguments)."""
  command = ["qemu-aarch64", "-cpu", cpu, "-L", view]
  if plugin:
    command += ["-plugin", plugin, "-d", "plugin", "-D", log]
  return command + [view + GUEST_PYTHON]


def guest_env():
  """The guest's environment: the root venv's packages, and every source of run-to-run
  instruction noise off (OpenBLAS's spinning threads, hash randomization)."""
  return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
          "PYTHONPATH": GUEST_VENV_SITE, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1",
          "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_guest_insns(view, cpu, plugin, model, xnnpack, invokes, work, maps=None):
  """One guest_insns.py run under ``plugin`` (a path with its options); the plugin's log."""
  log = os.path.join(work, "plugin.log")
  if os.path.exists(log):
    os.remove(log)
  command = qemu_command(view, cpu, plugin, log)
  command += [GUEST_INSNS, "--model", model, "--xnnpack", "on" if xnnpack else "off",
              "--invokes", str(invokes)] + (["--maps", maps] if maps else [])
  result = subprocess.run(["nice", "-n", "10"] + command, capture_output=True, text=True,
                          env=guest_env(), check=False)
  if result.returncode != 0:
    raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
  with open(log, encoding="utf-8") as handle:
    return handle.read()


def count_instructions(view, cpu, plugin_dir, model, xnnpack, invokes, work):
  """Guest instructions of one guest_insns.py run (``invokes`` counted invokes)."""
  plugin = os.path.join(plugin_dir, "libinsn.so") + ",inline=on"
  return parse_insn_count(run_guest_insns(view, cpu, plugin, model, xnnpack, invokes, work))


def profile_step(view, cpu, plugin_dir, model, xnnpack, invokes, work, symbols):
  """{function: instructions per step} of the hottest blocks (qemu's hotblocks plugin lists
  its top 20 by executions), the difference of ``invokes`` invokes and none, as counts are."""
  plugin = os.path.join(plugin_dir, "libhotblocks.so")
  maps = os.path.join(work, "maps.txt")
  totals = []
  for n in (invokes, 0):
    log = run_guest_insns(view, cpu, plugin, model, xnnpack, n, work, maps)
    with open(maps, encoding="utf-8") as handle:
      base = library_base(handle.read(), PROFILE_LIBRARY)
    totals.append(attribute(parse_hotblocks(log), base, symbols))
  return {name: per_step(totals[0].get(name, 0), totals[1].get(name, 0), invokes)
          for name in set(totals[0]) | set(totals[1])}


def run_outputs(view, cpu, work, out):
  """arm64_parity's guest_outputs.py over the manifest, emulated (no plugin)."""
  subprocess.run(["nice", "-n", "10"] + qemu_command(view, cpu) + [
      arm64_parity.GUEST_OUTPUTS, "--manifest", os.path.join(work, "manifest.json"), "--out",
      out], env=guest_env(), check=True)


def find_plugins(directory=None):
  """The directory of build_plugins.sh's plugins for the installed qemu-user; None if absent."""
  if directory:
    return directory if os.path.isfile(os.path.join(directory, "libinsn.so")) else None
  if not os.path.isdir(CACHE):
    return None
  for name in sorted(os.listdir(CACHE), reverse=True):
    path = os.path.join(CACHE, name)
    if name.startswith("qemu-plugins-") and os.path.isfile(os.path.join(path, "libinsn.so")):
      return path
  return None


def missing_requirements(root, plugins):
  """What the emulated counts need and is absent, as fix-it messages (empty: all there)."""
  problems = []
  if not os.path.exists(os.path.join(root, ".dkp-arm64-root-ready")):
    problems.append(f"no finished arm64 root at {root}: build it with "
                    "sudo bash benchmarks/on_device/emulated/build_root.sh")
  if not plugins:
    problems.append("no qemu plugins (libinsn.so): build them with "
                    "bash benchmarks/on_device/emulated/build_plugins.sh")
  qemu = shutil.which("qemu-aarch64")
  if not qemu:
    problems.append("no dynamic qemu-aarch64: apt-get install qemu-user")
  return problems


# --------------------------------------------------------------------------- given files


def given_model(name, path, structure="", compression=None):
  """What counting the step-mode file ``path`` as row ``name`` needs: its kernel and
  quantization (`file_kernel`), the shape and type of its ``inputs``, its vocabulary.

  Raises:
    ValueError: naming the problem: ``path`` is missing, not a TFLite file, not a step-mode
      file (a signature taking ``inputs`` and the states, returning ``outputs`` and them), or
      takes token ids without an embedding table to bound them.
  """
  if not os.path.isfile(path):
    raise ValueError(f"{path!r} is not a file")
  info = describe.inspect_model(path)  # TFLiteFormatError (a ValueError) names a foreign file
  interpreter = Interpreter(model_path=path)
  signatures = interpreter.get_signature_list()
  signature = next(iter(signatures.values()), {"inputs": [], "outputs": []})
  states = set(signature["inputs"]) - {"inputs"}
  shape = ()
  if len(signatures) == 1 and "inputs" in signature["inputs"]:
    detail = interpreter.get_signature_runner().get_input_details()["inputs"]
    shape, dtype = tuple(int(n) for n in detail["shape"]), np.dtype(detail["dtype"])
  if (len(signatures) != 1 or "outputs" not in signature["outputs"] or not states or
      not states <= set(signature["outputs"]) or len(shape) < 2 or shape[1] != 1):
    raise ValueError(
        f"{path!r} is not a step-mode file (signatures {signatures}; one step takes 'inputs' "
        "of 1 time step and the states, and returns 'outputs' and the states): convert the "
        "model with python -m pipelines.convert --mode step")
  vocab = vocabulary(info)
  if np.issubdtype(dtype, np.integer) and vocab is None:
    raise ValueError(f"{path!r} takes integer inputs but reads no embedding table (GATHER): "
                     "no valid token ids to feed it")
  kernel, quantize = file_kernel(info)
  return {"name": name, "path": os.path.abspath(path), "structure": structure,
          "compression": compression, "kernel": kernel, "quantize": quantize,
          "inputs_shape": shape, "inputs_dtype": dtype.name, "vocab": vocab}


def read_run_report(run_dir):
  """The ``report.json`` of a ``python -m pipelines.run`` directory; ValueError naming what
  is wrong (no directory, no report, not the main job's report)."""
  path = os.path.join(run_dir, RUN_REPORT)
  if not os.path.isdir(run_dir):
    raise ValueError(f"{run_dir!r} is not a directory")
  if not os.path.isfile(path):
    raise ValueError(f"{run_dir!r} holds no {RUN_REPORT}: give a directory python -m "
                     f"pipelines.run wrote (python -m pipelines.run --out {run_dir})")
  try:
    with open(path, encoding="utf-8") as handle:
      report = json.load(handle)
  except (OSError, ValueError) as error:
    raise ValueError(f"{path} is not readable JSON ({error})") from error
  models = report.get("models") if isinstance(report, dict) else None
  if not isinstance(models, list) or not all(isinstance(r, dict) and "model" in r
                                             for r in models):
    raise ValueError(f"{path} is not a pipelines.run report (no 'models' rows)")
  return report


def run_dir_models(run_dir, report):
  """[(name, path, structure, compression)] of the main job's step files in ``run_dir``:
  structure that of the `MODELS` entry of the same kind, compression as ``report`` gives it
  (the whole model's, embedding included)."""
  rows = {row["model"]: row for row in report["models"]}
  models = []
  for filename in RUN_FILES:
    kind = filename[:-len(STEP_SUFFIX)]
    models.append((kind, os.path.join(run_dir, filename), MODELS[kind][0],
                   rows.get(kind, {}).get("compression")))
  return models


def given_entries(given, config, work):
  """Manifest entries (`arm64_parity.build_and_convert`'s layout) of `given_model` dicts:
  each file copied into ``work``'s models/, seeded inputs for the output check."""
  for sub in ("models", "inputs"):
    os.makedirs(os.path.join(work, sub), exist_ok=True)
  rng = np.random.default_rng(config["seed"])
  entries = []
  for model in given:
    name = model["name"]
    entry = {"name": name, "file": f"models/{name}.tflite", "mode": "step",
             "inputs": f"inputs/{name}.npy", "model": name, "structure": model["structure"],
             "compression": model["compression"], "quantize": model["quantize"],
             "kernel": model["kernel"], "tolerance": choices.TOLERANCES[model["quantize"]],
             "row": {"model": name, "variant": "", "structure": model["structure"],
                     "kernel": model["kernel"]}}
    shutil.copyfile(model["path"], os.path.join(work, entry["file"]))
    np.save(os.path.join(work, entry["inputs"]),
            step_inputs(model["inputs_shape"], np.dtype(model["inputs_dtype"]), model["vocab"],
                        config["samples"], config["steps"], rng))
    entries.append(entry)
  return entries


# --------------------------------------------------------------------------- the benchmark


def convert_models(config, work, log=print):
  """Every planned model converted in step mode into ``work`` (arm64_parity.build_and_convert,
  one compression at a time); its manifest entries, each with its rows' ``row`` fields."""
  entries = []
  groups = {}
  for name, compression in plan(config):
    groups.setdefault(compression, []).append(name)
  for compression, names in groups.items():
    group = {**config, "models": tuple(names), "compression": compression,
             "modes": ("step",)}
    entries += arm64_parity.build_and_convert(group, work, log=log, models=MODELS)
  for entry in entries:
    model, variant = VARIANTS.get(entry["model"], (entry["model"], ""))
    entry["row"] = {"model": model, "variant": variant, "structure": entry["structure"],
                    "kernel": kernel_label(entry["model"])}
  return entries


def measure(entries, config, view, plugins, work, log=print):
  """One row per converted model x XNNPack setting with its per-step count."""
  rows = []
  for entry in entries:
    base = {**entry["row"], "compression": entry["compression"],
            "quantize": entry["quantize"], "mode": entry["mode"],
            "cpu": config["cpu"], "tolerance": entry["tolerance"], "emulated": True,
            "invokes": config["invokes"], "name": entry["name"]}
    if "convert_error" in entry:
      rows.append({**base, "xnnpack": None, "status": "conversion failed: " +
                   entry["convert_error"]})
      continue
    path = os.path.join(work, entry["file"])
    base["weight_bytes"] = weight_bytes(path)
    for xnnpack in (True, False):
      row = {**base, "xnnpack": xnnpack}
      start = time.perf_counter()
      try:
        with_n = count_instructions(view, config["cpu"], plugins, path, xnnpack,
                                    config["invokes"], work)
        without = count_instructions(view, config["cpu"], plugins, path, xnnpack, 0, work)
        row["insns_per_step"] = per_step(with_n, without, config["invokes"])
        row["status"] = "ok"
      except (RuntimeError, ValueError, OSError) as error:
        row["status"] = f"count failed: {str(error).splitlines()[0][:200]}"
      rows.append(row)
      log(f"  {entry['name']:<26} xnnpack {'on ' if xnnpack else 'off'} "
          f"{row.get('insns_per_step', float('nan')) / 1e6:8.3f} M insns/step "
          f"({time.perf_counter() - start:4.1f} s)")
  return rows


def add_errors(rows, entries, runs, cpu_label):
  """max_error_vs_x86 of each row from arm64_parity.parity_rows (same XNNPack setting)."""
  errors = {}
  for parity in arm64_parity.parity_rows(entries, runs):
    if parity["platform"] == f"emulated {cpu_label}":
      errors[(parity["model"], parity["xnnpack"])] = parity
  for row in rows:
    parity = errors.get((row["name"], row["xnnpack"]))
    if parity is None:
      continue
    row["max_error_vs_x86"] = parity.get("max_error")
    if parity["status"] != "ok" and row.get("status") == "ok":
      row["status"] = f"outputs: {parity['status']}"
  return rows


def run_benchmark(entries, config, root, plugins, work, log=print):
  """The rows of ``entries`` (`convert_models` or `given_entries`, their files in ``work``):
  counts, outputs against x86, ratios."""
  view = guest_view(root, config["cpu"], os.path.join(work, "view"))
  log(f"counting instructions under qemu-aarch64 -cpu {config['cpu']}")
  rows = measure(entries, config, view, plugins, work, log)
  arm64_parity.write_manifest(entries, work)
  log("outputs on x86 and emulated")
  arm64_parity.run_host(work, os.path.join(work, "outputs-x86"))
  run_outputs(view, config["cpu"], work, os.path.join(work, "outputs-arm64"))
  runs = {arm64_parity.HOST: arm64_parity.load_run(os.path.join(work, "outputs-x86")),
          config["cpu"]: arm64_parity.load_run(os.path.join(work, "outputs-arm64"))}
  return add_ratios(add_errors(rows, entries, runs, config["cpu"]))


def symbol_table(root):
  """The code symbols of `PROFILE_LIBRARY` in ``root`` (the host's ``nm`` reads aarch64)."""
  path = os.path.join(root, GUEST_VENV_SITE.lstrip("/"), PROFILE_LIBRARY)
  result = subprocess.run(["nm", "-C", path], capture_output=True, text=True, check=False)
  symbols = parse_symbols(result.stdout)
  if not symbols:
    raise RuntimeError(f"nm read no symbols from {path} ({result.stderr.strip()[:200]}): "
                       "install binutils, or the library is stripped")
  return symbols


def run_profile(entries, config, root, plugins, work, log=print):
  """--profile: per model of ``entries`` and XNNPack setting, the step's instructions (insn
  plugin) and those of its hottest functions (hotblocks plugin); one row per function."""
  entries = [e for e in entries if "convert_error" not in e]
  view = guest_view(root, config["cpu"], os.path.join(work, "view"))
  symbols = symbol_table(root)
  rows = []
  for entry in entries:
    model, variant = entry["row"]["model"], entry["row"]["variant"]
    path = os.path.join(work, entry["file"])
    for xnnpack in (True, False):
      step = per_step(*(count_instructions(view, config["cpu"], plugins, path, xnnpack, n, work)
                        for n in (config["invokes"], 0)), config["invokes"])
      functions = profile_step(view, config["cpu"], plugins, path, xnnpack, config["invokes"],
                               work, symbols)
      for name, insns in sorted(functions.items(), key=lambda item: -item[1]):
        if insns > 0:
          rows.append({"model": model, "variant": variant, "compression": entry["compression"],
                       "cpu": config["cpu"], "xnnpack": xnnpack, "function": name,
                       "insns_per_step": insns, "step_insns_per_step": step,
                       "share_of_step": insns / step, "invokes": config["invokes"],
                       "emulated": True})
      log(f"  profiled {entry['name']} xnnpack {'on' if xnnpack else 'off'}")
  return rows


def format_table(rows):
  lines = [f"{'model':<12}{'variant':<12}{'x':>5}{'xnn':>5}{'M insns':>10}{'insn x':>8}"
           f"{'KiB':>9}{'est us':>9}{'est x':>7}{'error':>10}  status"]
  for r in rows:
    def num(key, fmt):
      return format(r[key], fmt) if r.get(key) is not None else ""
    lines.append(f"{r['model']:<12}{r.get('variant', ''):<12}{compression_text(r):>5}"
                 f"{'' if r['xnnpack'] is None else 'on' if r['xnnpack'] else 'off':>5}"
                 f"{(r['insns_per_step'] / 1e6) if r.get('insns_per_step') else 0:>10.3f}"
                 f"{num('insn_speedup_vs_dense', '>7.2f')}x"
                 f"{(r.get('weight_bytes') or 0) / 1024:>9.0f}{num('est_pi4_step_us', '>9.0f')}"
                 f"{num('est_pi4_speedup_vs_dense', '>6.2f')}x"
                 f"{num('max_error_vs_x86', '>10.1e')}  {r.get('status', '')}")
  return "\n".join(lines)


def compression_text(row):
  """A row's compression, 3 significant digits (a given file's may be unknown: empty)."""
  return "" if row["compression"] is None else f"{row['compression']:.3g}"


def row_label(row):
  """A row's short name in the plot: model, compression, variant."""
  name = row["model"] if row["compression"] in (1, None) else (
      f"{row['model']} {compression_text(row)}x")
  return name + (f" ({row['variant']})" if row.get("variant") else "")


def plot(rows, path):
  """Two panels, XNNPack on and off: emulated instructions per step and the estimated Pi 4
  step time of every counted model (log scale), labelled as such; written to ``path``."""
  plt = figures.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 0.28 * len(rows) + 2), sharey=True)
  for ax, xnnpack in zip(axes, (True, False)):
    subset = [r for r in rows if r["xnnpack"] is xnnpack and r.get("insns_per_step")]
    labels = [row_label(r) for r in subset]
    positions = range(len(subset))
    ax.barh([p - 0.2 for p in positions], [r["insns_per_step"] / 1e6 for r in subset],
            height=0.4, label=f"emulated M insns / step ({rows[0]['cpu']})")
    ax.barh([p + 0.2 for p in positions], [r["est_pi4_step_us"] / 1e3 for r in subset],
            height=0.4, label="estimated Pi 4 ms / step")
    ax.set_yticks(list(positions), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(left=0.05)
    ax.set_title(f"XNNPack {'on' if xnnpack else 'off'}", fontsize=9)
    ax.legend(fontsize=7)
  axes[0].invert_yaxis()  # the first row on top (the y axis is shared)
  fig.suptitle("LSTM step on arm64: instructions (emulated) and Pi 4 time (estimated)",
               fontsize=10)
  figures.save_figure(fig, path)
  return path


# --------------------------------------------------------------------------- command line


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m benchmarks.arm64_insns",
                                   description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--units", type=int, help=f"LSTM units (default {DEFAULTS['units']})")
  parser.add_argument("--layers", type=int, help=f"LSTM layers (default {DEFAULTS['layers']})")
  parser.add_argument("--compressions", type=common.comma_list(float), help="default 10,25,50")
  parser.add_argument("--structures", type=common.comma_list(str, STRUCTURES),
                      help=f"default {','.join(DEFAULTS['structures'])}; kp (the factors without "
                      f"S, for profiling) and the lowering tries ({', '.join(VARIANTS)}) at "
                      f"{PROFILE_AT:g}x only")
  parser.add_argument("--int8-compressions", type=common.comma_list(float),
                      help="compressions with dynamic-int8 exports of dense and dkp (default 25)")
  parser.add_argument("--no-int8", action="store_true", help="no dynamic-int8 exports")
  parser.add_argument("--cpu", choices=tuple(MIDR), help="the emulated core (default cortex-a72)")
  parser.add_argument("--invokes", type=int, help="counted invokes per model (default 20)")
  parser.add_argument("--samples", type=int, help="random sequences for the output check")
  parser.add_argument("--steps", type=int, help="time steps per sequence for the output check")
  parser.add_argument("--seed", type=int)
  # The defaults as build_root.sh / build_plugins.sh word them, not this user's expansion.
  parser.add_argument("--root", help="the arm64 root (default $DKP_ARM64_ROOT, else "
                      "${XDG_CACHE_HOME:-~/.cache}/dkp-keras/arm64-root)")
  parser.add_argument("--plugins", help="build_plugins.sh's directory (default: found in "
                      "${XDG_CACHE_HOME:-~/.cache}/dkp-keras)")
  parser.add_argument("--keep", help="keep the models, inputs and outputs in this new directory")
  parser.add_argument("--profile", action="store_true",
                      help="instead of the table, profile each model: the instructions per step "
                      "of its hottest LiteRT / XNNPack functions (qemu's hotblocks plugin, top "
                      "20 blocks: give --invokes 200 so that the step's blocks outnumber Python's "
                      "start-up), one CSV row per function")
  parser.add_argument("--tflite", type=given_list, metavar="NAME=PATH,...",
                      help="count these step-mode .tflite files instead of building models "
                      "(rows named NAME; ratios against the one named dense)")
  parser.add_argument("--run-dir", help="count the step-mode files of this python -m "
                      f"pipelines.run directory ({', '.join(RUN_FILES)}; structure and "
                      f"compression from its {RUN_REPORT}); with --tflite, both")
  parser.add_argument("--out", help=f"the CSV to write, JSON and PNG beside it (default "
                      f"{DEFAULT_OUT}; needed with --profile, --tflite and --run-dir)")
  common.add_quick_flag(parser, QUICK)
  return parser


def check_given(parser, args):
  """([`given_model` dicts], the run's report or None) of --run-dir and --tflite, every file
  read and checked, or a usage error naming the problem; ([], None) without them."""
  if not (args.tflite or args.run_dir):
    return [], None
  build = [option for option in BUILD_OPTIONS if getattr(args, option) not in (None, False)]
  if build:
    parser.error(f"--{build[0].replace('_', '-')} shapes the models this benchmark builds; "
                 "--tflite and --run-dir count given files: drop one or the other")
  report, specs = None, []
  if args.run_dir:
    try:
      report = read_run_report(args.run_dir)
    except ValueError as error:
      parser.error(f"--run-dir: {error}")
    specs += run_dir_models(args.run_dir, report)
  specs += [(name, path, "", None) for name, path in args.tflite or ()]
  names = [spec[0] for spec in specs]
  twice = sorted({name for name in names if names.count(name) > 1})
  if twice:
    parser.error(f"row names {twice} are given twice (--run-dir names its files "
                 f"{', '.join(f[:-len(STEP_SUFFIX)] for f in RUN_FILES)}): rename them")
  inputs = [spec[1] for spec in specs] + (
      [os.path.join(args.run_dir, RUN_REPORT)] if args.run_dir else [])
  clashes = output_clashes(args.out, inputs)
  if clashes:
    parser.error(f"--out {args.out!r} would overwrite its input {clashes[0]}: give another --out")
  given = []
  for name, path, structure, compression in specs:
    try:
      given.append(given_model(name, path, structure, compression))
    except ValueError as error:
      parser.error(f"row {name!r}: {error}")
  return given, report


def parse_args(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "invokes", "samples", "steps"))
  if args.no_int8:
    config["int8_compressions"] = ()
  if args.profile and not args.out:
    parser.error("--profile writes another table: give its --out, e.g. "
                 "benchmarks/results/arm64_emulated_profile.csv")
  if (args.tflite or args.run_dir) and not args.out:
    parser.error("--tflite and --run-dir write another table: give its --out, e.g. "
                 "benchmarks/results/arm64_emulated_main_job.csv")
  args.out = args.out or DEFAULT_OUT
  if os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT) and args.profile:
    parser.error(f"--profile must not overwrite {DEFAULT_OUT}: give another --out")
  if os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT) and (args.tflite or args.run_dir):
    parser.error(f"--tflite and --run-dir must not overwrite {DEFAULT_OUT} (the built models' "
                 "table): give another --out")
  if not config["structures"] or not config["compressions"]:
    parser.error("--structures and --compressions need at least one value")
  if min(config["compressions"]) < 1:
    parser.error("--compressions must be >= 1")
  out = os.path.abspath(args.out)
  if os.path.isdir(out) or not out.endswith(".csv"):
    parser.error(f"--out {args.out!r} must be a .csv file name")
  if args.keep and os.path.exists(args.keep):
    parser.error(f"--keep {args.keep!r} exists; give a new directory")
  args.given, args.run_report = check_given(parser, args)
  root = os.path.abspath(args.root or DEFAULT_ROOT)
  plugins = find_plugins(args.plugins)
  problems = missing_requirements(root, plugins)
  if args.profile and plugins and not os.path.isfile(os.path.join(plugins, "libhotblocks.so")):
    problems.append(f"no libhotblocks.so in {plugins}: rebuild the plugins with "
                    "bash benchmarks/on_device/emulated/build_plugins.sh")
  if problems:
    parser.error("; ".join(problems))
  return config, args, root, plugins


def given_sidecar(given, run_dir, report):
  """The JSON sidecar's account of given files: each file's name, bytes, kernel; for a
  --run-dir, the run's settings and its x86 figures (pipelines.run's measured step times).
  Files and the run directory are named, not located: a committed sidecar holds no path of
  the machine that measured it."""
  if not given:
    return {}
  sidecar = {"given": [{"name": m["name"], "file": os.path.basename(m["path"]),
                        "bytes": os.path.getsize(m["path"]), "kernel": m["kernel"],
                        "quantize": m["quantize"]} for m in given]}
  if report is not None:
    x86 = ("compression", "tflite_bytes", "test_perplexity", "step_latency_us",
           "speedup_vs_dense", "step_latency_us_no_xnnpack", "speedup_vs_dense_no_xnnpack")
    sidecar["run"] = {
        "dir": os.path.basename(os.path.abspath(run_dir)),
        "settings": {k: v for k, v in report.get("settings", {}).items() if k != "recipe"},
        "x86": {row["model"]: {k: row.get(k) for k in x86} for row in report["models"]}}
  return sidecar


def main(argv=None):
  config, args, root, plugins = parse_args(argv)
  if args.given:
    config = {k: v for k, v in config.items() if k not in BUILD_OPTIONS}
    what = f"{', '.join(m['name'] for m in args.given)}: given step-mode files"
  else:
    what = f"{config['layers']}x{config['units']} LSTM step, {len(plan(config))} models"
  print(f"arm64 instruction counts (emulated, qemu-aarch64 -cpu {config['cpu']}): {what}")
  start = time.perf_counter()
  work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="dkp-insns.")
  os.makedirs(work, exist_ok=True)
  try:
    entries = (given_entries(args.given, config, work) if args.given else
               convert_models(config, work))
    if args.profile:
      rows = run_profile(entries, config, root, plugins, work)
    else:
      rows = run_benchmark(entries, config, root, plugins, work)
  finally:
    if not args.keep:
      shutil.rmtree(work, ignore_errors=True)
  if args.profile:
    arm64_parity.write_csv(rows, args.out, PROFILE_COLUMNS)
    common.write_json_atomic(os.path.splitext(args.out)[0] + ".json", {
        "config": config, "host": common.host_info(), "commit": common.git_commit(),
        "qemu": arm64_parity.qemu_version(shutil.which("qemu-aarch64")),
        "profile": "qemu's hotblocks plugin (its top 20 blocks by executions) with N invokes "
                   f"minus none, attributed to the functions of {PROFILE_LIBRARY}; "
                   "step_insns_per_step from the insn plugin",
        "emulated": "aarch64 instructions counted under qemu-user, not on a board",
        **given_sidecar(args.given, args.run_dir, args.run_report),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    for row in rows:
      print(f"{row['model']:<10}{row['variant']:<9}{compression_text(row):>4}x xnnpack "
            f"{'on ' if row['xnnpack'] else 'off'} {row['insns_per_step'] / 1e3:9.1f} K "
            f"{row['share_of_step']:6.1%}  {row['function'][:80]}")
    print(f"wrote {len(rows)} rows to {args.out}")
    return rows
  arm64_parity.write_csv(rows, args.out, COLUMNS)
  common.write_json_atomic(os.path.splitext(args.out)[0] + ".json", {
      "config": config, "host": common.host_info(), "commit": common.git_commit(),
      "qemu": arm64_parity.qemu_version(shutil.which("qemu-aarch64")),
      "estimate": {"board": "Raspberry Pi 4 (BCM2711, Cortex-A72)", **PI4,
                   "formula": "insns / (ipc * clock_hz) + max(0, weight_bytes - l2_bytes) / "
                              "dram_bytes_per_s"},
      "emulated": "aarch64 instructions counted by qemu-user's insn plugin, not on a board; "
                  "step times estimated from them",
      **given_sidecar(args.given, args.run_dir, args.run_report),
      "wall_s": time.perf_counter() - start, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  png = plot(rows, os.path.splitext(args.out)[0] + ".png")
  print(format_table(rows))
  print(f"wrote {len(rows)} rows to {args.out} and {os.path.basename(png)} in "
        f"{time.perf_counter() - start:.0f} s")
  return rows


if __name__ == "__main__":
  sys.exit(0 if main() is not None else 1)
