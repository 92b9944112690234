"""Does plain SGD train the structured methods? A short probe, with and without scaling.

Zaremba et al.'s SGD (rate 1.0 and clip 5 on the loss summed over the time
steps, no decay, no dropout) for a fraction of one epoch on the preset's model
shape, every method of ``--methods`` trained twice where it has factors: with
plain gradients and with scaled factor gradients (``precondition_factors``,
`dkp_keras.preconditioning`). Reported per run: the validation perplexity on
the first ``--valid-tokens`` of the validation set, the training perplexity, the
seconds, for every seed of ``--seeds`` (early SGD at this rate is chaotic: a
training set a few tokens shorter moves the results), and per variant the median, min and max over the seeds. The dense model is the
yardstick of the same run. A probe, not a result: it tells which methods an SGD
recipe (``ptb-medium``) can train at all.

    python -m benchmarks.studies.sgd_probe --data ../shared/data/ptb      # ~15 min on 2 CPUs
    python -m benchmarks.studies.sgd_probe --quick                        # embedded corpus, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

from benchmarks import common
from pipelines import models
from pipelines import training

DEFAULTS = {"preset": "ptb-small", "fraction": 1 / 3, "valid_tokens": 20_000,
            "methods": "dense,kp,lmf,dkp", "compression": 25.0, "seeds": "0,1,2"}
QUICK = {"preset": "demo", "fraction": 0.05, "valid_tokens": 2_000, "methods": "dense,kp",
         "seeds": "0"}
DEFAULT_OUT = os.path.join("benchmarks", "studies", "results", "sgd_probe.json")


def probe_recipe(preset):
  """The preset's model shape trained with Zaremba et al.'s plain SGD for one epoch."""
  from pipelines import presets  # pylint: disable=import-outside-toplevel
  return presets.get_preset(preset).replace(
      optimizer="sgd", learning_rate=1.0, lr_decay=1.0, sum_over_steps=True, clip_norm=5.0,
      dropout=0.0, epochs=1)


def variants(method_names):
  """(method, precondition) pairs: factored methods both ways, the others once."""
  out = []
  for name in method_names:
    method = models.get_method(name)
    out.append((method, False))
    if method.structure is not None:
      out.append((method, True))
  return out


def _seeds(text):
  try:
    seeds = [int(s) for s in str(text).split(",") if s.strip()]
  except ValueError:
    seeds = []
  if not seeds:
    raise ValueError(f"--seeds must be comma-separated integers, got {text!r}")
  return seeds


def run_probe(config, data_dir=None, log=print):
  """Rows per (variant, seed) and a summary per variant, both lists of dicts."""
  seeds = _seeds(config["seeds"])
  corpus = training.load_corpus(data_dir, probe_recipe(config["preset"]), seed=seeds[0])
  corpus = dataclasses.replace(
      corpus, train=corpus.train[:int(len(corpus.train) * config["fraction"])],
      valid=corpus.valid[:config["valid_tokens"]])
  rows, summary = [], []
  for method, precondition in variants(config["methods"].split(",")):
    recipe = method.adapt(probe_recipe(config["preset"]).replace(
        precondition_factors=precondition))
    name = f"{method.name} {'scaled' if precondition else 'plain'}"
    for seed in seeds:
      start = time.perf_counter()
      result = training.fit_lm(corpus, recipe, method, config["compression"], seed=seed, verbose=0)
      rows.append({"method": method.name, "precondition_factors": precondition, "seed": seed,
                   "valid_ppl": result["valid_perplexity"],
                   "train_ppl": result["history"]["perplexity"][-1],
                   "seconds": round(time.perf_counter() - start, 1)})
      log(f"{name:>12} seed {seed}  valid {rows[-1]['valid_ppl']:9.1f}  train "
          f"{rows[-1]['train_ppl']:9.1f}  {rows[-1]['seconds']:6.0f} s")
    valid = [r["valid_ppl"] for r in rows[-len(seeds):]]
    summary.append({"method": method.name, "precondition_factors": precondition,
                    "valid_ppl_median": statistics.median(valid), "valid_ppl_min": min(valid),
                    "valid_ppl_max": max(valid)})
  dense = next((s["valid_ppl_median"] for s in summary if s["method"] == "dense"), None)
  for entry in summary:
    entry["median_vs_dense"] = entry["valid_ppl_median"] / dense if dense else None
  return rows, summary


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.sgd_probe",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--data", help="PTB directory (default: the embedded corpus)")
  parser.add_argument("--preset", help=f"model shape (default {DEFAULTS['preset']})")
  parser.add_argument("--fraction", type=float, help="share of one training epoch")
  parser.add_argument("--valid-tokens", type=int, dest="valid_tokens")
  parser.add_argument("--methods", help=f"default {DEFAULTS['methods']}")
  parser.add_argument("--compression", type=float)
  parser.add_argument("--seeds", help=f"comma-separated (default {DEFAULTS['seeds']})")
  parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result path")
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK, positive=("valid_tokens",))
  if not 0.0 < config["fraction"] <= 1.0:
    parser.error(f"--fraction must be in (0, 1], got {config['fraction']}")
  try:
    rows, summary = run_probe(config, args.data)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  data = {"benchmark": "sgd_probe", "config": config, "data": common.project_path(args.data),
          "commit": common.git_commit(),
          "recipe": probe_recipe(config["preset"]).to_dict(), "host": common.host_info(),
          "results": rows, "summary": summary, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  common.write_json_atomic(args.out, data)
  for entry in summary:
    print(f"{entry['method']:>10} {'scaled' if entry['precondition_factors'] else 'plain':>6}  "
          f"valid median {entry['valid_ppl_median']:9.1f} (min {entry['valid_ppl_min']:.1f}, "
          f"max {entry['valid_ppl_max']:.1f})")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
