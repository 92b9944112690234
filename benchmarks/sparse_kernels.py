"""LiteRT latency of the doping matrix S's kernels against a dense FULLY_CONNECTED.

For a Keras [in, out] matrix S at each density, in two patterns:

- ``block41``: tfmot (4, 1) blocks on the Keras kernel (4 consecutive inputs
  of one output, TFLite's fast 1x4 layout), what annealing produces;
- ``random``: unstructured nonzeros,

one tiny model ``x @ S`` (batch 1) is converted per kernel of
`tflite_ops.sparse_matmul` (``block`` and ``gather`` with
``Optimize.EXPERIMENTAL_SPARSITY``, ``dense`` without, ``csr`` without and
then rewritten by `tflite_ops.sparse_fc_rewrite`, as `pipelines.convert` does), plus the dense
baseline: a fully dense random matrix of the same shape, converted without
the sparsity flag. Where the ``auto`` rule (`sparse_matmul.choose_kernel`)
picks ``dense``, the model `pipelines.convert` would write for ``auto`` is
timed too (``auto``: the dense kernel, but converted *with* the sparsity flag,
as convert does for every kernel choice but ``dense``).

Every model runs in LiteRT's `Interpreter` with XNNPack (the default) and
without (builtin kernels). Timed: blocks of ``invoke()`` calls on an input set
once, the blocks interleaved across all variants (baseline, block, gather,
...) so that host drift hits all alike; reported: median µs per invoke and
the speed-up against the dense baseline of the same resolver and run.

    python -m benchmarks.sparse_kernels              # 1300 -> 2600, 8 densities (minutes)
    python -m benchmarks.sparse_kernels --quick      # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from benchmarks import common  # imports dkp_keras first

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order

from tflite_ops import describe  # noqa: E402
from tflite_ops import sparse_fc_rewrite  # noqa: E402
from tflite_ops import sparse_matmul  # noqa: E402

PATTERNS = ("block41", "random")
METHODS = ("block", "csr", "gather", "dense")
RESOLVERS = ("xnnpack", "builtin")
DEFAULTS = {
    "in_features": 1300,
    "out_features": 2600,
    "densities": (0.01, 0.02, 0.04, 0.1, 0.2, 0.3, 0.4, 0.5),
    "threads": 1,
    "repeats": 7,
    "invokes": 200,
    "max_block_s": 0.5,
    "warmup": 5,
    "tolerance": 0.1,
    "seed": 0
}
QUICK = {
    "in_features": 64,
    "out_features": 128,
    "densities": (0.04, 0.3),
    "repeats": 2,
    "invokes": 20,
    "warmup": 2
}
DEFAULT_OUT = os.path.join("benchmarks", "results", "sparse_kernels.json")

# --------------------------------------------------------------------------- matrices


def make_matrix(pattern, n, m, density, rng):
  """A [n, m] float32 S with ``density`` of its blocks (block41) or entries (random) nonzero.

  Exactly round(density * count) blocks / entries are kept, so the density is
  not left to chance; values are normal, never zero.
  """
  if pattern == "block41":
    rows = -(-n // 4)
    keep = np.zeros(rows * m, bool)
    keep[rng.choice(rows * m, round(density * rows * m), replace=False)] = True
    mask = np.repeat(keep.reshape(rows, m), 4, axis=0)[:n]  # 4 consecutive inputs per block
  elif pattern == "random":
    keep = np.zeros(n * m, bool)
    keep[rng.choice(n * m, round(density * n * m), replace=False)] = True
    mask = keep.reshape(n, m)
  elif pattern == "dense":
    mask = np.ones((n, m), bool)
  else:
    raise ValueError(f"unknown pattern {pattern!r}; choose one of {PATTERNS}")
  values = rng.normal(size=(n, m)).astype(np.float32)
  values[values == 0] = 1.0
  return np.where(mask, values, np.float32(0))


def convert(kernel, method, sparsity_flag):
  """The .tflite bytes of ``x @ kernel`` (x: (1, n)) with ``method``'s lowering."""
  spec = tf.TensorSpec((1, kernel.shape[0]), tf.float32, name="x")
  function = tf.function(lambda x: {"y": sparse_matmul.sparse_matmul(x, kernel, method)},
                         input_signature=[spec], autograph=False)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if sparsity_flag:
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  # As pipelines.convert: the CSR rewrite, and sparse FULLY_CONNECTED ops at version 8.
  csr = [kernel.T] if method == "csr" else []
  flatbuffer, stored = sparse_fc_rewrite.store_csr_weights(converter.convert(), csr)
  if stored != len(csr):
    raise RuntimeError("the csr rewrite did not find S in the converted file")
  return flatbuffer


def runs_as(op_counts, fast, csr=False):
  """The computation LiteRT runs: a sparse FC (1x4 or CSR), a dense FC (DENSIFY too) or gather."""
  if "GATHER" in op_counts:
    return "gather"
  if csr:
    return "sparse CSR FC"
  return "sparse 1x4 FC" if fast else "dense FC"


def storage(flatbuffer):
  """How the file stores its weight: sparse at all, in the fast 1x4 layout, densified at load."""
  info = describe.inspect_model(flatbuffer)
  sparse = info.sparse_tensors
  fast = any(describe.is_fast_block_sparse(t) for t in sparse)
  csr = any(describe.is_csr_sparse(t) for t in sparse)
  densified = info.op_counts.get("DENSIFY", 0) > 0
  if not sparse:
    text = "dense"
  elif fast:
    text = "sparse 1x4 (fast)"
  elif csr and not densified:
    text = "sparse CSR"
  elif densified:
    text = "sparse -> DENSIFY"
  else:
    text = "sparse (slow)"
  return {
      "file_bytes": info.file_bytes,
      "weights_bytes": info.weights_bytes,
      "stored_sparse": bool(sparse),
      "fast_1x4": fast,
      "densified": densified,
      "storage": text,
      "csr": csr and not densified,
      "runs": runs_as(info.op_counts, fast, csr and not densified),
      "stored_density": (statistics.fmean(t.sparsity.density for t in sparse) if sparse else None),
      "op_counts": info.op_counts
  }


# --------------------------------------------------------------------------- interpreters


def make_interpreter(flatbuffer, resolver, threads):
  """A LiteRT interpreter with XNNPack (default resolver) or builtin kernels only."""
  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  kwargs = {"model_content": flatbuffer, "num_threads": threads}
  if resolver == "builtin":
    kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  interpreter = Interpreter(**kwargs)
  interpreter.allocate_tensors()
  return interpreter


def run_once(interpreter, x):
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def time_block(interpreter, invokes):
  """Seconds per `invoke()` over ``invokes`` consecutive calls (input already set)."""
  invoke = interpreter.invoke
  start = time.perf_counter()
  for _ in range(invokes):
    invoke()
  return (time.perf_counter() - start) / invokes


def calibrate(interpreter, config):
  """Invokes per timed block: ``--invokes``, fewer where that would exceed ``max_block_s``.

  The gather kernel at 50% density takes milliseconds per call; 200 of them
  per block would take most of the run without making its median better.
  """
  for _ in range(config["warmup"]):
    interpreter.invoke()
  single = min(time_block(interpreter, 1) for _ in range(3))
  return max(3, min(config["invokes"], int(config["max_block_s"] / max(single, 1e-9))))


# --------------------------------------------------------------------------- benchmark


def build_variants(config, log=print):
  """Matrices, converted files and storage of every variant, in timing order."""
  rng = np.random.default_rng(config["seed"])
  n, m = config["in_features"], config["out_features"]
  variants = []

  def add(name, pattern, target, kernel, method, flag):
    start = time.perf_counter()
    flatbuffer = convert(kernel, method, flag)
    variant = {
        "name": name, "pattern": pattern, "density": target, "method": method,
        "sparsity_flag": flag, "kernel": kernel, "flatbuffer": flatbuffer,
        "convert_s": time.perf_counter() - start, **storage(flatbuffer)
    }
    variants.append(variant)
    return variant

  add("baseline", "dense", 1.0, make_matrix("dense", n, m, 1.0, rng), "dense", False)
  for pattern in PATTERNS:
    for target in config["densities"]:
      kernel = make_matrix(pattern, n, m, target, rng)
      pick = sparse_matmul.choose_kernel(kernel)
      for method in METHODS:
        add(f"{pattern}/{target:g}/{method}", pattern, target, kernel, method,
            method in ("block", "gather"))
      # What pipelines.convert writes for a 'dense' S when another S of the model
      # runs 'block': the converter's sparsity flag is global.
      if pick == "dense":
        add(f"{pattern}/{target:g}/auto", pattern, target, kernel, "dense", True)
      log(f"  converted {pattern:<8} density {target:<5g} auto={pick:<6} "
          + "  ".join(f"{v['method']}{'+flag' if v['name'].endswith('auto') else ''}: "
                      f"{v['storage']} {v['file_bytes'] / 1024:,.0f} KiB"
                      for v in variants if v["pattern"] == pattern and v["density"] == target))
  return variants


def run_benchmark(config, log=print):
  """Converts, checks and times every variant; returns the result dict (no I/O)."""
  variants = build_variants(config, log)
  x = np.random.default_rng(config["seed"] + 1).normal(
      size=(1, config["in_features"])).astype(np.float32)
  runners = []  # (variant, resolver, interpreter, invokes)
  for variant in variants:
    reference = x.astype(np.float64) @ variant["kernel"]
    variant["max_normwise_error"] = {}
    variant["errors"] = {}
    for resolver in RESOLVERS:
      try:
        interpreter = make_interpreter(variant["flatbuffer"], resolver, config["threads"])
        y = run_once(interpreter, x)  # leaves x set for the timed invokes
      except (RuntimeError, ValueError) as error:  # e.g. a delegate refusing the model
        variant["errors"][resolver] = str(error).splitlines()[0][:200]
        continue
      error = float(np.max(np.abs(y - reference)) / max(np.max(np.abs(reference)), 1e-30))
      variant["max_normwise_error"][resolver] = error
      runners.append((variant, resolver, interpreter, calibrate(interpreter, config)))

  samples = {(v["name"], r): [] for v, r, _, _ in runners}
  for rep in range(config["repeats"]):
    start = time.perf_counter()
    for variant, resolver, interpreter, invokes in runners:
      samples[(variant["name"], resolver)].append(time_block(interpreter, invokes))
    log(f"  repeat {rep + 1}/{config['repeats']} in {time.perf_counter() - start:5.1f} s: "
        + "  ".join(f"baseline/{r} {samples[('baseline', r)][-1] * 1e6:.0f} µs"
                    for r in RESOLVERS if ("baseline", r) in samples))
  return summarize(config, variants, runners, samples)


def summarize(config, variants, runners, samples):
  """Medians, speed-ups against the baseline and the auto rule's verdict, per resolver."""
  invokes = {(v["name"], r): k for v, r, _, k in runners}
  timings = {}
  for (name, resolver), times in samples.items():
    base = samples.get(("baseline", resolver))
    entry = {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6,
             "samples_us": [t * 1e6 for t in times],
             "invokes_per_block": invokes[(name, resolver)]}
    if base:
      entry["speedup_vs_dense"] = statistics.median(base) / statistics.median(times)
      # Each block against the baseline block of the same repetition.
      entry["median_paired_speedup"] = statistics.median(b / t for b, t in zip(base, times))
    timings.setdefault(name, {})[resolver] = entry

  keep = ("name", "pattern", "density", "method", "sparsity_flag", "file_bytes", "weights_bytes",
          "stored_sparse", "fast_1x4", "csr", "densified", "storage", "runs", "stored_density",
          "op_counts", "convert_s", "max_normwise_error", "errors")
  out_variants = []
  for variant in variants:
    entry = {k: variant[k] for k in keep}
    entry["actual_density"] = sparse_matmul.density(variant["kernel"])
    entry["timings"] = timings.get(variant["name"], {})
    out_variants.append(entry)

  by_name = {v["name"]: v for v in out_variants}
  rule = []
  for pattern in PATTERNS:
    for target in config["densities"]:
      kernel = next(v["kernel"] for v in variants
                    if v["pattern"] == pattern and v["density"] == target)
      pick = sparse_matmul.choose_kernel(kernel)
      for resolver in RESOLVERS:
        measured = {
            method: by_name[f"{pattern}/{target:g}/{method}"]["timings"][resolver]["median_us"]
            for method in METHODS
            if resolver in by_name[f"{pattern}/{target:g}/{method}"]["timings"]
        }
        if not measured:
          continue
        fastest = min(measured, key=measured.get)
        row = {"pattern": pattern, "density": target, "resolver": resolver, "auto_pick": pick,
               "fastest": fastest, "median_us": measured,
               "auto_is_fastest": pick == fastest}
        if pick in measured:
          row["auto_slowdown"] = measured[pick] / measured[fastest]
          runs = {m: by_name[f"{pattern}/{target:g}/{m}"]["runs"] for m in (pick, fastest)}
          # A densified 'block' S runs the same dense FC as 'dense': any gap
          # between the two is noise, as is one within the tolerance.
          row["same_computation"] = runs[pick] == runs[fastest]
          row["auto_wrong"] = (not row["same_computation"] and
                               row["auto_slowdown"] > 1 + config["tolerance"])
        auto = by_name.get(f"{pattern}/{target:g}/auto")
        if auto and resolver in auto["timings"]:
          # convert.py keeps the sparsity flag for an `auto` 'dense' pick, so
          # the converter may still store S sparse: what runs is this file.
          row["as_converted_us"] = auto["timings"][resolver]["median_us"]
          row["as_converted_storage"] = auto["storage"]
          row["as_converted_slowdown"] = row["as_converted_us"] / measured[fastest]
        rule.append(row)
  return {"variants": out_variants, "auto_rule": rule}


# --------------------------------------------------------------------------- output


def format_table(results, config):
  by_name = {v["name"]: v for v in results["variants"]}
  rule = {(r["pattern"], r["density"], r["resolver"]): r for r in results["auto_rule"]}
  lines = []
  for resolver in RESOLVERS:
    base = by_name["baseline"]["timings"].get(resolver)
    if base is None:
      lines.append(f"[{resolver}] baseline failed: {by_name['baseline']['errors']}")
      continue
    base_kib = by_name["baseline"]["file_bytes"] / 1024
    lines.append(f"[{resolver}, {config['threads']} thread(s)] dense baseline "
                 f"{config['in_features']}->{config['out_features']}: "
                 f"{base['median_us']:.1f} µs, {base_kib:,.0f} KiB")
    lines.append(f"{'pattern':<9}{'dens':>6}  " +
                 "".join(f"{m + ' µs (x)':>21}" for m in METHODS) +
                 f"  {'block storage':<19}{'block KiB':>10}{'auto':>7}{'fastest':>8}  verdict")
    for pattern in PATTERNS:
      for target in config["densities"]:
        cells = []
        for method in METHODS:
          t = by_name[f"{pattern}/{target:g}/{method}"]["timings"].get(resolver)
          cells.append(f"{t['median_us']:>11.1f} ({t['speedup_vs_dense']:5.2f}x)" if t else
                       f"{'failed':>21}")
        block = by_name[f"{pattern}/{target:g}/block"]
        r = rule.get((pattern, target, resolver), {})
        verdict = ("ok" if r.get("auto_is_fastest") else
                   f"WRONG ({r['auto_slowdown']:.2f}x slower)" if r.get("auto_wrong") else
                   "~ok (same op)" if r.get("same_computation") else
                   f"~ok (within {config['tolerance']:.0%})" if "auto_wrong" in r else "-")
        if "as_converted_us" in r:
          verdict += (f"; as converted {r['as_converted_us']:.1f} µs "
                      f"({r['as_converted_storage']}, {r['as_converted_slowdown']:.2f}x best)")
        lines.append(f"{pattern:<9}{target:>6g}  " + "".join(f"{c:>21}" for c in cells) +
                     f"  {block['storage']:<19}{block['file_bytes'] / 1024:>10,.0f}"
                     f"{r.get('auto_pick', '-'):>7}{r.get('fastest', '-'):>8}  {verdict}")
    lines.append("")
  return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------- command line


def _densities(text):
  values = tuple(float(v) for v in text.split(",") if v.strip())
  if not values or any(not 0 < v <= 1 for v in values):
    raise argparse.ArgumentTypeError(f"densities must be in (0, 1], got {text!r}")
  return values


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.sparse_kernels",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--in", dest="in_features", type=int,
                      help=f"input size n of S [n, m] (default {DEFAULTS['in_features']})")
  parser.add_argument("--out", dest="out_features", type=int,
                      help=f"output size m (default {DEFAULTS['out_features']})")
  parser.add_argument("--densities", type=_densities,
                      help="comma-separated densities (default "
                      + ",".join(f"{d:g}" for d in DEFAULTS["densities"]) + ")")
  parser.add_argument("--threads", type=int,
                      help=f"interpreter threads (default {DEFAULTS['threads']})")
  parser.add_argument("--repeats", type=int,
                      help=f"timed blocks per variant (default {DEFAULTS['repeats']})")
  parser.add_argument("--invokes", type=int,
                      help=f"invokes per timed block (default {DEFAULTS['invokes']})")
  parser.add_argument("--max-block-s", type=float,
                      help="cap on one block's seconds: slow variants get fewer invokes "
                      f"(default {DEFAULTS['max_block_s']})")
  parser.add_argument("--warmup", type=int,
                      help=f"untimed invokes per variant (default {DEFAULTS['warmup']})")
  parser.add_argument("--tolerance", type=float,
                      help="the auto pick is flagged wrong when it is slower than the fastest "
                      f"kernel by more than this fraction (default {DEFAULTS['tolerance']})")
  parser.add_argument("--seed", type=int, help=f"seed (default {DEFAULTS['seed']})")
  parser.add_argument("--out-json", default=DEFAULT_OUT, help="JSON result path")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("in_features", "out_features", "threads", "repeats",
                                           "invokes"))
  if config["warmup"] < 0 or config["max_block_s"] <= 0 or config["tolerance"] < 0:
    parser.error("--warmup and --tolerance must be >= 0, --max-block-s > 0")
  config["densities"] = list(config["densities"])
  config["quick"] = args.quick
  return config, args


def main(argv=None):
  config, args = parse_args(argv)
  # pylint: disable=import-outside-toplevel
  from importlib.metadata import version
  print(f"sparse_kernels benchmark: S [{config['in_features']}, {config['out_features']}], "
        f"densities {config['densities']}, batch 1, {config['threads']} thread(s), "
        f"{config['repeats']} x <= {config['invokes']} invokes per variant")
  host = common.announce_host(ai_edge_litert=version("ai-edge-litert"))
  start = time.perf_counter()
  results = run_benchmark(config)
  data = common.result_record(
      "sparse_kernels", config, host, start,
      rule={"csr_max_density": sparse_matmul.CSR_MAX_DENSITY,
            "block_max_density": sparse_matmul.BLOCK_MAX_DENSITY},
      timing={
          "method": "blocks of invoke() on a fixed input, interleaved across all variants",
          "clock": "time.perf_counter",
          "statistic": "median µs per invoke; speed-up = baseline median / variant median",
          "resolvers": {"xnnpack": "default (XNNPack delegate)",
                        "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}
      },
      **results)
  print(format_table(results, config))
  wrong = [f"{r['pattern']} {r['density']:g} ({r['resolver']}: picks {r['auto_pick']}, "
           f"{r['fastest']} is {r['auto_slowdown']:.2f}x faster)"
           for r in results["auto_rule"] if r.get("auto_wrong")]
  print("auto rule wrong at: " + ("; ".join(wrong) if wrong else "none"))
  common.write_json_atomic(args.out_json, data)
  print(f"wrote {args.out_json}")
  return data


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
