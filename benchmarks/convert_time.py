"""Wall time and file size of `pipelines.convert` on the PTB-medium LM, DKP and dense.

The model is Embedding(vocab, units) -> layers x LSTM(units,
return_sequences=True) -> Dense(vocab), built twice:

- ``dkp``: `dkp.DKPLSTM(units, compression=c)` layers whose doping matrices
  are given their target sparsity without real training: annealing from
  step 0 to 3, four SGD steps of batch 2 x 5 random tokens (S starts at zero
  and only becomes nonzero after the first step; magnitude pruning needs
  nonzero S), then `dkp.finalize`;
- ``dense``: plain `keras.layers.LSTM` layers (in sequence mode they stay
  Keras' fused UNIDIRECTIONAL_SEQUENCE_LSTM; step mode lowers them).

Each is converted in ``sequence`` mode (``--seq-len`` steps) and ``step`` mode
with ``verify_samples=1``; reported: the report's ``convert_seconds``
(lowering + TFLite conversion), the whole call's wall seconds (with writing,
inspecting and verification), the file size, the bytes of the LSTM weights
in the file against the dense LSTM's float32 bytes, and the report's
``sparsity`` and ``bytes`` entries. The issue's target: converting the 2x650
DKP model takes <= 60 s on 2 cores.

    python -m benchmarks.convert_time            # 2x650, vocab 10000 (minutes)
    python -m benchmarks.convert_time --quick    # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks import common  # imports dkp_keras first

import dkp_keras as dkp  # noqa: E402  pylint: disable=wrong-import-order
import tf_keras as keras  # noqa: E402  pylint: disable=wrong-import-order

from pipelines import conversion  # noqa: E402
from tflite_ops import describe  # noqa: E402

MODELS = ("dkp", "dense")
MODES = ("sequence", "step")
TARGET_SECONDS = 60.0
DEFAULTS = {
    "units": 650,
    "layers": 2,
    "vocab": 10_000,
    "compression": 25.0,
    "seq_len": 35,
    "repeats": 1,
    "warmup": True,
    "seed": 0
}
QUICK = {"units": 32, "layers": 1, "vocab": 300, "compression": 4.0, "seq_len": 6,
         "warmup": False}
DEFAULT_OUT = os.path.join("benchmarks", "results", "convert_time.json")

# --------------------------------------------------------------------------- models


def build_model(kind, units, layers, vocab, compression, seed=0):
  """The LM with DKP or Keras LSTM layers; any sequence length (annealing uses 5 tokens)."""
  keras.utils.set_random_seed(seed)
  tokens = keras.Input((None,), dtype="int32", name="tokens")
  x = keras.layers.Embedding(vocab, units, name="embedding")(tokens)
  for i in range(layers):
    if kind == "dkp":
      x = dkp.DKPLSTM(units, compression=compression, return_sequences=True, name=f"lstm_{i}")(x)
    else:
      x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
  logits = keras.layers.Dense(vocab, name="output")(x)
  return keras.Model(tokens, logits, name=kind)


def anneal_cheaply(model, vocab, seed=0):
  """S at its target sparsity in 4 SGD steps (no real training); returns the finalized model."""
  annealed = dkp.prepare_for_annealing(model, begin_step=0, end_step=3, frequency=1)
  annealed.compile(keras.optimizers.SGD(1.0, clipnorm=5.0),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(seed)
  x = rng.integers(0, vocab, (8, 5), dtype=np.int32)  # 4 batches of 2 x 5 tokens
  y = rng.integers(0, vocab, (8, 5), dtype=np.int32)
  annealed.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
               callbacks=[dkp.SparsityAnnealing()])
  return dkp.finalize(annealed)


def lstm_accounting(model):
  """LSTM rows of `dkp.compression_report`: bytes as TFLite would store them vs dense float32."""
  report = dkp.compression_report(model)
  rows = report[report["type"].astype(str).str.endswith("LSTM")]
  return {
      "params": int(rows["params"].sum()),
      "dense_params": int(rows["dense_params"].sum()),
      "bytes": int(rows["bytes"].sum()),
      "dense_bytes": int(rows["dense_bytes"].sum()),
      "doping_density": [float(d) for d in rows["doping_density"]],
      "target_compression": [float(c) for c in rows["target_compression"]]
  }


def file_lstm_bytes(path, vocab):
  """Constant bytes of the file that belong to the LSTM layers.

  Every constant whose shape has a ``vocab``-sized dim is the embedding table
  or the output layer (LSTM weights never are, for vocab > 4 * units); the
  rest, each buffer counted once, is the LSTMs' (factors, sparse S with its
  indices, dense kernels, biases) plus a few bytes of shape constants.
  """
  info = describe.inspect_model(path)
  lstm = {t.buffer: t.buffer_bytes for t in info.constant_tensors if vocab not in t.shape}
  other = {t.buffer: t.buffer_bytes for t in info.constant_tensors if vocab in t.shape}
  return sum(lstm.values()), sum(other.values())


# --------------------------------------------------------------------------- timing


def time_convert(model, mode, config, directory, tag):
  """One `pipelines.conversion.convert` call: (wall seconds, report)."""
  out = os.path.join(directory, f"{tag}_{mode}.tflite")
  start = time.perf_counter()
  result = conversion.convert(model, out, mode=mode, seq_len=config["seq_len"],
                                    verify_samples=1, force=True)
  return time.perf_counter() - start, result.report


def warm_up(directory, log=print):
  """An untimed tiny conversion: the converter's one-time set-up would otherwise land on dkp."""
  start = time.perf_counter()
  model = build_model("dkp", 8, 1, 20, 1.0)
  for mode in MODES:
    conversion.convert(model, os.path.join(directory, f"warmup_{mode}.tflite"), mode=mode,
                             seq_len=3, verify_samples=1, force=True)
  seconds = time.perf_counter() - start
  log(f"  warm-up conversions in {seconds:.1f} s")
  return seconds


def run_benchmark(config, log=print):
  """Builds both models, converts each in both modes ``repeats`` times; returns the results."""
  models, accounting, build_s = {}, {}, {}
  for kind in MODELS:
    start = time.perf_counter()
    model = build_model(kind, config["units"], config["layers"], config["vocab"],
                        config["compression"], config["seed"])
    if kind == "dkp":
      model = anneal_cheaply(model, config["vocab"], config["seed"])
    models[kind], accounting[kind] = model, lstm_accounting(model)
    build_s[kind] = time.perf_counter() - start
    log(f"  built {kind:<5} in {build_s[kind]:5.1f} s: LSTM doping density "
        f"{accounting[kind]['doping_density']}")

  with tempfile.TemporaryDirectory(prefix="convert_time.") as directory:
    warmup_s = warm_up(directory, log) if config["warmup"] else None
    samples = {(kind, mode): [] for kind in MODELS for mode in MODES}
    reports, files = {}, {}
    for rep in range(config["repeats"]):  # interleaved: dkp seq, dkp step, dense seq, ...
      for kind in MODELS:
        for mode in MODES:
          seconds, report = time_convert(models[kind], mode, config, directory, kind)
          samples[(kind, mode)].append((report["convert_seconds"], seconds))
          reports[(kind, mode)] = report
          files[(kind, mode)] = file_lstm_bytes(report["output"], config["vocab"])
          log(f"  repeat {rep + 1}/{config['repeats']} {kind:<5} {mode:<8}: convert "
              f"{report['convert_seconds']:6.1f} s, whole call {seconds:6.1f} s, file "
              f"{report['bytes']['file'] / 2**20:7.2f} MiB")

  results = {}
  for kind in MODELS:
    for mode in MODES:
      times, report = samples[(kind, mode)], reports[(kind, mode)]
      lstm_file, other_file = files[(kind, mode)]
      dense_lstm = accounting[kind]["dense_bytes"]
      total_s = statistics.median(t for _, t in times)
      results[f"{kind}/{mode}"] = {
          "model": kind, "mode": mode,
          "convert_seconds": statistics.median(c for c, _ in times),
          "total_seconds": total_s,
          "samples_s": [{"convert": c, "total": t} for c, t in times],
          "meets_target": total_s <= TARGET_SECONDS,
          "file_bytes": report["bytes"]["file"],
          "lstm_file_bytes": lstm_file,
          "embedding_output_file_bytes": other_file,
          "dense_lstm_float32_bytes": dense_lstm,
          "lstm_file_compression": dense_lstm / lstm_file if lstm_file else None,
          "lstm_report_bytes": accounting[kind]["bytes"],
          "lstm_report_compression": dense_lstm / accounting[kind]["bytes"],
          "lstm_accounting": accounting[kind],
          "op_counts": report["op_counts"],
          "kernels": report["kernels"],
          "sparsity": report["sparsity"],
          "bytes": report["bytes"],
          "verification": {k: report["verification"][k] for k in ("samples", "max_error",
                                                                 "tolerance", "xnnpack")},
      }
  return {"build_seconds": build_s, "warmup_seconds": warmup_s, "conversions": results}


# --------------------------------------------------------------------------- output


def format_table(results, config):
  lines = [
      f"{'model/mode':<16}{'convert s':>10}{'total s':>9}{'file MiB':>10}{'LSTM KiB':>10}"
      f"{'dense LSTM KiB':>16}{'file x':>8}{'report x':>9}  fast S / block S  target"
  ]
  for name, entry in results["conversions"].items():
    sparsity = entry["sparsity"]
    lines.append(
        f"{name:<16}{entry['convert_seconds']:>10.1f}{entry['total_seconds']:>9.1f}"
        f"{entry['file_bytes'] / 2**20:>10.2f}{entry['lstm_file_bytes'] / 1024:>10,.0f}"
        f"{entry['dense_lstm_float32_bytes'] / 1024:>16,.0f}"
        f"{entry['lstm_file_compression']:>7.1f}x{entry['lstm_report_compression']:>8.1f}x"
        f"  {sparsity['fast_block_sparse']:>6} / {sparsity['block_kernels']:<7}"
        f"  {'met' if entry['meets_target'] else 'MISSED'}")
  return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.convert_time",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--units", type=int, help=f"LSTM units (default {DEFAULTS['units']})")
  parser.add_argument("--layers", type=int, help=f"LSTM layers (default {DEFAULTS['layers']})")
  parser.add_argument("--vocab", type=int, help=f"vocabulary (default {DEFAULTS['vocab']})")
  parser.add_argument("--compression", type=float,
                      help=f"DKP compression factor (default {DEFAULTS['compression']:g})")
  parser.add_argument("--seq-len", type=int,
                      help=f"sequence-mode length (default {DEFAULTS['seq_len']})")
  parser.add_argument("--repeats", type=int,
                      help=f"conversions per model and mode (default {DEFAULTS['repeats']})")
  parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                      help="an untimed tiny conversion first (default on; off with --quick)")
  parser.add_argument("--seed", type=int, help=f"seed (default {DEFAULTS['seed']})")
  parser.add_argument("--out-json", default=DEFAULT_OUT, help="JSON result path")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "vocab", "seq_len", "repeats"))
  if config["vocab"] <= 4 * config["units"]:
    # file_lstm_bytes tells the LSTM's constants from the others by the vocab dim.
    parser.error(f"--vocab must exceed 4 x --units ({4 * config['units']}) to tell the LSTM "
                 "weights in the file apart")
  config["quick"] = args.quick
  config["target_seconds"] = TARGET_SECONDS
  return config, args


def main(argv=None):
  config, args = parse_args(argv)
  print(f"convert_time benchmark: {config['layers']}x{config['units']} LSTM LM, vocab "
        f"{config['vocab']}, compression {config['compression']:g}, seq_len "
        f"{config['seq_len']}, {config['repeats']} conversion(s) per model and mode")
  host = common.announce_host()
  start = time.perf_counter()
  results = run_benchmark(config)
  data = common.result_record(
      "convert_time", config, host, start,
      timing={
          "method": "pipelines.conversion.convert(model, out, mode, verify_samples=1), "
                    "after an untimed warm-up conversion, interleaved across models and modes",
          "clock": "time.perf_counter",
          "statistic": "median over repeats; convert_seconds = lowering + TFLite conversion, "
                       "total_seconds = the whole call (with inspection and verification)",
          "target": f"dkp conversion <= {TARGET_SECONDS:g} s (whole call)"
      },
      **results)
  print(format_table(results, config))
  for mode in MODES:
    entry = results["conversions"][f"dkp/{mode}"]
    print(f"target (dkp {config['layers']}x{config['units']}, {mode} mode, <= "
          f"{TARGET_SECONDS:g} s): {entry['total_seconds']:.1f} s whole call "
          f"({entry['convert_seconds']:.1f} s lowering + conversion): "
          f"{'met' if entry['meets_target'] else 'MISSED'}")
  common.write_json_atomic(args.out_json, data)
  print(f"wrote {args.out_json}")
  return data


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
