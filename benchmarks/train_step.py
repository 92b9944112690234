"""Training-step time of the DKP language model against its dense twin.

The Zaremba-medium PTB model (Embedding -> 2 x LSTM(650) -> Dense(10000), batch
20, 35 steps, SGD with clipnorm 5) is built as five models with the same
hyper-parameters and seed:

- ``dense``: Keras LSTM layers and a Dense output (the baseline);
- ``dkp``: the LSTM layers replaced by `dkp.DKPLSTM` (output still a plain
  Dense, so the ratio isolates the LSTM layers);
- ``dkp_all``: as ``dkp`` with a `dkp.DopedDense` output layer too;
- ``dkp_annealing``: ``dkp`` wrapped by `dkp.prepare_for_annealing`, as it
  trains in practice (tfmot adds the mask ops to every step);
- ``dkp_preconditioned``: ``dkp`` with ``precondition_factors=True`` (scaled
  factor gradients, what the SGD recipe ``ptb-medium`` trains with).

Every model is timed the same way: blocks of ``--block`` `train_on_batch`
calls on one fixed (batch, steps) batch of random token ids. After an untimed
warm-up (tracing), the blocks are interleaved across the models
(dense, dkp, dkp_all, dkp_annealing, dense, ...) so that drifts of the host
hit all models alike, and the per-step median of each model is compared with
dense's median from the same run.

    python -m benchmarks.train_step                 # full size (minutes on 2 CPUs)
    python -m benchmarks.train_step --quick         # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

import dkp_keras as dkp  # sets TF_USE_LEGACY_KERAS before TensorFlow is imported

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order
import tf_keras as keras  # noqa: E402  pylint: disable=wrong-import-order

from benchmarks import common  # noqa: E402
# The batch, timing loop and parameter count the Keras 3 benchmark uses (imports no Keras).
from benchmarks import keras3_step_worker as step_worker  # noqa: E402

MODELS = ("dense", "dkp", "dkp_all", "dkp_annealing", "dkp_preconditioned")

DEFAULTS = {
    "units": 650,
    "layers": 2,
    "vocab": 10_000,
    "batch": 20,
    "steps": 35,
    "compression": 25.0,
    "repeats": 7,
    "warmup": 2,
    "block": 5,
    "lr": 1.0,
    "clipnorm": 5.0,
    "seed": 0
}
QUICK = {"units": 64, "vocab": 500, "steps": 10, "repeats": 3, "warmup": 2, "block": 2}
DEFAULT_OUT = os.path.join("benchmarks", "results", "train_step.json")

# --------------------------------------------------------------------------- models


def build_model(kind, units, layers, vocab, steps, compression, seed=0):
  """One of `MODELS`, built and compiled (SGD, clipnorm, sparse CE from logits)."""
  if kind not in MODELS:
    raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
  keras.utils.set_random_seed(seed)
  tokens = keras.Input((steps,), dtype="int32", name="tokens")
  x = keras.layers.Embedding(vocab, units, name="embedding")(tokens)
  for i in range(layers):
    if kind == "dense":
      x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
    else:
      x = dkp.DKPLSTM(units, compression=compression, return_sequences=True, name=f"lstm_{i}",
                      precondition_factors=kind == "dkp_preconditioned")(x)
  if kind == "dkp_all":
    logits = dkp.DopedDense(vocab, compression=compression, name="output")(x)
  else:
    logits = keras.layers.Dense(vocab, name="output")(x)
  model = keras.Model(tokens, logits, name=kind)
  if kind == "dkp_annealing":
    model = dkp.prepare_for_annealing(model, begin_step=0, end_step=10_000, frequency=100)
  return model


def compile_model(model, lr, clipnorm):
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, clipnorm=clipnorm),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def step_hooks(kind, model):
  """Callbacks to drive around `train_on_batch` (what `fit` would call).

  The annealing model needs `dkp.SparsityAnnealing`: its ``on_train_begin``
  sets the tfmot wrappers' ``pruning_step`` from -1 to 0; the wrappers then
  advance it themselves on every training call and update the masks every
  ``frequency`` steps, as they do under `fit`.
  """
  if kind != "dkp_annealing":
    return []
  callback = dkp.SparsityAnnealing()
  callback.set_model(model)
  return [callback]


def lstm_report(model):
  """Params / compression of the model's LSTM layers (`dkp.compression_report`).

  ``params`` counts the nonzeros of S as they are now (S is dense until it is
  annealed); ``planned_params`` / ``planned_compression`` are what the layer
  reaches once S is at its target sparsity.
  """
  report = dkp.compression_report(model)
  rows = []
  layers = {layer.name: layer for layer in dkp_layers(model)}
  for row in report.to_dict("records"):
    if not str(row["type"]).endswith("LSTM") and row["layer"] != "total":
      continue
    entry = {
        "layer": row["layer"],
        "type": row["type"],
        "params": int(row["params"]),
        "dense_params": int(row["dense_params"]),
        "compression": _float(row["compression"]),
        "target_compression": _float(row["target_compression"])
    }
    owner = layers.get(row["layer"])
    if owner is not None:
      planned = planned_params(owner)
      entry["planned_params"] = planned
      entry["planned_compression"] = entry["dense_params"] / planned
    rows.append(entry)
  return rows


def dkp_layers(model):
  """Unwrapped layers of ``model`` (tfmot wrappers opened), by their own names."""
  out = []
  for layer in model.layers:
    out.append(
        getattr(layer, "layer", layer) if type(layer).__name__ == "PruneLowMagnitude" else layer)
  return out


def planned_params(layer):
  """Parameters of a (DKP) layer once S is annealed: structures + kept S + bias."""
  owner = getattr(layer, "cell", layer)
  matrices = getattr(owner, "doped_matrices", None)
  if matrices is None:
    return int(sum(int(np.prod(w.shape)) for w in layer.weights))
  bias = 0 if getattr(owner, "bias", None) is None else int(np.prod(owner.bias.shape))
  return int(sum(m.plan.params for m in matrices.values()) + bias)


def _float(value):
  value = float(value)
  return None if math.isnan(value) else value


# --------------------------------------------------------------------------- timing


def run_benchmark(config, models=MODELS, log=print):
  """Builds, warms up and times ``models``; returns the result dict (no I/O)."""
  x, y = step_worker.batch(config)
  built = {}
  for kind in models:
    start = time.perf_counter()
    model = compile_model(
        build_model(kind, config["units"], config["layers"], config["vocab"], config["steps"],
                    config["compression"], config["seed"]), config["lr"], config["clipnorm"])
    hooks = step_hooks(kind, model)
    for hook in hooks:
      hook.on_train_begin()
    model.train_on_batch(x, y)  # traces the train function
    built[kind] = model
    log(f"  built + traced {kind:<14} in {time.perf_counter() - start:6.1f} s")
  # Untimed interleaved steps once every model exists: the first step of a model
  # after others were built is still slow (seen at small sizes).
  for _ in range(config["warmup"]):
    for kind in models:
      built[kind].train_on_batch(x, y)

  samples = {kind: [] for kind in models}
  for rep in range(config["repeats"]):
    for kind in models:
      seconds = step_worker.time_block(built[kind], x, y, config["block"])
      samples[kind].append(seconds / config["block"])
    log(f"  repeat {rep + 1}/{config['repeats']}: " +
        "  ".join(f"{kind} {samples[kind][-1] * 1e3:.1f} ms" for kind in models))

  results = {}
  base = statistics.median(samples["dense"]) if "dense" in samples else None
  for kind in models:
    times = samples[kind]
    median = statistics.median(times)
    entry = {
        "median_s": median,
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "samples_s": times,
        "trainable_params": step_worker.trainable_params(built[kind])
    }
    if base:
      entry["ratio_to_dense"] = median / base
      entry["ratio_of_mins"] = min(times) / min(samples["dense"])
      # Per-repetition ratios (each against the dense block timed just before).
      entry["median_paired_ratio"] = statistics.median(
          t / d for t, d in zip(times, samples["dense"]))
    entry["lstm_layers"] = lstm_report(built[kind])
    results[kind] = entry
  return results


# --------------------------------------------------------------------------- host / output


def format_table(results):
  lines = [
      f"{'model':<15}{'median ms':>11}{'min ms':>10}{'/dense':>9}{'paired':>9}"
      f"{'min/min':>9}{'LSTM params':>13}{'planned x':>11}"
  ]
  for kind, entry in results.items():
    lstm = [r for r in entry["lstm_layers"] if r["layer"] != "total"]
    params = sum(r["planned_params"] for r in lstm)
    dense = sum(r["dense_params"] for r in lstm)
    ratio = entry.get("ratio_to_dense", float("nan"))
    paired = entry.get("median_paired_ratio", float("nan"))
    of_mins = entry.get("ratio_of_mins", float("nan"))
    lines.append(f"{kind:<15}{entry['median_s'] * 1e3:>11.1f}{entry['min_s'] * 1e3:>10.1f}"
                 f"{ratio:>8.2f}x{paired:>8.2f}x{of_mins:>8.2f}x{params:>13,}"
                 f"{dense / params:>10.1f}x")
  return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--units", type=int, help=f"LSTM units (default {DEFAULTS['units']})")
  parser.add_argument("--layers", type=int, help=f"LSTM layers (default {DEFAULTS['layers']})")
  parser.add_argument("--vocab", type=int, help=f"vocabulary (default {DEFAULTS['vocab']})")
  parser.add_argument("--batch", type=int, help=f"batch size (default {DEFAULTS['batch']})")
  parser.add_argument("--steps", type=int, help=f"time steps (default {DEFAULTS['steps']})")
  parser.add_argument("--compression",
                      type=float,
                      help=f"DKP compression factor (default {DEFAULTS['compression']:g})")
  parser.add_argument("--repeats",
                      type=int,
                      help=f"timed blocks per model (default {DEFAULTS['repeats']})")
  parser.add_argument("--warmup",
                      type=int,
                      help="untimed interleaved steps per model after tracing "
                      f"(default {DEFAULTS['warmup']})")
  parser.add_argument("--block",
                      type=int,
                      help=f"train steps per timed block (default {DEFAULTS['block']})")
  parser.add_argument("--seed", type=int, help=f"seed (default {DEFAULTS['seed']})")
  parser.add_argument("--threads",
                      type=int,
                      default=None,
                      help="TF intra-op threads (inter-op 1 when given); default: TF's choice")
  parser.add_argument("--models",
                      default=",".join(MODELS),
                      type=common.comma_list(str, MODELS, "models"),
                      help="comma-separated subset of " + ",".join(MODELS))
  parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result path")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "vocab", "batch", "steps", "repeats", "block"))
  if config["warmup"] < 0:
    parser.error("--warmup must be >= 0")
  models = args.models
  config["quick"] = args.quick
  config["method"] = "train_on_batch"
  return config, args, models


def set_threads(threads):
  """Sets TF's thread pools; returns a note when TF was already initialised."""
  if threads is None:
    return None
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError as error:  # the runtime is already up (e.g. under pytest)
    return f"--threads {threads} not applied: {error}"
  return None


def main(argv=None):
  config, args, models = parse_args(argv)
  note = set_threads(args.threads)
  config["threads"] = args.threads
  if note:
    print(note, file=sys.stderr)
  print(f"train_step benchmark: {config['layers']}x{config['units']} LSTM, vocab "
        f"{config['vocab']}, batch {config['batch']}, {config['steps']} steps, compression "
        f"{config['compression']:g}, {config['repeats']} x {config['block']} steps per model")
  host = common.announce_host()
  start = time.perf_counter()
  results = run_benchmark(config, models)
  data = common.result_record(
      "train_step", config, host, start,
      timing={
          "method": "train_on_batch blocks, interleaved across models",
          "clock": "time.perf_counter",
          "statistic": "median step time",
          "order": list(models)
      },
      models=results)
  print(format_table(results))
  common.write_json_atomic(args.out, data)
  print(f"wrote {args.out}")
  return data


if __name__ == "__main__":
  main()
