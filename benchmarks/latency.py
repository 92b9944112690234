"""Host inference latency of converted LSTM stacks: dense vs DKP and plain structures.

The model is the LSTM stack alone, Input((None, units)) floats -> layers x
LSTM-like(units, return_sequences=True), with no embedding or softmax, so the
latency ratio isolates the LSTM layers. Structures (``--structures``):

- ``dense``: `keras.layers.LSTM`, step mode only (lowered, unfused);
- ``fused-lstm``: the same `keras.layers.LSTM`, sequence mode only: there
  `pipelines.convert` keeps a Keras LSTM as the fused
  UNIDIRECTIONAL_SEQUENCE_LSTM, so in sequence mode ``dense`` and
  ``fused-lstm`` are one model. Either name asks for the baseline, which is
  reported as ``dense`` in step mode and ``fused-lstm`` in sequence mode;
- ``kp``: `dkp.DKPLSTM(units, compression=c, doped=False)` (Kronecker only);
- ``dkp``: `dkp.DKPLSTM(units, compression=c)`, S annealed cheaply to its
  target sparsity (as in `benchmarks.convert_time`);
- ``dkp-1x1``: ``dkp`` with S in 1x1 blocks (unstructured, ``block_size=(1, 1)``):
  what the accuracy table's 1x1 rows deploy as;
- ``lmf`` / ``hmd``: `dkp.DKPLSTM(..., structure='lowrank' | 'hmd', doped=False)`;
- lowering tries, only when named: ``dkp-fused-s``, the ``dkp`` model lowered with
  one S per layer over its input and state (``fuse_doping=True``, step mode).

A structure / compression the package rejects (ValueError) is skipped with a
note. Each model is converted with `pipelines.conversion.convert` in ``step`` mode
(one invoke = one time step, states as inputs) and ``sequence`` mode (one
invoke = ``--seq-len`` steps). All variants of one (mode, threads, XNNPack on
or off) setting are timed together by `tflite_ops.timing.interleaved_medians`,
each variant's block holding as many invokes as make ~30 ms, so host drift
hits all alike. Output: a tidy CSV (one row per variant x setting) with
``speedup_vs_dense`` against the baseline of the same setting, and a JSON
sidecar with host and config. Headline (issue 6): the 2x650 LSTM at 25x, step
mode, 1 thread: dense / DKP latency >= 6x with XNNPack off and on, and the
LSTM weights in the .tflite >= 22x smaller.

    python -m benchmarks.latency                 # 2x650, 3 compressions (minutes)
    python -m benchmarks.latency --quick         # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from benchmarks import common  # imports dkp_keras first

import dkp_keras as dkp  # noqa: E402  pylint: disable=wrong-import-order
import tf_keras as keras  # noqa: E402  pylint: disable=wrong-import-order

from pipelines import conversion  # noqa: E402
from tflite_ops import files  # noqa: E402
from tflite_ops import timing  # noqa: E402

STRUCTURES = ("dense", "fused-lstm", "kp", "dkp", "dkp-1x1", "lmf", "hmd")
# Lowering tries, timed only when asked for (--structures): structure -> (the model
# it lowers, `conversion.convert` options, the modes that lowering has).
LOWERING_TRIES = {"dkp-fused-s": ("dkp", {"fuse_doping": True}, ("step",))}
BASELINES = ("dense", "fused-lstm")
BASELINE = {"step": "dense", "sequence": "fused-lstm"}  # the baseline's name per mode
MODES = ("step", "sequence")
# structure -> DKPLSTM keyword arguments
DKP_KWARGS = {
    "kp": {"structure": "kronecker", "doped": False},
    "dkp": {"structure": "kronecker", "doped": True},
    "dkp-1x1": {"structure": "kronecker", "doped": True, "block_size": (1, 1)},
    "lmf": {"structure": "lowrank", "doped": False},
    "hmd": {"structure": "hmd", "doped": False},
}
COLUMNS = ["structure", "compression", "mode", "threads", "xnnpack", "latency_us_median",
           "latency_us_p10", "latency_us_p90", "model_bytes", "speedup_vs_dense",
           "weights_bytes", "weights_ratio_vs_dense", "params_compression", "invokes_per_block",
           "fast_block_sparse", "verify_max_error"]
TARGET_SPEEDUP = 6.0
TARGET_SIZE_RATIO = 22.0
HEADLINE = {"units": 650, "layers": 2, "compression": 25.0}
BLOCK_S = 0.03  # seconds of invokes per timed block
DEFAULTS = {
    "units": 650,
    "layers": 2,
    "compressions": (10.0, 25.0, 50.0),
    "threads": (1, 2),
    "structures": STRUCTURES,
    "modes": MODES,
    "seq_len": 35,
    "repeats": 7,
    "seed": 0
}
QUICK = {"units": 64, "layers": 1, "compressions": (4.0,), "threads": (1,), "repeats": 2,
         "modes": ("step",), "structures": ("dense", "dkp", "dkp-1x1")}
DEFAULT_OUT = os.path.join("benchmarks", "results", "latency.csv")

# --------------------------------------------------------------------------- models


def build_model(structure, units, layers, compression, seed=0):
  """The LSTM stack; raises ValueError where the package rejects the compression."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((None, units), name="inputs")
  x = inputs
  for i in range(layers):
    if structure == "baseline" or structure in BASELINES:
      x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
    else:
      kwargs = DKP_KWARGS[LOWERING_TRIES.get(structure, (structure,))[0]]
      x = dkp.DKPLSTM(units, compression=compression, return_sequences=True, name=f"lstm_{i}",
                      **kwargs)(x)
  return keras.Model(inputs, x, name=structure.replace("-", "_"))


def anneal_cheaply(model, units, seed=0):
  """S at its target sparsity in 4 SGD steps (no real training); returns the finalized model.

  S starts at zero and only becomes nonzero after the first step, and
  magnitude pruning needs nonzero S, hence several steps, not one.
  """
  annealed = dkp.prepare_for_annealing(model, begin_step=0, end_step=3, frequency=1)
  annealed.compile(keras.optimizers.SGD(1.0, clipnorm=5.0), keras.losses.MeanSquaredError())
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(8, 5, units)).astype(np.float32)  # 4 batches of 2 x 5 steps
  y = rng.normal(size=(8, 5, units)).astype(np.float32)
  annealed.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
               callbacks=[dkp.SparsityAnnealing()])
  return dkp.finalize(annealed)


def variants(config, log=print):
  """(structure, compression) pairs to build; the baseline once, compression 1."""
  wanted = config["structures"]
  out = []
  if any(s in wanted for s in BASELINES):
    out.append(("baseline", 1.0))
  for structure in STRUCTURES + tuple(LOWERING_TRIES):
    if structure in BASELINES or structure not in wanted:
      continue
    out.extend((structure, c) for c in config["compressions"])
  if not any(s in wanted for s in BASELINES):
    log("  note: no dense / fused-lstm baseline requested; speedup_vs_dense is left empty")
  return out


def build_models(config, log=print):
  """{(structure, compression): model}; rejected configurations are skipped with a note."""
  models = {}
  for structure, compression in variants(config, log):
    start = time.perf_counter()
    try:
      model = build_model(structure, config["units"], config["layers"], compression,
                          config["seed"])
    except ValueError as error:
      log(f"  skipped {structure} at {compression:g}x: {str(error).splitlines()[0]}")
      continue
    if DKP_KWARGS.get(LOWERING_TRIES.get(structure, (structure,))[0], {}).get("doped"):
      model = anneal_cheaply(model, config["units"], config["seed"])
    models[(structure, compression)] = model
    log(f"  built {structure:<8} {compression:>5g}x in {time.perf_counter() - start:5.1f} s")
  return models


# --------------------------------------------------------------------------- timing


def sequence_invoker(path, num_threads=1, xnnpack=True):
  """One call = one ``invoke()`` of a sequence-mode model: a whole sequence.

  The inputs are set once, exactly as `timing.step_invoker` sets them,
  so it serves here too; the fused LSTM's state variables carry over between
  invokes, which changes values, not the work done.
  """
  return timing.step_invoker(path, num_threads=num_threads, xnnpack=xnnpack)


def _block(invoke, target_s=BLOCK_S):
  """A callable of k back-to-back invokes, k chosen so that it takes ~target_s; and k."""
  invoke()  # the first invoke prepares kernels (and XNNPack packs weights)
  calls, start = 0, time.perf_counter()
  while True:
    invoke()
    calls += 1
    elapsed = time.perf_counter() - start
    if elapsed >= target_s / 4 or calls >= 10_000:
      break
  number = max(1, int(round(target_s / (elapsed / calls))))

  def run():
    for _ in range(number):
      invoke()

  return run, number


def time_setting(converted, mode, threads, xnnpack, repeats, log=print):
  """Interleaved medians of every converted variant in one setting: {key: (stats, number)}."""
  make = timing.step_invoker if mode == "step" else sequence_invoker
  blocks, numbers = {}, {}
  for key, path in converted.items():
    try:
      invoke = make(path, num_threads=threads, xnnpack=xnnpack)
    except (RuntimeError, ValueError) as error:  # e.g. XNNPack refusing a model
      log(f"  {key} {mode} threads={threads} xnnpack={xnnpack}: interpreter failed "
          f"({str(error).splitlines()[0][:120]}); not timed")
      continue
    blocks[key], numbers[key] = _block(invoke)
  stats = timing.interleaved_medians(blocks, repeats=repeats, number=1, warmup=1)
  return {key: ({k: v / numbers[key] if k != "samples_s" else [s / numbers[key] for s in v]
                 for k, v in stats[key].items()}, numbers[key]) for key in stats}


def convert_all(models, mode, config, directory, log=print):
  """Converts each model in ``mode``: ({key: path}, {key: report})."""
  paths, reports = {}, {}
  for (structure, compression), model in models.items():
    name = BASELINE[mode] if structure == "baseline" else structure
    key = (name, compression)
    _, options, modes = LOWERING_TRIES.get(structure, (None, {}, MODES))
    if mode not in modes:
      log(f"  {name} has no {mode} mode lowering; not converted")
      continue
    out = os.path.join(directory, f"{name}_{compression:g}_{mode}.tflite")
    start = time.perf_counter()
    result = conversion.convert(model, out, mode=mode, seq_len=config["seq_len"],
                                verify_samples=1, force=True, **options)
    paths[key], reports[key] = result.path, result.report
    log(f"  converted {name:<10} {compression:>5g}x {mode:<8} in "
        f"{time.perf_counter() - start:5.1f} s: {result.report['bytes']['file'] / 1024:8.1f} KiB")
  return paths, reports


def run_benchmark(config, log=print):
  """Builds, converts and times every variant; returns the tidy DataFrame."""
  models = build_models(config, log)
  # What each model reaches (dense params / params), not what it asked for: plain
  # Kronecker takes the same factors whatever the compression asked for.
  achieved = {key: _params_compression(model) for key, model in models.items()}
  rows = []
  with tempfile.TemporaryDirectory(prefix="latency.") as directory:
    for mode in config["modes"]:
      paths, reports = convert_all(models, mode, config, directory, log)
      for threads in config["threads"]:
        for xnnpack in (False, True):
          timed = time_setting(paths, mode, threads, xnnpack, config["repeats"], log)
          for (name, compression), (stats, number) in timed.items():
            report = reports[(name, compression)]
            rows.append({
                "structure": name, "compression": compression, "mode": mode,
                "threads": threads, "xnnpack": xnnpack,
                "latency_us_median": stats["median_s"] * 1e6,
                "latency_us_p10": stats["p10_s"] * 1e6,
                "latency_us_p90": stats["p90_s"] * 1e6,
                "model_bytes": report["bytes"]["file"],
                "weights_bytes": report["bytes"]["weights"],
                "params_compression": achieved[("baseline" if name in BASELINES else name,
                                                compression)],
                "invokes_per_block": number,
                "fast_block_sparse": report["sparsity"]["fast_block_sparse"],
                "verify_max_error": report["verification"]["max_error"],
            })
  frame = pd.DataFrame(rows)
  return add_ratios(frame)


def _params_compression(model):
  report = dkp.compression_report(model)
  return float(report.loc[report["layer"] == "total", "compression"].iloc[0])


def add_ratios(frame):
  """speedup_vs_dense / weights_ratio_vs_dense against the same setting's baseline row."""
  frame = frame.copy()
  frame["speedup_vs_dense"] = np.nan
  frame["weights_ratio_vs_dense"] = np.nan
  for _, group in frame.groupby(["mode", "threads", "xnnpack"]):
    mode = group["mode"].iloc[0]
    base = group[group["structure"] == BASELINE[mode]]
    if base.empty:
      continue
    frame.loc[group.index, "speedup_vs_dense"] = (base["latency_us_median"].iloc[0] /
                                                  group["latency_us_median"])
    frame.loc[group.index, "weights_ratio_vs_dense"] = (base["weights_bytes"].iloc[0] /
                                                        group["weights_bytes"])
  return frame[COLUMNS]


# --------------------------------------------------------------------------- output


def format_table(frame):
  lines = [f"{'structure':<11}{'x':>5}{'mode':>9}{'thr':>4}{'xnn':>5}{'median us':>11}"
           f"{'p10 us':>10}{'p90 us':>10}{'file KiB':>10}{'speedup':>9}{'weights x':>10}"]
  for row in frame.itertuples(index=False):
    lines.append(
        f"{row.structure:<11}{row.compression:>5g}{row.mode:>9}{row.threads:>4}"
        f"{'on' if row.xnnpack else 'off':>5}{row.latency_us_median:>11,.1f}"
        f"{row.latency_us_p10:>10,.1f}{row.latency_us_p90:>10,.1f}"
        f"{row.model_bytes / 1024:>10,.1f}{row.speedup_vs_dense:>8.2f}x"
        f"{row.weights_ratio_vs_dense:>9.1f}x{row.params_compression:>8.1f}x")
  return "\n".join(lines)


def headline(frame, config):
  """The issue's targets on the step-mode DKP row nearest 25x, fewest threads; lines + dict."""
  rows = frame[(frame["structure"] == "dkp") & (frame["mode"] == "step")]
  if rows.empty or not (frame["structure"] == "dense").any():
    return ["headline: needs step mode with dense and dkp; not measured"], None
  compression = min(rows["compression"].unique(), key=lambda c: abs(c - 25.0))
  threads = min(rows["threads"].unique())
  rows = rows[(rows["compression"] == compression) & (rows["threads"] == threads)]
  scope = (f"{config['layers']}x{config['units']} LSTM, {compression:g}x, step mode, "
           f"{threads} thread(s)")
  target_config = (config["units"] == HEADLINE["units"] and config["layers"] == HEADLINE["layers"]
                   and compression == HEADLINE["compression"] and threads == 1)
  lines = [f"headline ({scope}" + ("" if target_config else
                                   "; NOT the issue's 2x650 at 25x, 1 thread") + "):"]
  result = {"scope": scope, "issue_configuration": target_config}
  for xnnpack in (False, True):
    row = rows[rows["xnnpack"] == xnnpack]
    if row.empty:
      continue
    speedup = float(row["speedup_vs_dense"].iloc[0])
    met = speedup >= TARGET_SPEEDUP
    result[f"speedup_xnnpack_{'on' if xnnpack else 'off'}"] = speedup
    lines.append(f"  dense / dkp latency, XNNPack {'on ' if xnnpack else 'off'}: {speedup:5.2f}x "
                 f"(target >= {TARGET_SPEEDUP:g}x): {'met' if met else 'missed'}")
  # The strongest dense baselines: XNNPack on the most threads (step mode), and
  # Keras' fused LSTM (sequence mode, per whole sequence).
  best_dkp = float(rows["latency_us_median"].min())
  dense_mt = frame[(frame["structure"] == "dense") & (frame["mode"] == "step") &
                   frame["xnnpack"] & (frame["threads"] == frame["threads"].max())]
  if not dense_mt.empty:
    ratio = float(dense_mt["latency_us_median"].iloc[0]) / best_dkp
    result["speedup_vs_dense_xnnpack_most_threads"] = ratio
    lines.append(f"  dense (XNNPack, {int(dense_mt['threads'].iloc[0])} threads) / best dkp "
                 f"({threads} thread): {ratio:5.2f}x")
  fused = frame[(frame["structure"] == "dkp") & (frame["mode"] == "sequence") &
                (frame["compression"] == compression) & (frame["threads"] == threads)]
  if not fused.empty:
    ratio = float(fused["speedup_vs_dense"].max())
    result["speedup_vs_fused_lstm_sequence"] = ratio
    lines.append(f"  fused LSTM / dkp, sequence mode (best of XNNPack on/off): {ratio:5.2f}x")
  ratio = float(rows["weights_ratio_vs_dense"].iloc[0])
  result["weights_ratio"] = ratio
  lines.append(f"  .tflite LSTM weights, dense / dkp: {ratio:5.1f}x (target >= "
               f"{TARGET_SIZE_RATIO:g}x): {'met' if ratio >= TARGET_SIZE_RATIO else 'missed'}")
  return lines, result


# --------------------------------------------------------------------------- command line


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.latency",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--units", type=int, help=f"LSTM units (default {DEFAULTS['units']})")
  parser.add_argument("--layers", type=int, help=f"LSTM layers (default {DEFAULTS['layers']})")
  parser.add_argument("--compressions", type=common.comma_list(float),
                      help="compression factors "
                      "(default 10,25,50)")
  parser.add_argument("--threads", type=common.comma_list(int),
                      help="LiteRT threads (default 1,2)")
  parser.add_argument("--structures",
                      type=common.comma_list(str, STRUCTURES + tuple(LOWERING_TRIES)),
                      help=f"default {','.join(STRUCTURES)}; lowering tries, only when named: "
                      f"{','.join(LOWERING_TRIES)} (step mode)")
  parser.add_argument("--modes", type=common.comma_list(str, MODES),
                      help="default step,sequence")
  parser.add_argument("--seq-len", type=int,
                      help=f"sequence-mode length (default {DEFAULTS['seq_len']})")
  parser.add_argument("--repeats", type=int,
                      help=f"timed blocks per variant (default {DEFAULTS['repeats']})")
  parser.add_argument("--seed", type=int, help=f"seed (default {DEFAULTS['seed']})")
  parser.add_argument("--out", default=DEFAULT_OUT, help="CSV path; the JSON goes beside it")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "seq_len", "repeats"))
  if min(config["threads"]) < 1 or min(config["compressions"]) < 1:
    parser.error("--threads and --compressions must be >= 1")
  config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
  config["quick"] = args.quick
  return config, args


def main(argv=None):
  config, args = parse_args(argv)
  print(f"latency benchmark: {config['layers']}x{config['units']} LSTM stack, compressions "
        f"{config['compressions']}, structures {config['structures']}, modes {config['modes']}, "
        f"threads {config['threads']}, XNNPack off/on, {config['repeats']} repeats")
  host = common.announce_host()
  start = time.perf_counter()
  frame = run_benchmark(config)
  print(format_table(frame))
  lines, result = headline(frame, config)
  print("\n".join(lines))
  out = os.path.abspath(args.out)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  files.write_atomic(out, frame.to_csv(index=False))
  sidecar = os.path.splitext(out)[0] + ".json"
  data = common.result_record(
      "latency", config, host, start,
      timing={
          "method": "LiteRT Interpreter, float inputs seeded random, set once; blocks of back-to-back "
                    f"invoke() (~{BLOCK_S * 1e3:g} ms each) interleaved across all variants of "
                    "one (mode, threads, xnnpack) setting (tflite_ops.timing.interleaved_medians)",
          "statistic": "median / p10 / p90 over repeats of the per-invoke mean of a block",
          "baseline": BASELINE,
          "targets": {"speedup": TARGET_SPEEDUP, "weights_ratio": TARGET_SIZE_RATIO,
                      "at": HEADLINE}
      },
      headline=result,
      csv=os.path.basename(out))  # beside this file; no machine paths in results
  common.write_json_atomic(sidecar, data)
  print(f"wrote {out} and {sidecar}")
  return frame


if __name__ == "__main__":
  sys.exit(0 if main() is not None else 1)
