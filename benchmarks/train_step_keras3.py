"""Training-step time of the LM on Keras 3, each backend, against the tf_keras dense LSTM.

The PTB-medium-shaped LM (2 x LSTM(650), vocab 10000, batch 20 x 35 steps, SGD
with clipnorm 5), built by the product's builder (`pipelines.models.build_lm`)
for every entry, so every entry is the same model:

- ``tf_keras:dense`` (the baseline) and ``tf_keras:dkp`` (DKP LSTMs at
  ``--compression``) in this process;
- ``<backend>:dense`` and ``<backend>:dkp`` on Keras 3 for each backend of
  ``--backends`` that is installed, each in its own worker process
  (`benchmarks.keras3_step_worker`, ``KERAS_BACKEND`` set, TF_USE_LEGACY_KERAS
  unset): a process holds one Keras 3 backend.

Every entry is built and traced first (untimed), then ``--warmup`` untimed
blocks, then ``--repeats`` blocks of ``--block`` `train_on_batch` steps,
interleaved across the entries (this process and the workers take turns, one
at a time), so drifts of a shared host hit all alike. Medians per step and
ratios to ``tf_keras:dense``'s median from the same run are reported, with the
fastest Keras 3 DKP backend against the issue's goal (at most 1.5x).

    python -m benchmarks.train_step_keras3            # a few minutes on 2 CPUs
    python -m benchmarks.train_step_keras3 --quick    # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from benchmarks import keras3_step_worker as worker
from pipelines import frontends

BACKENDS = ("tensorflow", "jax", "torch")
METHODS = ("dense", "dkp")
BASELINE = "tf_keras:dense"
GOAL = 1.5  # the goal for the fastest Keras 3 backend's DKP step / tf_keras dense
DEFAULTS = {"units": 650, "layers": 2, "vocab": 10_000, "batch": 20, "steps": 35,
            "compression": 25.0, "repeats": 5, "warmup": 1, "block": 2, "lr": 1.0,
            "clipnorm": 5.0, "seed": 0}
QUICK = {"units": 32, "vocab": 200, "steps": 6, "batch": 4, "repeats": 2, "warmup": 1,
         "block": 1, "compression": 4.0}
DEFAULT_OUT = os.path.join("benchmarks", "results", "train_step_keras3.json")


class InProcess:
  """A tf_keras entry timed in this process."""

  def __init__(self, method, config):
    self.model = worker.build(frontends.get_frontend("2"), method, config)
    self.x, self.y = worker.batch(config)
    self.model.train_on_batch(self.x, self.y)  # traces the train function
    self.info = {"backend": "tensorflow (tf_keras)",
                 "trainable_params": worker.trainable_params(self.model)}

  def time(self, steps):
    return worker.time_block(self.model, self.x, self.y, steps)

  def close(self):
    pass


class Worker:
  """A Keras 3 entry in its own process (`benchmarks.keras3_step_worker`)."""

  def __init__(self, backend, method, config):
    environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environment.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=common.PROJECT_ROOT)
    self.name = f"{backend}:{method}"
    self.errors = tempfile.TemporaryFile(mode="w+")
    self.process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.keras3_step_worker", method, json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
        env=environment, cwd=common.PROJECT_ROOT)
    self.info = None

  def _answer(self, marker):
    for line in self.process.stdout:
      if line.startswith(marker + " "):
        return line[len(marker) + 1:].strip()
    self.errors.seek(0)
    raise RuntimeError(f"worker {self.name} ended without {marker}: "
                       f"{self.errors.read()[-2000:]}")

  def ready(self):
    self.info = json.loads(self._answer(worker.READY))
    return self

  def time(self, steps):
    self.process.stdin.write(f"{steps}\n")
    self.process.stdin.flush()
    return float(self._answer(worker.SECONDS))

  def close(self):
    if self.process.poll() is None:
      self.process.stdin.write("\n")
      self.process.stdin.flush()
      self.process.wait(timeout=60)
    self.errors.close()


def available_backends(backends):
  """(installed backends, {missing backend: why}) of ``backends``."""
  installed, missing = [], {}
  for backend in backends:
    if importlib.util.find_spec(backend) is None:
      missing[backend] = "not installed"
    else:
      installed.append(backend)
  return installed, missing


def run_benchmark(config, backends, log=print):
  """Builds every entry, times interleaved blocks; returns (entries, missing backends)."""
  installed, missing = available_backends(backends)
  # Workers start (and build, in parallel with this process) first; none is timed yet.
  workers = [Worker(backend, method, config) for backend in installed for method in METHODS]
  entries = {}
  try:
    for method in METHODS:
      start = time.perf_counter()
      entries[f"tf_keras:{method}"] = InProcess(method, config)
      log(f"  built + traced tf_keras:{method} in {time.perf_counter() - start:6.1f} s")
    for entry in workers:
      entries[entry.name] = entry.ready()
      log(f"  ready {entry.name} ({entry.info['backend']}, jit_compile "
          f"{entry.info.get('jit_compile')})")
    for _ in range(config["warmup"]):
      for entry in entries.values():
        entry.time(config["block"])
    samples = {name: [] for name in entries}
    for rep in range(config["repeats"]):
      for name, entry in entries.items():
        samples[name].append(entry.time(config["block"]) / config["block"])
      log(f"  repeat {rep + 1}/{config['repeats']}: " + "  ".join(
          f"{name} {samples[name][-1] * 1e3:.0f} ms" for name in entries))
  finally:
    for entry in entries.values():
      entry.close()
    for entry in workers:
      if entry.name not in entries:
        entry.process.kill()
        entry.close()
  base = statistics.median(samples[BASELINE])
  results = {}
  for name, times in samples.items():
    median = statistics.median(times)
    results[name] = {
        "front": "tf_keras" if name.startswith("tf_keras:") else "keras3",
        "method": name.split(":")[1], **entries[name].info,
        "median_s": median, "min_s": min(times), "samples_s": times,
        "ratio_to_dense": median / base,
        # Per repetition, against the tf_keras dense block timed in the same round.
        "median_paired_ratio": statistics.median(
            t / d for t, d in zip(times, samples[BASELINE]))}
  return results, missing


def _version(package):
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def fastest_keras3_dkp(results):
  """The Keras 3 DKP entry with the lowest median, or None."""
  dkp = {name: r for name, r in results.items() if r["front"] == "keras3" and
         r["method"] == "dkp"}
  return min(dkp, key=lambda name: dkp[name]["median_s"]) if dkp else None


def format_table(results):
  lines = [f"{'entry':<18}{'median ms':>11}{'min ms':>10}{'/ tf_keras dense':>18}{'paired':>9}"]
  for name, entry in results.items():
    lines.append(f"{name:<18}{entry['median_s'] * 1e3:>11.1f}{entry['min_s'] * 1e3:>10.1f}"
                 f"{entry['ratio_to_dense']:>17.2f}x{entry['median_paired_ratio']:>8.2f}x")
  return "\n".join(lines)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step_keras3",
                                   description=__doc__.split("\n\n")[0])
  for key in ("units", "layers", "vocab", "batch", "steps", "repeats", "warmup", "block",
              "seed"):
    parser.add_argument(f"--{key}", type=int, help=f"(default {DEFAULTS[key]})")
  parser.add_argument("--compression", type=float,
                      help=f"DKP compression factor (default {DEFAULTS['compression']:g})")
  parser.add_argument("--backends", default=",".join(BACKENDS),
                      type=common.comma_list(str, BACKENDS, "backends"),
                      help="Keras 3 backends to time, those installed (default: %(default)s)")
  parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result path")
  common.add_quick_flag(parser, QUICK)
  return parser


def parse_args(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK,
                                 positive=("units", "layers", "vocab", "batch", "steps",
                                           "repeats", "block"))
  if config["warmup"] < 0:
    parser.error("--warmup must be >= 0")
  backends = args.backends
  config["quick"] = args.quick
  return config, backends, args.out


def main(argv=None):
  config, backends, out = parse_args(argv)
  print(f"train_step_keras3: {config['layers']}x{config['units']} LSTM, vocab {config['vocab']}, "
        f"batch {config['batch']} x {config['steps']} steps, DKP at {config['compression']:g}x, "
        f"{config['repeats']} x {config['block']} steps per entry; backends {','.join(backends)}")
  host = common.announce_host(**{name: _version(name) for name in ("keras", *backends)
                                  if name != "tensorflow"})
  start = time.perf_counter()
  results, missing = run_benchmark(config, backends)
  fastest = fastest_keras3_dkp(results)
  data = {"benchmark": "train_step_keras3", "config": config, "host": host,
          "timing": {"method": "train_on_batch blocks, interleaved across entries and processes",
                     "clock": "time.perf_counter", "statistic": "median step time",
                     "baseline": BASELINE, "order": list(results)},
          "entries": results, "missing_backends": missing,
          "fastest_keras3_dkp": fastest, "goal_ratio": GOAL,
          "meets_goal": None if fastest is None else results[fastest]["ratio_to_dense"] <= GOAL,
          "wall_s": time.perf_counter() - start, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "commit": common.git_commit()}
  print(format_table(results))
  for backend, why in missing.items():
    print(f"  {backend}: {why}")
  common.write_json_atomic(out, data)
  print(f"wrote {out}")
  return data


if __name__ == "__main__":
  main()
