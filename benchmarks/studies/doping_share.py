"""How much trained doped models lean on S: validation perplexity with and without S.

Co-matrix adaptation (the structure and S co-adapt while S is dense) shows as a
structure that is useless on its own once training is over; CMR is meant to keep
it working alone. For every run directory of `benchmarks.accuracy` whose model is
doped, this evaluates the validation perplexity as trained and with every S set to
zero (the structure alone), and reports per matrix the Frobenius norms of the
structure and of S and S's density.

```
python -m benchmarks.studies.doping_share --data ../shared/data/ptb --runs runs/accuracy/ptb-small \
       [--models dkp-25x-seed0-6ep,dkp-cmr-row-25x-seed0-6ep] [--out benchmarks/studies/results/doping_share.json]
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from benchmarks import common  # pylint: disable=wrong-import-position

DEFAULT_OUT = os.path.join("benchmarks", "studies", "results", "doping_share.json")


def matrix_norms(model):
  """Per doped matrix of ``model``: layer, matrix, ‖structure‖_F, ‖S‖_F, S's density."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from dkp_keras import traversal  # pylint: disable=import-outside-toplevel
  rows = []
  for owner in traversal.find_doped_owners(model):
    for key, matrix in owner.doped_matrices.items():
      doping = matrix.doping_values()
      structure = matrix.structure.dense_matrix(matrix.structure_values())
      rows.append({"layer": owner.name, "matrix": key,
                   "structure_norm": float(np.linalg.norm(structure)),
                   "doping_norm": float(np.linalg.norm(doping)),
                   "doping_density": float(np.mean(doping != 0))})
  return rows


def perplexity_without_doping(model, ids, batch_size, num_steps):
  """Perplexity of ``ids`` with every S of ``model`` zeroed; S is restored afterwards."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from dkp_keras import traversal  # pylint: disable=import-outside-toplevel
  from pipelines import training  # pylint: disable=import-outside-toplevel
  dopings = [doping for owner in traversal.find_doped_owners(model)
             for doping in owner.get_prunable_weights()]
  if not dopings:
    raise ValueError(f"model {model.name!r} has no doped layer (no S to remove)")
  saved = [variable.numpy() for variable in dopings]
  try:
    for variable, values in zip(dopings, saved):
      variable.assign(np.zeros_like(values))
    return training.evaluate_perplexity(model, ids, batch_size, num_steps)
  finally:
    for variable, values in zip(dopings, saved):
      variable.assign(values)


def run_settings(run_dir):
  """The settings a run directory's run.json records (preset, recipe, method, data, ...)."""
  with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as handle:
    return json.load(handle)["settings"]


def measure_run(run_dir, settings, data_dir=None, corpora=None):
  """The with / without S perplexities and the norms of one run directory's model.

  The corpus is ``data_dir``, else the one the run trained on (``settings["data"]``);
  ``corpora`` caches corpora across runs.
  """
  import dkp_keras as dkp  # pylint: disable=import-outside-toplevel
  from pipelines import presets, training  # pylint: disable=import-outside-toplevel
  recipe = presets.Recipe(**settings["recipe"])
  data_dir = data_dir or (None if settings["data"] == "embedded" else settings["data"])
  corpora = {} if corpora is None else corpora
  key = data_dir or ("embedded", recipe.corpus_tokens)
  if key not in corpora:
    corpora[key] = training.load_corpus(data_dir, recipe)
  corpus = corpora[key]
  model = dkp.load_model(os.path.join(run_dir, "model.keras"))
  valid = training.evaluate_perplexity(model, corpus.valid, recipe.batch_size, recipe.num_steps)
  without = perplexity_without_doping(model, corpus.valid, recipe.batch_size, recipe.num_steps)
  return {"run": os.path.basename(os.path.normpath(run_dir)), "method": settings["method"],
          "compression": settings["compression"], "seed": settings["seed"],
          "valid_ppl": valid, "valid_ppl_without_doping": without,
          "matrices": matrix_norms(model)}


def doped_runs(runs_dir, names=None):
  """(run directory, its settings) for each run under ``runs_dir`` (or those ``names``)
  with a finished doped model."""
  from benchmarks import recipes  # pylint: disable=import-outside-toplevel
  if not os.path.isdir(runs_dir):
    raise ValueError(f"{runs_dir}: no such runs directory")
  chosen = []
  for name in names or sorted(os.listdir(runs_dir)):
    run_dir = os.path.join(runs_dir, name)
    finished = os.path.isfile(os.path.join(run_dir, "model.keras"))
    if names and not finished:
      raise ValueError(f"{run_dir}: no finished model (model.keras) there")
    if not finished:
      continue
    settings = run_settings(run_dir)
    method = recipes.get_method(settings["method"])  # a product method or a named recipe
    if method.doped:
      chosen.append((run_dir, settings))
    elif names:
      raise ValueError(f"{run_dir}: method {method.name!r} is not doped (no S to remove)")
  if not chosen:
    raise ValueError(f"no finished doped runs under {runs_dir}")
  return chosen


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.doping_share",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--data", help="PTB directory (default: the corpus each run trained on)")
  parser.add_argument("--runs", required=True, help="run directories of benchmarks.accuracy")
  parser.add_argument("--models", help="comma-separated run names (default: every doped run)")
  parser.add_argument("--out", default=DEFAULT_OUT)
  args = parser.parse_args(argv)
  try:
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    corpora = {}
    rows = [measure_run(run_dir, settings, args.data, corpora)
            for run_dir, settings in doped_runs(args.runs, names)]
  except (ValueError, OSError, KeyError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  common.write_json_atomic(args.out, {
      "benchmark": "doping_share", "data": common.project_path(args.data),
      "runs": common.project_path(args.runs),
      "commit": common.git_commit(), "host": common.host_info(), "results": rows,
      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  for row in rows:
    print(f"{row['run']:>32}  valid {row['valid_ppl']:8.2f}  without S "
          f"{row['valid_ppl_without_doping']:9.2f}")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
