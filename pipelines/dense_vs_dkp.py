"""The main job's work: dense baseline vs DKP on the embedded corpus, trained, converted, timed.

`compare_dense_and_dkp`, behind ``python -m pipelines.run``, trains a dense LSTM language
model and its DKP twin (S annealed with co-matrix dropout) on the embedded
Markov corpus, converts both to TFLite in step mode (the streaming model a
device runs), verifies them against Keras, times one step of each (1 thread,
interleaved repetitions, medians), and writes ``report.md``, ``report.json``
and ``report.png`` (perplexity vs size vs latency) into the run directory.
"""

from __future__ import annotations

import os

import dkp_keras as dkp
from pipelines import conversion
from pipelines import data
from pipelines import figures
from pipelines import presets
from pipelines import training
from tflite_ops import files
from tflite_ops import timing

KINDS = ("dense", "dkp")
# What the job writes into its run directory (--force deletes these, nothing else).
REPORT_FILES = tuple(f"{kind}{suffix}" for kind in KINDS for suffix in (".keras", "_step.tflite")
                     ) + ("report.json", "report.md", "report.png")


def compare_dense_and_dkp(out="runs/demo", epochs=4, compression=25.0, tokens=120_000,
                          units=512, cmr=0.8, force=False, repeats=7, verbose=2):
  """Trains, converts and times a dense and a DKP model; returns the report dict.

  The report is also written to ``out`` (``report.json``, ``report.md``,
  ``report.png``). Both models follow the ``demo`` preset
  (`pipelines.presets`), with the arguments given here replacing its values.
  """
  training.prepare_run_dir(out, force=force, run_files=REPORT_FILES)
  recipe = presets.get_preset("demo").replace(epochs=epochs, units=units, cmr=cmr,
                                              corpus_tokens=tokens)
  corpus = training.load_corpus(None, recipe)
  rows, invokers = [], {}
  for kind in KINDS:
    if verbose:
      print(f"\n== training the {kind} model ==")
    result = training.fit_lm(corpus, recipe, kind, compression if kind == "dkp" else 1.0,
                          verbose=verbose)
    model = result["model"]
    training.save_atomically(model, os.path.join(out, f"{kind}.keras"))
    tflite_path = os.path.join(out, f"{kind}_step.tflite")
    converted = conversion.convert(model, tflite_path, mode="step", verify_samples=2, force=True)
    report = dkp.compression_report(model).set_index("layer")
    rows.append({
        "model": kind, "params": int(report.loc["total", "params"]),
        "dense_params": int(report.loc["total", "dense_params"]),
        "compression": float(report.loc["total", "compression"]),
        "tflite_bytes": converted.report["bytes"]["file"],
        "valid_perplexity": result["valid_perplexity"],
        "test_perplexity": result["test_perplexity"],
        "train_seconds": result["train_seconds"],
        "verification_error": converted.report["verification"]["max_error"],
        "tflite_ops": converted.report["op_counts"],
    })
    for xnnpack in (True, False):
      invokers[(kind, xnnpack)] = timing.step_invoker(tflite_path, num_threads=1,
                                                      xnnpack=xnnpack)
  latency = timing.interleaved_medians(invokers, repeats=repeats, number=100)
  dense = rows[0]
  for row in rows:
    for xnnpack, suffix in ((True, ""), (False, "_no_xnnpack")):
      median = latency[(row["model"], xnnpack)]["median_s"]
      row[f"step_latency_us{suffix}"] = median * 1e6
      row[f"speedup_vs_dense{suffix}"] = latency[("dense", xnnpack)]["median_s"] / median
    row["size_ratio_vs_dense"] = dense["tflite_bytes"] / row["tflite_bytes"]
  report = {
      "corpus": corpus.summary(),
      "unigram_perplexity": data.unigram_perplexity(corpus.train, corpus.test,
                                                    corpus.vocab_size),
      "optimal_perplexity": corpus.optimal_perplexity,
      "settings": {"preset": "demo", "recipe": recipe.to_dict(), "epochs": epochs,
                   "compression": compression, "units": units, "batch": recipe.batch_size,
                   "steps": recipe.num_steps, "cmr": cmr, "latency_threads": 1,
                   "latency_repeats": repeats},
      "models": rows,
  }
  _write_outputs(out, report)
  return report


def format_table(report):
  lines = [f"{'model':6} {'params':>9} {'compression':>11} {'tflite KiB':>10} "
           f"{'valid ppl':>9} {'test ppl':>8} {'step us':>8} {'speed-up':>8} "
           f"{'no-XNNPack us':>13} {'speed-up':>8}"]
  for row in report["models"]:
    lines.append(f"{row['model']:6} {row['params']:9,} {row['compression']:10.1f}x "
                 f"{row['tflite_bytes'] / 1024:10.1f} {row['valid_perplexity']:9.2f} "
                 f"{row['test_perplexity']:8.2f} {row['step_latency_us']:8.1f} "
                 f"{row['speedup_vs_dense']:7.2f}x {row['step_latency_us_no_xnnpack']:13.1f} "
                 f"{row['speedup_vs_dense_no_xnnpack']:7.2f}x")
  lines.append(f"test perplexity of a unigram model {report['unigram_perplexity']:.2f}; best "
               f"achievable (the source's entropy rate) {report['optimal_perplexity']:.2f}")
  return "\n".join(lines)


def _write_outputs(out, report):
  files.write_json_atomic(os.path.join(out, "report.json"), report)
  settings = report["settings"]
  markdown = [
      "# dkp-keras demo run", "",
      f"Embedded corpus: {report['corpus'].get('name', 'markov')} "
      f"({report['corpus'].get('vocab_size')} words); {settings['epochs']} epochs; DKP at "
      f"{settings['compression']}x on the LSTM ({settings['compression'] / 2}x on the output "
      f"layer); step latency on {settings['latency_threads']} thread, median of "
      f"{settings['latency_repeats']} interleaved repetitions.", "",
      "```", format_table(report), "```", "", "![perplexity vs size](report.png)", ""]
  files.write_atomic(os.path.join(out, "report.md"), "\n".join(markdown))
  _plot(os.path.join(out, "report.png"), report)


def _plot(path, report):
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel
  fig, ax = figures.pyplot().subplots(figsize=(6, 4))
  for row in report["models"]:
    ax.scatter(row["tflite_bytes"] / 1024, row["test_perplexity"],
               s=40 + row["step_latency_us"], alpha=0.7, label=row["model"])
    ax.annotate(f"{row['model']}: {row['step_latency_us']:.0f} us/step",
                (row["tflite_bytes"] / 1024, row["test_perplexity"]),
                textcoords="offset points", xytext=(-20, 10), fontsize=8)
  ax.axhline(report["optimal_perplexity"], color="gray", linestyle="--",
             label="best achievable")
  ax.set_xscale("log")
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.margins(x=0.4, y=0.15)
  ax.set_xlabel(".tflite size (KiB, log)")
  ax.set_ylabel("test perplexity")
  ax.set_title("perplexity vs size (marker area ~ step latency)", fontsize=10)
  ax.legend()
  figures.save_figure(fig, path)
