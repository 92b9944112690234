"""Accuracy at equal compression on PTB: every method, one CSV row per run.

``python -m benchmarks.accuracy --data ../shared/data/ptb --preset ptb-small
--methods dense,small-dense,prune,int8,lmf,doped-lmf,hmd,doped-hmd,kp,dkp-nocmr,dkp
--compressions 10,25,50 --out benchmarks/results/ptb_small.csv [--resume] [--seeds 0]``
(``--corpus python-docs`` instead of ``--data``: a packaged corpus, `pipelines.corpora`).
``--methods`` takes the product methods (`pipelines.models.METHODS`) and the
named variants of `benchmarks.recipes`. ``--keras 3`` trains them on Keras 3
(backend from ``KERAS_BACKEND``): those rows record it in ``frontend`` and the
table sets them against the tf_keras rows of the same method.

Each (method, compression, seed) trains with `pipelines.train` (same recipe
and budget for all) in its own run directory under ``--runs`` (so a killed
run resumes from its last epoch), and appends a row with ``method``,
``compression`` (asked), ``lstm_compression`` (measured on the LSTM layers by
`compression_report`, against the same dense stack for every method),
``seed``, ``valid_ppl``, ``test_ppl``, ``params``, ``model_bytes``,
``epochs``, ``preset``, ``recipe`` (`recipe_id`: a fingerprint of the preset's
recipe at that budget), ``commit`` and ``wall_s``. ``dense`` runs once (1x)
and ``int8`` / ``int4`` once at their own factor (4x / 8x by bytes), by
quantizing the dense row's trained model when it is there. ``--resume`` skips rows
already in the CSV; it refuses a CSV whose rows of the same preset and budget
were trained with another recipe (the preset changed since), so old and new
rows never share a table. After every row the CSV is rendered to a Markdown table
beside it (``<out>.md``, the papers' numbers beside ours) and a Pareto plot
(``<out>.png``, test perplexity against compression).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time

import pandas as pd

from benchmarks import common
from benchmarks import markdown
from benchmarks import recipes
from pipelines import choices
from pipelines import corpora
from pipelines import figures
from pipelines import frontends
from pipelines import models
from pipelines import presets
from pipelines import training
from tflite_ops import files

COLUMNS = ["method", "compression", "seed", "valid_ppl", "test_ppl", "params", "model_bytes",
           "lstm_compression", "epochs", "preset", "recipe", "commit", "wall_s",
           "tflite_ppl", "tflite_int8_ppl", "corpus", "frontend"]
# Measured on rows written since: the test perplexity of the step-mode .tflite (float32,
# dynamic-int8) run through LiteRT. Earlier rows leave them empty.
DEPLOYED_COLUMNS = {"tflite_ppl": "float32", "tflite_int8_ppl": "dynamic-int8"}
# The Keras a row trained with: tf_keras, or Keras 3 and its backend (``keras3-jax``).
TF_KERAS = "tf_keras"
# Rows written before the recipe was recorded; they are taken as the current recipe's.
UNRECORDED = "unrecorded"
# Test perplexity of the 2x650 PTB LSTM in the doping papers: method ->
# (compression, perplexity); 4-bit quantization is their 8x point, the rest 25x.
PAPER = {"dense": (1, 82.04), "dkp": (25, 83.24), "prune": (25, 85.14), "hmd": (25, 105.43),
         "lmf": (25, 114.29), "int4": (8, 83.84)}


# Recipe fields added after rows were recorded -> the value those rows had. Left out
# of the fingerprint while they hold it, so recorded rows keep theirs (and resume):
# a field added to `presets.Recipe` goes here with the value that keeps the old behaviour.
FIELDS_ADDED_LATER = {"precondition_factors": False, "block_switch": None,
                      "block_pooling": "AVG"}


def recipe_id(recipe):
  """A short fingerprint of a recipe: rows with different ones are different experiments."""
  fields = {name: value for name, value in recipe.to_dict().items()
            if name not in FIELDS_ADDED_LATER or value != FIELDS_ADDED_LATER[name]}
  text = json.dumps(fields, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def plan_rows(methods, compressions, seeds):
  """(method, compression, seed) to run: dense at 1x, int8/int4 at their factor, others at each."""
  rows = []
  for method in methods:
    fixed = recipes.get_method(method).fixed_compression
    factors = [fixed] if fixed else compressions
    for compression in factors:
      for seed in seeds:
        rows.append((method, float(compression), int(seed)))
  return rows


def read_results(path):
  if not os.path.exists(path):
    return pd.DataFrame(columns=COLUMNS)
  try:
    frame = pd.read_csv(path, dtype={"recipe": str, "commit": str})
  except (ValueError, pd.errors.ParserError) as error:
    raise ValueError(f"{path} is not a results CSV: {error}") from error
  if "recipe" not in frame.columns:  # column order does not matter: rows are written by COLUMNS
    frame["recipe"] = UNRECORDED
  for column in DEPLOYED_COLUMNS:
    if column not in frame.columns:
      frame[column] = float("nan")
  if "corpus" not in frame.columns:  # rows from before it was recorded were all on PTB
    frame["corpus"] = "ptb"
  # Rows from before Keras 3 training were all tf_keras.
  frame["frontend"] = frame["frontend"].fillna(TF_KERAS) if "frontend" in frame else TF_KERAS
  missing = [c for c in COLUMNS if c not in frame.columns]
  if missing:
    raise ValueError(f"{path} lacks the columns {missing}; not an accuracy results file")
  return frame


def _done(frame, method, compression, seed, preset, epochs, corpus, frontend):
  if frame.empty:
    return False
  match = ((frame["method"] == method) & (frame["compression"] == compression) &
           (frame["seed"] == seed) & (frame["preset"] == preset) & (frame["epochs"] == epochs) &
           (frame["corpus"] == corpus) & (frame["frontend"] == frontend))
  return bool(match.any())


def check_recipe(frame, path, preset, epochs, recipe):
  """Refuses to add rows beside rows of the same preset and budget from another recipe."""
  same_budget = frame[(frame["preset"] == preset) & (frame["epochs"] == epochs)]
  others = sorted(set(same_budget["recipe"].astype(str)) - {recipe, UNRECORDED})
  if others:
    raise ValueError(f"{path} holds {preset} rows at {epochs} epochs trained with another recipe "
                     f"({', '.join(others)}; the preset is now {recipe}): the preset changed "
                     f"since; write to a new --out")


def _run_dir(runs_dir, method, compression, seed, epochs, frontend=TF_KERAS):
  suffix = "" if frontend == TF_KERAS else f"-{frontend}"
  return os.path.join(runs_dir, f"{method}-{compression:g}x-seed{seed}-{epochs}ep{suffix}")


def frontend_name(keras):
  """The ``frontend`` column of rows trained with ``--keras`` ``keras`` ("2" or "3")."""
  if keras == "2":
    return TF_KERAS
  return "keras3-" + os.environ.get("KERAS_BACKEND", "tensorflow")


def run(out, methods, compressions, data_dir=None, preset="ptb-small", seeds=(0,),
        resume=False, epochs=None, runs_dir=None, verbose=1, corpus_name=None, keras="2"):
  """Runs every missing row, appending each to the CSV ``out``; returns the results frame.

  ``corpus_name`` (`training.load_corpus`) trains on a packaged corpus instead of
  ``data_dir``; its run directories default to ``runs/accuracy/<corpus>-<preset>``.
  ``keras`` "3" trains on Keras 3 (`training.train_run`'s ``keras``): its rows record
  the backend in ``frontend`` and sit beside the tf_keras rows of the same method.
  """
  front = frontends.get_frontend(keras)
  for method in methods:  # before any training: a refused method leaves nothing behind
    models.check_frontend(recipes.get_method(method), front)
  frontend = frontend_name(keras)
  recipe = presets.get_preset(preset)
  epochs = int(epochs or recipe.epochs)
  recipe_key = recipe_id(recipe.replace(epochs=epochs))
  if os.path.exists(out) and not resume:
    raise ValueError(f"{out} exists; pass --resume to add rows to it, or choose another --out")
  frame = read_results(out)
  check_recipe(frame, out, preset, epochs, recipe_key)
  # Another corpus' runs never share a directory (a resumed run would be refused).
  runs_dir = runs_dir or os.path.join("runs", "accuracy",
                                      f"{corpus_name}-{preset}" if corpus_name else preset)
  commit = common.git_commit()
  corpus = corpus_name or ("ptb" if data_dir else "embedded")
  for method, compression, seed in plan_rows(methods, compressions, seeds):
    if _done(frame, method, compression, seed, preset, epochs, corpus, frontend):
      continue
    run_dir = _run_dir(runs_dir, method, compression, seed, epochs, frontend)
    resuming = os.path.exists(os.path.join(run_dir, "run.json"))
    if verbose:
      print(f"== {method} at {compression:g}x, seed {seed}"
            f"{'' if frontend == TF_KERAS else ' on ' + frontend}"
            f"{' (resuming)' if resuming else ''}", flush=True)
    start = time.perf_counter()
    base_model = None
    if recipes.get_method(method).quantized:
      # Quantize the dense row's trained model rather than training another; when it is
      # gone (run directories are scratch), train it again into the dense row's directory.
      dense_dir = _run_dir(runs_dir, "dense", 1.0, seed, epochs)
      base_model = os.path.join(dense_dir, "model.keras")
      if not os.path.exists(base_model):
        training.train_run(dense_dir, preset, data_dir, "dense", 1.0, seed=seed, epochs=epochs,
                        resume=os.path.exists(os.path.join(dense_dir, "run.json")),
                        verbose=2 if verbose else 0, corpus_name=corpus_name)
    finished = os.path.exists(os.path.join(run_dir, "metrics.json"))
    metrics = training.train_run(run_dir, preset, data_dir, recipes.get_method(method),
                              compression, seed=seed,
                              epochs=epochs, resume=resuming, verbose=2 if verbose else 0,
                              base_model=base_model, corpus_name=corpus_name,
                              deployed_exports=tuple(DEPLOYED_COLUMNS.values()), keras=keras)
    wall_s = time.perf_counter() - start
    if finished:  # trained by an earlier invocation: its training time is all we know
      wall_s = metrics["train_seconds"]
    else:  # a resumed run adds the epochs its killed invocations trained
      wall_s += metrics.get("earlier_train_seconds", 0.0)
    row = {"method": method, "compression": compression, "seed": seed,
           "valid_ppl": metrics["valid_perplexity"], "test_ppl": metrics["test_perplexity"],
           "params": metrics["lstm_params"], "model_bytes": metrics["model_bytes"],
           "lstm_compression": metrics["lstm_compression"], "epochs": epochs, "preset": preset,
           "recipe": recipe_key, "commit": commit, "wall_s": round(wall_s, 1),
           **{column: metrics.get("deployed_test_perplexity", {}).get(export, float("nan"))
              for column, export in DEPLOYED_COLUMNS.items()},
           "corpus": corpus, "frontend": frontend}
    frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    buffer = io.StringIO()
    frame[COLUMNS].to_csv(buffer, index=False, float_format="%.6g")
    files.write_atomic(out, buffer.getvalue())
    render(out)
  return frame


def render(csv_path):
  """Writes ``<csv>.md`` (`report_lines`, then the rows' commits) and ``<csv>.png`` (Pareto
  plot)."""
  frame = read_results(csv_path)
  if frame.empty:
    return
  stem = os.path.splitext(csv_path)[0]
  corpora_names = ", ".join(sorted(set(frame["corpus"].astype(str))))
  commits = sorted(set(frame["commit"].astype(str)))
  fingerprints = sorted(set(frame["recipe"].astype(str)))
  lines = [f"# Accuracy at equal compression: {frame['preset'].iloc[0]} on {corpora_names}"]
  lines += report_lines(frame)
  lines += ["", f"Commits: {', '.join(commits)}. Recipes (`accuracy.recipe_id` of the preset at "
            f"each budget): {', '.join(fingerprints)}. Source: `{os.path.basename(csv_path)}`.", ""]
  files.write_atomic(stem + ".md", "\n".join(lines))
  _plot(stem + ".png", summarize(frame))


# The methods whose rows quantize the dense seeds' own models (no recipe quantizes).
QUANTIZED = frozenset(name for name, method in models.METHODS.items() if method.quantized)


def summarize(frame):
  """Mean over seeds per (corpus, preset, epochs, method, asked compression, Keras): rows of
  different budgets (epochs) are never averaged together. ``seeds`` is the sorted tuple of the
  group's seeds, ``tflite_seeds`` how many of them measured their `.tflite` files."""
  groups = frame.groupby(["corpus", "preset", "epochs", "method", "compression", "frontend"],
                         sort=False)
  return groups.agg(
      test_ppl=("test_ppl", "mean"), test_min=("test_ppl", "min"), test_max=("test_ppl", "max"),
      valid_ppl=("valid_ppl", "mean"), lstm_compression=("lstm_compression", "mean"),
      params=("params", "mean"), seeds=("seed", lambda s: tuple(sorted(s))),
      tflite_ppl=("tflite_ppl", "mean"), tflite_int8_ppl=("tflite_int8_ppl", "mean"),
      tflite_seeds=("tflite_ppl", "count"), wall_s=("wall_s", "mean")).reset_index()


def dense_reference(frame, row):
  """The dense perplexity a `summarize` row is compared with: the mean of its budget's tf_keras
  dense seeds, or for a quantized row the dense seeds it quantized (it is those models,
  rounded); None without dense rows."""
  dense = frame[(frame["method"] == "dense") & (frame["epochs"] == row.epochs) &
                (frame["preset"] == row.preset) & (frame["corpus"] == row.corpus) &
                (frame["frontend"] == TF_KERAS)]
  if row.method in QUANTIZED:
    dense = dense[dense["seed"].isin(row.seeds)]
  return dense["test_ppl"].mean() if len(dense) else None


def report_lines(frame):
  """The Markdown report of accuracy rows (`read_results`): per corpus, preset and epochs a
  table of every method's seed means against dense (and the papers' on PTB), the issue's
  targets, Keras 3 against tf_keras; then what the columns mean."""
  lines = []
  for (corpus, preset, epochs), budget in summarize(frame).groupby(
      ["corpus", "preset", "epochs"], sort=False):
    paper = corpus == "ptb"
    lines += ["", f"`{preset}` preset, {int(epochs)} epochs, corpus `{corpus}`:", ""]
    header = ["method", "asked", "measured", "LSTM params", "seeds", "valid ppl",
              "test ppl (min–max)", "vs dense"]
    header += ["paper (vs dense)"] if paper else []
    header += [".tflite ppl", "int8 .tflite ppl", "train minutes"]
    rows = []
    # Dense first, then by asked factor, best test perplexity first within a factor.
    order = budget.assign(is_dense=budget["method"] != "dense").sort_values(
        ["is_dense", "compression", "test_ppl"], kind="stable")
    for row in order.itertuples():
      reference = dense_reference(frame, row)
      quantized = row.method in QUANTIZED
      spread = f" ({row.test_min:.2f}–{row.test_max:.2f})" if len(row.seeds) > 1 else ""
      cells = [method_label(row), f"{row.compression:g}x",
               markdown.times(row.lstm_compression, 1) + (" (bytes)" if quantized else ""),
               f"{row.params / 1000:.1f}k", ",".join(str(int(s)) for s in row.seeds),
               markdown.fixed(row.valid_ppl), markdown.fixed(row.test_ppl) + spread,
               "" if row.method == "dense" or reference is None
               else markdown.percent(row.test_ppl / reference)]
      if paper:
        theirs = PAPER.get(row.method)
        cells.append(f"{theirs[1]:.2f} ({markdown.percent(theirs[1] / PAPER['dense'][1])})"
                     if theirs and theirs[0] == row.compression else "")
      # A file mean over fewer seeds than the Keras mean beside it says over how many.
      partial = (f" ({row.tflite_seeds} of {len(row.seeds)} seeds)"
                 if 0 < row.tflite_seeds < len(row.seeds) else "")
      cells += [markdown.fixed(row.tflite_ppl) + partial,
                markdown.fixed(row.tflite_int8_ppl) + partial,
                markdown.fixed(row.wall_s / 60, 1)]
      rows.append(cells)
    lines += markdown.table(header, rows)
    lines += target_lines(budget[budget["frontend"] == TF_KERAS])
    lines += frontend_lines(budget)
  lines += ["", "Perplexity per word (`<eos>` included, LSTM states carried across batches), the "
            "mean over seeds. `dkp` is the library's defaults; the other `dkp-...` methods are "
            "named variants (`benchmarks.recipes`). `asked` is the method's compression "
            "argument, `measured` the LSTM layers' compression by `compression_report` against "
            "the same dense stack (by bytes for the quantized methods, which quantize the dense "
            "seeds' own models and are compared with those seeds). `.tflite ppl`: the step-mode "
            "file that ships, run through LiteRT (float32 / dynamic-int8), the mean over the "
            "seeds that measured it (their count where fewer). `train minutes`: training wall "
            "time per seed on the 2-vCPU host (resumed rows add their legs)."]
  if (frame["corpus"] == "ptb").any():
    lines[-1] += (" The paper column: the doping papers' converged 2x650 PTB LSTM at the same "
                  "factor.")
  return lines


def method_label(row):
  """A summary row's method, with its Keras when that is not tf_keras."""
  return row.method if row.frontend == TF_KERAS else f"{row.method} [{row.frontend}]"


def frontend_lines(summary):
  """Rows trained on Keras 3 against the tf_keras rows of the same method and budget: met
  when their mean is at most the tf_keras seeds' worst (within or below their spread)."""
  lines = []
  reference = {(r.method, r.compression, r.epochs): r for r in summary.itertuples()
               if r.frontend == TF_KERAS}
  for row in summary.itertuples():
    theirs = reference.get((row.method, row.compression, row.epochs))
    if row.frontend == TF_KERAS or theirs is None:
      continue
    verdict = "met" if row.test_ppl <= theirs.test_max else "**missed**"
    lines.append(f"- {row.method} {row.compression:g}x on {row.frontend} ({len(row.seeds)} "
                 f"seeds) vs tf_keras ({len(theirs.seeds)} seeds, {row.epochs} epochs): test "
                 f"perplexity {row.test_ppl:.2f} vs {theirs.test_ppl:.2f} "
                 f"({theirs.test_min:.2f}–{theirs.test_max:.2f}), "
                 f"{100 * (row.test_ppl / theirs.test_ppl - 1):+.1f}%; within or below the "
                 f"tf_keras seeds' spread: {verdict}")
  return ["", "Keras 3 against tf_keras (issue 21).", ""] + lines if lines else []


# The targets: (DKP's factor, against, its factor, bound on the test ratio).
TARGETS = ((25, "dense", 1, 1.01), (25, "prune", 25, 0.92), (25, "lmf", 25, 0.92),
           (50, "dense", 1, 1.03))


def target_lines(budget):
  """A table of the issue's targets for every doped-Kronecker method (``dkp...``) of one
  budget's summary rows: the ratio of seed means, met or missed."""
  ppl = {(row.method, float(row.compression)): row.test_ppl for row in budget.itertuples()}
  rows = []
  # The library's default first, then its variants as the rows list them.
  methods = sorted(dict.fromkeys(m for m in budget["method"] if m.startswith("dkp")),
                   key=lambda m: m != "dkp")
  for method in methods:
    cells = []
    for factor, other, other_factor, bound in TARGETS:
      ours, theirs = ppl.get((method, float(factor))), ppl.get((other, float(other_factor)))
      ratio = None if ours is None or theirs is None else ours / theirs
      cells.append("" if ratio is None else
                   f"{markdown.percent(ratio)} " + ("met" if ratio <= bound else "**missed**"))
    if any(cells):
      rows.append([method] + cells)
  if not rows:
    return []
  header = ["DKP method"] + [
      f"{factor:g}x vs {other}" + (f" {other_factor:g}x" if other_factor != 1 else "")
      + f" (≤ {markdown.percent(bound)})" for factor, other, other_factor, bound in TARGETS]
  return ["", "Targets (issue 7), test perplexity of seed means; each against the dense model "
          "of the same budget, so an undertrained dense model makes \"met\" say little:", ""
          ] + markdown.table(header, rows)


def _plot(path, summary):
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  several = summary["epochs"].nunique() > 1
  # A dozen methods outrun matplotlib's 10 default colours: 20 colours and 5 markers keep
  # every series distinct.
  colors = plt.get_cmap("tab20").colors
  groups = summary.groupby(["method", "epochs", "frontend"], sort=False)
  for index, ((method, epochs, frontend), group) in enumerate(groups):
    group = group.sort_values("lstm_compression")
    label = method if frontend == TF_KERAS else f"{method} [{frontend}]"
    label = f"{label} ({epochs} ep)" if several else label
    ax.plot(group["lstm_compression"], group["test_ppl"], marker="os^Dv"[index % 5],
            color=colors[index % len(colors)], label=label)
  dense = summary[(summary["method"] == "dense") & (summary["frontend"] == TF_KERAS)]
  for dense_ppl in dense["test_ppl"]:
    ax.axhline(dense_ppl, color="gray", linestyle="--", linewidth=1)
  ax.set_xscale("log")
  ax.set_xlabel("LSTM compression (measured, log)")
  ax.set_ylabel("test perplexity")
  ax.set_title("perplexity vs compression (lower left is better)", fontsize=10)
  ax.legend(fontsize=8, ncol=2)
  figures.save_figure(fig, path)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--data", help="PTB directory (default: the embedded corpus)")
  parser.add_argument("--corpus", choices=sorted(corpora.CORPORA),
                      help="a packaged real corpus instead of --data (pipelines.corpora)")
  parser.add_argument("--preset", default="ptb-small")
  parser.add_argument("--methods", default=",".join(recipes.names()),
                      help="comma-separated product methods and benchmarks.recipes names "
                           "(default: all)")
  parser.add_argument("--compressions", default="10,25,50")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--epochs", type=int, help="override the preset's epochs (recorded)")
  parser.add_argument("--out", required=True, help="results CSV")
  parser.add_argument("--runs", help="run directories (default runs/accuracy/<preset>, "
                      "runs/accuracy/<corpus>-<preset> with --corpus)")
  parser.add_argument("--resume", action="store_true", help="skip rows already in --out")
  parser.add_argument("--keras", default="2", choices=choices.KERAS_VERSIONS,
                      help="2: tf_keras; 3: Keras 3 on KERAS_BACKEND's backend (rows beside "
                      "the tf_keras ones, their frontend column says which)")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  try:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    compressions = [float(c) for c in args.compressions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    frame = run(args.out, methods, compressions, args.data, args.preset, seeds, args.resume,
                args.epochs, args.runs, verbose=0 if args.quiet else 1, corpus_name=args.corpus,
                keras=args.keras)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(frame[COLUMNS].to_string(index=False))
  return 0


if __name__ == "__main__":
  sys.exit(main())
