"""Which dynamic-int8 FULLY_CONNECTED shapes LiteRT gets wrong on which emulated arm64 cores.

Issue 22's finding, cut down to one op: a model that is a single
FULLY_CONNECTED (``rows`` x ``in`` input, ``in`` x ``out`` float weights,
dynamic-range int8 quantized by the TFLite converter as
``pipelines.convert --quantize dynamic-int8`` does), run like
`benchmarks.arm64_parity` on x86 and in the emulated arm64 root under each
``--cpus`` setting, which may carry qemu CPU properties (``max,sme=off``,
``max,sve=off``, ``max,sve-default-vector-length=16``) so that one CPU feature
at a time can be switched off. One CSV row per shape x platform x XNNPack
setting, the max normwise error against x86's output flagged against the
dynamic-int8 verify tolerance. Everything is emulated.

    sudo python -m benchmarks.studies.arm64_fc_probe
    sudo python -m benchmarks.studies.arm64_fc_probe --rows 1,2 --cpus 'max;max,sme=off'
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np

from benchmarks import arm64_parity
from benchmarks import common  # imports dkp_keras first

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order

from pipelines import choices  # noqa: E402

TOLERANCE = choices.TOLERANCES["dynamic-int8"]
# (in, out): the 2x650 DKP model's Kronecker factors, a small aligned one, its S.
SHAPES = ((25, 52), (26, 50), (32, 64), (652, 2600))
COLUMNS = ["model", "rows", "in_features", "out_features", "platform", "xnnpack", "samples",
           "max_error", "tolerance", "within_tolerance", "status", "emulated"]
DEFAULT_OUT = os.path.join("benchmarks", "studies", "results", "arm64_fc_probe_emulated.csv")


def fc_model(rows, in_features, out_features, seed=0):
  """A .tflite (bytes) of one dynamic-int8 FC: inputs (1, rows, in) -> outputs (1, rows, out)."""
  rng = np.random.default_rng(seed)
  module = tf.Module()
  module.weights = tf.Variable(rng.normal(size=(in_features, out_features)).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec((1, rows, in_features), tf.float32,
                                              name="inputs")])
  def serve(inputs):
    flat = tf.reshape(inputs, (rows, in_features))
    return {"outputs": tf.matmul(flat, module.weights)[None]}

  module.serve = serve
  with tempfile.TemporaryDirectory() as saved:
    tf.saved_model.save(module, saved, signatures={"serving_default": serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range int8 weights
    return converter.convert()


def write_models(rows_list, shapes, samples, work, seed=0):
  """The models and inputs in ``work`` for guest_outputs.py; the manifest entries."""
  for sub in ("models", "inputs"):
    os.makedirs(os.path.join(work, sub), exist_ok=True)
  rng = np.random.default_rng(seed)
  entries = []
  for rows in rows_list:
    for in_features, out_features in shapes:
      name = f"fc_rows{rows}_in{in_features}_out{out_features}"
      with open(os.path.join(work, "models", name + ".tflite"), "wb") as handle:
        handle.write(fc_model(rows, in_features, out_features, seed))
      inputs = rng.normal(size=(samples, 1, rows, in_features)).astype(np.float32)
      np.save(os.path.join(work, "inputs", name + ".npy"), inputs)
      entries.append({"name": name, "file": f"models/{name}.tflite", "mode": "sequence",
                      "inputs": f"inputs/{name}.npy", "rows": rows,
                      "in_features": in_features, "out_features": out_features})
  return entries


def probe_rows(entries, runs):
  """One row per model x emulated platform x XNNPack setting, against x86's same setting."""
  out = []
  host = runs[arm64_parity.HOST]
  for entry in entries:
    for platform, run in runs.items():
      if platform == arm64_parity.HOST:
        continue
      for xnn in ("on", "off"):
        key = f"{entry['name']}__xnn{xnn}"
        row = {"model": entry["name"], "rows": entry["rows"],
               "in_features": entry["in_features"], "out_features": entry["out_features"],
               "platform": f"emulated {platform}", "xnnpack": xnn == "on",
               "tolerance": TOLERANCE, "emulated": True}
        mine, ref = run.get(key), host.get(key)
        if not isinstance(mine, np.ndarray) or not isinstance(ref, np.ndarray):
          row["status"] = (mine if isinstance(mine, str) else
                           f"no reference ({ref})" if isinstance(ref, str) else "not run")
        else:
          row.update(samples=len(mine), max_error=arm64_parity.max_error(mine, ref))
          row["within_tolerance"] = bool(row["max_error"] <= TOLERANCE)
          row["status"] = "ok" if row["within_tolerance"] else "DISAGREES"
        out.append(row)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.arm64_fc_probe",
                                   description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--rows", default="1,2,4,26", help="input rows (the FC's batch)")
  parser.add_argument("--cpus", type=arm64_parity.name_list(arm64_parity.CPUS, separator=";"),
                      default=("cortex-a72", "cortex-a76", "max", "max,sme=off", "max,sve=off"),
                      help="emulated cores separated by ';', each maybe with qemu properties")
  parser.add_argument("--samples", type=int, default=2)
  parser.add_argument("--root", help="the arm64 root (default: build_root.sh's)")
  parser.add_argument("--qemu", help="a static qemu-aarch64 to use instead of binfmt's")
  parser.add_argument("--out", default=DEFAULT_OUT)
  args = parser.parse_args(argv)
  try:
    rows_list = [int(r) for r in args.rows.split(",")]
  except ValueError:
    parser.error(f"--rows takes integers like 1,2,26; got {args.rows!r}")
  if min(rows_list) < 1 or args.samples < 1:
    parser.error("--rows and --samples must be >= 1")
  if os.path.isdir(args.out) or not args.out.endswith(".csv"):
    parser.error(f"--out {args.out!r} must be a .csv file name")
  if args.qemu and not (os.path.isfile(args.qemu) and os.access(args.qemu, os.X_OK)):
    parser.error(f"--qemu {args.qemu!r} is not an executable file")
  if os.geteuid() != 0:
    parser.error("the emulated runs need root (chroot, mount): run it with sudo")
  work = tempfile.mkdtemp(prefix="dkp-fc-probe.")
  try:
    entries = write_models(rows_list, SHAPES, args.samples, work)
    arm64_parity.write_manifest(entries, work)
    shutil.copy(arm64_parity.GUEST_OUTPUTS, work)
    arm64_parity.run_host(work, os.path.join(work, "outputs-x86"))
    dirs = {arm64_parity.HOST: os.path.join(work, "outputs-x86")}
    version = arm64_parity.qemu_version(args.qemu)
    for cpu in args.cpus:
      name = "outputs-" + cpu.replace(",", "_").replace("=", "_")
      arm64_parity.run_emulated(work, cpu, name, args.root, args.qemu)
      dirs[f"{cpu} (qemu {version or 'unknown'})"] = os.path.join(work, name)
    rows = probe_rows(entries, {k: arm64_parity.load_run(d) for k, d in dirs.items()})
  finally:
    shutil.rmtree(work, ignore_errors=True)
  arm64_parity.write_csv(rows, args.out, COLUMNS)
  common.write_json_atomic(os.path.splitext(args.out)[0] + ".json", {
      "rows": rows_list, "shapes": SHAPES, "cpus": args.cpus, "samples": args.samples,
      "host": common.host_info(), "commit": common.git_commit(),
      "emulated": "arm64 outputs computed under qemu-user (QEMU_CPU), not on a board"})
  for row in rows:
    error = "" if row.get("max_error") is None else f"{row['max_error']:.2e}"
    print(f"{row['model']:<28}{row['platform']:<36}{str(row['xnnpack']):<7}{error:>10}  "
          f"{row['status']}")
  print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
  main()
