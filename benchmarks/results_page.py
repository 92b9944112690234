"""The one results page, ``docs/results.md``, generated from the committed result files.

``python -m benchmarks.results_page`` rewrites it; ``--check`` only says whether the
committed page is what the result files give (exit 1 when stale). Every section names
the file its numbers come from and the command that regenerates that file, so a
number on the page can always be checked against its source. Rows appended to a
result file (a new seed, a new method) show up on the next run; a result file in
``benchmarks/results`` that no section reads is an error, so none is forgotten.

Numbers live here and in the result files only: the guides, the README and
``benchmarks/README.md`` link to the sections of this page (``tests/test_docs.py``
checks that they carry no measured numbers).

>>> render().startswith("# Results")
True
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys

from benchmarks import accuracy
from benchmarks import common
from benchmarks import markdown

PAGE = os.path.join("docs", "results.md")
# Where committed result files live: the performance benchmarks' and the studies'.
RESULT_DIRS = (os.path.join("benchmarks", "results"),
               os.path.join("benchmarks", "studies", "results"))
# Hand-recorded observations that no result file holds (run logs, install sizes),
# included verbatim at the end of the page.
HAND_RECORDED = "hand_recorded.md"
# Files in a results directory that are derived from another one, not sources.
_DERIVED_EXTENSIONS = (".md", ".png")


@dataclasses.dataclass(frozen=True)
class Section:
  """One section of the page.

  Args:
    anchor: the HTML anchor other documents link to (``results.md#<anchor>``).
    title: the section's heading.
    source: the result file's name, looked up in `RESULT_DIRS`.
    command: the command that regenerates it; ``{module}`` is replaced by the
      benchmark's module path (``benchmarks.x`` or ``benchmarks.studies.x``).
    module: the benchmark's module name (``latency``), to fill ``{module}``.
    what: one or two sentences on what was measured.
    render: ``render(path) -> list of lines``.
  """
  anchor: str
  title: str
  source: str
  command: str
  module: str
  what: str
  render: object


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _read_csv(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def _host_line(payload):
  """Where and when a JSON result was measured, from the fields every benchmark records."""
  host = payload.get("host", {})
  parts = [host.get("device", "unknown device")]
  if host.get("cpu_count"):
    parts.append(f"{host['cpu_count']} CPUs")
  versions = [f"{name} {host[key]}" for key, name in
              (("tensorflow", "TF"), ("ai_edge_litert", "LiteRT")) if host.get(key)]
  parts += versions
  if payload.get("created"):
    parts.append(f"run {payload['created'][:10]}")
  if payload.get("commit"):
    parts.append(f"commit {payload['commit'][:7]}")
  return "Host: " + ", ".join(parts) + "."


def render_accuracy(path):
  frame = accuracy.read_results(path)
  return accuracy.report_lines(frame) if not frame.empty else ["No rows yet."]


# Latency CSVs (benchmarks.latency): one row per structure x compression x mode x setting.
def render_latency(path):
  rows = _read_csv(path)
  sidecar = os.path.splitext(path)[0] + ".json"
  lines = []
  if os.path.exists(sidecar):
    payload = _read_json(sidecar)
    config = payload.get("config", {})
    lines += ["", _host_line(payload) + f" Model: {config.get('layers')}x{config.get('units')} "
              f"LSTM stack, {config.get('repeats')} interleaved repetitions per variant."]
    headline = payload.get("headline")
    if headline:
      lines += ["", f"Headline ({headline.get('scope')}):", ""]
      names = {"speedup_xnnpack_off": "speed-up, XNNPack off",
               "speedup_xnnpack_on": "speed-up, XNNPack on",
               "speedup_vs_dense_xnnpack_most_threads":
                   "speed-up against dense with XNNPack on the most threads (DKP on one)",
               "speedup_vs_fused_lstm_sequence": "sequence mode against Keras' fused LSTM",
               "weights_ratio": "LSTM weights in the file, dense / DKP"}
      lines += [f"- {label}: {markdown.times(headline[key])}" for key, label in names.items()
                if key in headline]
  settings = list(dict.fromkeys((r["threads"], r["xnnpack"]) for r in rows))
  header = ["mode", "structure", "asked", "file", "LSTM weights smaller"] + [
      f"{threads} thread{'s' if threads != '1' else ''}, XNNPack {'on' if xnn == 'True' else 'off'}"
      for threads, xnn in settings]
  variants = {}
  for r in rows:
    key = (r["mode"], r["structure"], float(r["compression"]))
    variants.setdefault(key, {"row": r})[(r["threads"], r["xnnpack"])] = r
  table = []
  for (mode, structure, compression), cells in variants.items():
    first = cells["row"]
    table.append([mode, structure, f"{compression:g}x", markdown.kib(float(first["model_bytes"])),
                  markdown.times(float(first["weights_ratio_vs_dense"]), 1)] + [
        _latency_cell(cells[s]) if s in cells else "" for s in settings])
  lines += ["", "Median latency per invoke (speed-up against the dense baseline of the same "
            "setting and run: the lowered dense LSTM in step mode, the fused LSTM in sequence "
            "mode):", ""] + markdown.table(header, table)
  return lines


def _latency_cell(row):
  return (f"{markdown.us(float(row['latency_us_median']))} "
          f"({markdown.times(float(row['speedup_vs_dense']))})")


# benchmarks.sparse_kernels: S's kernels against a dense FULLY_CONNECTED.
def render_sparse_kernels(path):
  payload = _read_json(path)
  config = payload["config"]
  lines = ["", _host_line(payload) + f" Matrix {config['in_features']} -> "
           f"{config['out_features']}, batch 1, {config['threads']} thread(s). The `auto` rule at "
           "that time: " + ", ".join(f"`{k}` {v:g}" for k, v in payload.get("rule", {}).items())
           + "."]
  baseline = next(v for v in payload["variants"] if v["name"] == "baseline")
  lines += ["", "Dense baseline: " + ", ".join(
      f"{resolver} {markdown.us(t['median_us'])}"
      for resolver, t in baseline["timings"].items()) + "."]
  measured = [v for v in payload["variants"] if v["name"] != "baseline"]
  methods = list(dict.fromkeys(v["method"] for v in measured))
  auto = {(a["pattern"], a["density"], a["resolver"]): a for a in payload.get("auto_rule", [])}
  for pattern in dict.fromkeys(v["pattern"] for v in measured):
    variants = [v for v in measured if v["pattern"] == pattern]
    header = ["density"] + [f"`{m}`" for m in methods] + ["rule picks", "rule wrong"]
    table = []
    for density in dict.fromkeys(v["density"] for v in variants):
      row = [f"{density:g}"]
      for method in methods:
        match = [v for v in variants if v["density"] == density and v["method"] == method]
        row.append(" / ".join(markdown.times(match[0]["timings"][r]["speedup_vs_dense"])
                              for r in ("xnnpack", "builtin")) + f" ({match[0]['storage']})"
                   if match else "")
      picks = [auto.get((pattern, density, r)) for r in ("xnnpack", "builtin")]
      row.append(" / ".join(p["auto_pick"] for p in picks if p))
      row.append(" / ".join("yes" if p["auto_wrong"] else "no" for p in picks if p))
      table.append(row)
    lines += ["", f"Pattern `{pattern}`: speed-up against the dense baseline, XNNPack / builtin "
              "kernels (how the file stores S):", ""] + markdown.table(header, table)
  lines += ["", "`rule wrong`: the rule's pick is slower than the fastest kernel by more than "
            f"the tolerance ({config['tolerance']:g}) and runs a different computation."]
  return lines


# benchmarks.checkpoint_size: the .keras file.
def render_checkpoint_size(path):
  payload = _read_json(path)
  config = payload["config"]
  table = [[r["structure"], f"{r['compression']:g}x", markdown.kib(r["bytes"]),
            markdown.times(r["dense_bytes_over_this"]),
            "yes" if r["bit_exact_reload"] else "**no**"]
           for r in payload["rows"]]
  return (["", _host_line(payload) + f" Model: {config['layers']}x{config['units']} LSTM stack.",
           ""] + markdown.table(["structure", "asked", ".keras file", "dense file / this",
                         "reload bit-exact"], table))


# benchmarks.convert_time: pipelines.convert wall time.
def render_convert_time(path):
  payload = _read_json(path)
  config = payload["config"]
  table = [[c["model"], c["mode"], f"{c['convert_seconds']:.1f} s", f"{c['total_seconds']:.1f} s",
            markdown.kib(c["file_bytes"]), markdown.times(c["lstm_file_compression"], 1),
            markdown.times(c["lstm_report_compression"], 1),
            "met" if c.get("meets_target") else ("**missed**" if "meets_target" in c else "")]
           for c in payload["conversions"].values()]
  return (["", _host_line(payload) + f" Model: Embedding({config['vocab']}, {config['units']}) "
           f"-> {config['layers']} x LSTM({config['units']}) -> Dense({config['vocab']}), DKP "
           f"at {config['compression']:g}x; target {config['target_seconds']:g} s (whole call).",
           ""] + markdown.table(["model", "mode", "lowering + conversion", "whole call", "file",
                         "LSTM weights smaller (file)", "(compression_report)", "target"], table))


# benchmarks.train_step: training step time.
def render_train_step(path):
  payload = _read_json(path)
  config = payload["config"]
  table = [[name, f"{m['median_s']:.3f} s", f"{m['min_s']:.3f} s",
            markdown.times(m["ratio_to_dense"]),
            markdown.times(m["median_paired_ratio"]), markdown.times(m["ratio_of_mins"])]
           for name, m in payload["models"].items()]
  return (["", _host_line(payload) + f" Model: {config['layers']}x{config['units']} LSTM, vocab "
           f"{config['vocab']}, batch {config['batch']} x {config['steps']} steps, DKP at "
           f"{config['compression']:g}x; {config['repeats']} interleaved blocks of "
           f"{config['block']} steps.", ""]
          + markdown.table(["model", "median step", "min step", "median / dense", "paired ratio",
                    "min / min"], table))


# benchmarks.train_step_keras3: Keras 3 backends against the tf_keras dense LSTM.
def render_train_step_keras3(path):
  payload = _read_json(path)
  config = payload["config"]
  table = [[name, entry["backend"], f"{entry['median_s']:.3f} s", f"{entry['min_s']:.3f} s",
            markdown.times(entry["ratio_to_dense"]), markdown.times(entry["median_paired_ratio"])]
           for name, entry in payload["entries"].items()]
  host = payload.get("host", {})
  versions = ", ".join(f"{name} {host[name]}" for name in ("keras", "jax", "torch")
                       if name in host)
  lines = ["", _host_line(payload) + f" {versions}. Model: {config['layers']}x{config['units']} "
           f"LSTM, vocab {config['vocab']}, batch {config['batch']} x {config['steps']} steps, DKP "
           f"at {config['compression']:g}x; {config['repeats']} interleaved blocks of "
           f"{config['block']} steps per entry.", ""]
  lines += markdown.table(["entry", "backend", "median step", "min step", "median / tf_keras dense",
                   "paired ratio"], table)
  fastest = payload.get("fastest_keras3_dkp")
  if fastest:
    ratio = payload["entries"][fastest]["ratio_to_dense"]
    verdict = "meets" if ratio <= payload["goal_ratio"] else "misses"
    lines += ["", f"Fastest Keras 3 DKP: `{fastest}`, {markdown.times(ratio)} the tf_keras dense "
              "step: "
              f"{verdict} the goal of at most {markdown.times(payload['goal_ratio'])}."]
  for backend, why in payload.get("missing_backends", {}).items():
    lines += ["", f"Not measured: {backend} ({why})."]
  return lines


# benchmarks.arm64_parity / arm64_fc_probe: emulated arm64 outputs against x86.
def render_parity(path):
  rows = _read_csv(path)
  sidecar = os.path.splitext(path)[0] + ".json"
  host = ["", _host_line(_read_json(sidecar))] if os.path.exists(sidecar) else []
  groups = {}
  for r in rows:
    groups.setdefault((r["platform"], r["xnnpack"]), []).append(r)
  table = []
  for (platform, xnnpack), group in groups.items():
    errors = [float(r["max_error"]) for r in group if r["max_error"] not in ("", "nan")]
    within = sum(r["within_tolerance"] == "True" for r in group)
    table.append([platform, "on" if xnnpack == "True" else "off", len(group), within,
                  f"{max(errors):.1e}" if errors else ""])
  lines = host + ["", "Rows per platform and XNNPack setting, how many are within the tolerance "
           "`pipelines.convert --verify` uses for their quantization, and the worst max "
           "normwise error:", ""]
  lines += markdown.table(["platform", "XNNPack", "rows", "within tolerance", "worst error"], table)
  failing = [r for r in rows if r["within_tolerance"] != "True"]
  if failing:
    lines += ["", "Outside the tolerance:", ""]
    lines += markdown.table(["model", "platform", "XNNPack", "error", "tolerance", "status"],
                    [[r["model"], r["platform"], r["xnnpack"], f"{float(r['max_error']):.2e}"
                      if r["max_error"] not in ("", "nan") else r["max_error"],
                      r["tolerance"], r["status"]] for r in failing])
  return lines


# benchmarks.arm64_insns: emulated instructions per step and the estimated Pi 4 step.
def _insns_intro(sidecar):
  """The host, qemu, core and estimate constants of an arm64_insns table."""
  board = sidecar["estimate"]
  return ["", _host_line(sidecar) + f" qemu {sidecar.get('qemu')}, `-cpu "
          f"{sidecar['config']['cpu']}`, 1 thread, {sidecar['config']['invokes']} counted "
          "invokes. Estimate: instructions at IPC "
          f"{board['ipc']:g} and {board['clock_hz'] / 1e9:g} GHz, plus the weight bytes beyond "
          f"{board['l2_bytes'] / 2**20:g} MiB of L2 at {board['dram_bytes_per_s'] / 1e9:g} GB/s "
          "(benchmarks/README.md).", ""]


def render_insns(path):
  rows = _read_csv(path)
  sidecar = _read_json(os.path.splitext(path)[0] + ".json")
  lines = _insns_intro(sidecar)
  on = {(r["model"], r["variant"]): r for r in rows
        if r["xnnpack"] == "True" and r["insns_per_step"] and r["compression"] in ("1.0", "25.0")}
  for key in (("dkp", ""), ("dkp", "fused-s"), ("dkp-int8", ""), ("dkp-int8", "fused-s")):
    if key not in on or ("dense", "") not in on:
      continue
    r = on[key]
    label = ("DKP 25x (1x4 S)" if key[0] == "dkp" else "DKP 25x dynamic-int8") + (
        f", {key[1]}" if key[1] else "")
    line = (f"- {label}, XNNPack on: dense / DKP instructions "
            f"{markdown.times(float(r['insn_speedup_vs_dense']))} (target >= 3x), estimated Pi 4 "
            "step "
            f"{markdown.times(float(r['est_pi4_speedup_vs_dense']))} (target >= 5x)")
    if key[0] == "dkp-int8" and ("dense-int8", "") in on:
      ratio = float(on[("dense-int8", "")]["insns_per_step"]) / float(r["insns_per_step"])
      line += f", against the dense dynamic-int8 export's instructions {markdown.times(ratio)}"
    lines.append(line + ".")
  return lines + [""] + _insns_table(rows)


def _insns_table(rows):
  """The rows of an arm64_insns CSV as a markdown table."""
  def number(value, scale=1.0, digits=2):
    return "" if value in ("", "nan") else f"{float(value) / scale:.{digits}f}"

  table = [[r["model"], r["variant"], f"{float(r['compression']):.3g}x"
            if r["compression"] else "", r["kernel"],
            {"True": "on", "False": "off"}.get(r["xnnpack"], ""),
            number(r["insns_per_step"], 1e6, 3), markdown.times(float(r["insn_speedup_vs_dense"]))
            if r["insn_speedup_vs_dense"] else "", markdown.kib(int(r["weight_bytes"]))
            if r["weight_bytes"] else "", markdown.us(float(r["est_pi4_step_us"]))
            if r["est_pi4_step_us"] else "", markdown.times(float(r["est_pi4_speedup_vs_dense"]))
            if r["est_pi4_speedup_vs_dense"] else "",
            f"{float(r['max_error_vs_x86']):.1e}" if r["max_error_vs_x86"] else "", r["status"]]
           for r in rows]
  return markdown.table(
      ["model", "variant", "compression", "kernel", "XNNPack", "M insns / step (emulated)",
       "dense / model", "weights", "Pi 4 step (estimated)", "dense / model (estimated)",
       "max error vs x86", "status"], table)


# benchmarks.arm64_insns --run-dir: the main job's step files, beside its x86 step times.
def render_insns_main_job(path):
  rows = _read_csv(path)
  sidecar = _read_json(os.path.splitext(path)[0] + ".json")
  run = sidecar["run"]
  settings = run["settings"]
  lines = _insns_intro(sidecar)
  lines[-1:-1] = ["", f"The run: `pipelines.run` with {settings['units']} units, DKP at "
                  f"{settings['compression']:g}x on the LSTM, {settings['epochs']} epochs; the "
                  "compression column is the whole model's, as its report gives it (the "
                  "embedding stays dense)."]
  x86 = run["x86"]
  for r in rows:
    if r["model"] == "dense" or not r["insn_speedup_vs_dense"]:
      continue
    on = r["xnnpack"] == "True"
    measured = x86.get(r["model"], {}).get(
        "speedup_vs_dense" if on else "speedup_vs_dense_no_xnnpack")
    lines.append(f"- {r['model']}, XNNPack {'on' if on else 'off'}: dense / {r['model']} "
                 f"instructions {markdown.times(float(r['insn_speedup_vs_dense']))}, estimated "
                 "Pi 4 step "
                 f"{markdown.times(float(r['est_pi4_speedup_vs_dense']))}" +
                 (f"; the x86 step `pipelines.run` measured: {markdown.times(measured)}"
                  if measured else "") + ".")
  return lines + [""] + _insns_table(rows)


# benchmarks.arm64_insns --profile: where a step's instructions go, per function.
def render_insns_profile(path):
  rows = _read_csv(path)
  sidecar = _read_json(os.path.splitext(path)[0] + ".json")
  table = [[r["model"], r["variant"], f"{float(r['compression']):g}x",
            {"True": "on", "False": "off"}[r["xnnpack"]], f"`{r['function']}`",
            f"{float(r['insns_per_step']) / 1e3:,.1f}", f"{float(r['share_of_step']):.1%}",
            f"{float(r['step_insns_per_step']) / 1e6:.3f}"] for r in rows]
  return (["", _host_line(sidecar) + f" qemu {sidecar.get('qemu')}, `-cpu "
           f"{sidecar['config']['cpu']}`, {sidecar['config']['invokes']} counted invokes. "
           "qemu's hotblocks plugin lists only its 20 most executed blocks, so the functions "
           "do not add up to the step.", ""]
          + markdown.table(["model", "variant", "compression", "XNNPack", "function",
                    "K insns / step (emulated)", "share of the step", "step, M insns"], table))


# benchmarks.doping_share: the trained models with S zeroed.
def render_doping_share(path):
  payload = _read_json(path)
  table = [[r["run"], markdown.fixed(r["valid_ppl"]), markdown.fixed(r["valid_ppl_without_doping"]),
            ", ".join(f"{m['doping_norm']:.0f} / {m['structure_norm']:.0f}"
                      for m in r.get("matrices", []))]
           for r in sorted(payload["results"], key=lambda r: r["valid_ppl_without_doping"],
                           reverse=True)]
  return (["", _host_line(payload) + f" Runs: `{payload.get('runs')}`.", ""]
          + markdown.table(["run", "valid ppl", "valid ppl with S zeroed",
                    "‖S‖ / ‖structure‖ per matrix (Frobenius)"], table))


# benchmarks.sgd_probe: plain SGD against scaled factor gradients.
def render_sgd_probe(path):
  payload = _read_json(path)
  config = payload["config"]
  table = [[s["method"], "yes" if s["precondition_factors"] else "no",
            f"{s['valid_ppl_median']:.0f}" if not markdown.isnan(s["valid_ppl_median"]) else "NaN",
            f"{s['valid_ppl_min']:.0f}–{s['valid_ppl_max']:.0f}"
            if not markdown.isnan(s["valid_ppl_min"]) else "", markdown.times(s["median_vs_dense"])]
           for s in payload["summary"]]
  return (["", _host_line(payload) + f" Preset `{config['preset']}`, {config['fraction']:.3g} of "
           f"an epoch, methods at {config['compression']:g}x, seeds {config['seeds']}, validation "
           f"perplexity on the first {config['valid_tokens']:,} validation tokens.", ""]
          + markdown.table(["method", "scaled factor gradients", "valid ppl median", "min–max",
                    "median / dense"], table))


# Accuracy rows were added over many invocations (each row records its commit and recipe);
# --resume adds the missing (method, compression, seed) rows of the given sets.
_ACCURACY_COMMAND = ("python -m {module} --data ../shared/data/ptb --preset ptb-small "
                     "--methods M,... --compressions C,... --seeds S,... --resume --out {path}")

# qemu 10 for the emulated arm64 reruns (Debian 13's, fetched by this script).
_QEMU10 = "\"$(bash benchmarks/on_device/emulated/fetch_qemu.sh)\""

SECTIONS = (
    Section("accuracy-ptb-small", "Accuracy on PTB: every method at equal compression",
            "ptb_small.csv", _ACCURACY_COMMAND, "accuracy",
            "Word-level PTB language model (`ptb-small` preset: 2x200 LSTM, 6 epochs, dropout); "
            "every compression method at 10x / 25x / 50x on the LSTM layers.", render_accuracy),
    Section("accuracy-python-docs", "Accuracy on the Python documentation corpus",
            "python_docs_small.csv",
            "python -m {module} --corpus python-docs --preset ptb-small --methods M,... "
            "--compressions 25 --resume --out {path}", "accuracy",
            "The same recipe on a second real corpus (`--corpus python-docs`), with the shipped "
            "`.tflite` files' perplexity.", render_accuracy),
    Section("accuracy-ptb-small-2ep", "Accuracy on PTB, 2 epochs without dropout",
            "ptb_small_2ep.csv", _ACCURACY_COMMAND + " --epochs 2", "accuracy",
            "An earlier, shorter budget (the preset had no dropout then): every method at 25x. "
            "The dense model is undertrained here, so \"better than dense\" is an artefact of "
            "the budget.", render_accuracy),
    Section("accuracy-ptb-small-nodropout", "Accuracy on PTB before dropout was added",
            "ptb_small_nodropout.csv", _ACCURACY_COMMAND, "accuracy",
            "The `ptb-small` preset before it had dropout: every model overfits, so this table "
            "ranks regularization rather than capacity (why the preset now has dropout).",
            render_accuracy),
    Section("accuracy-dense-repro", "Dense PTB model retrained", "ptb_small_dense_repro.csv",
            _ACCURACY_COMMAND, "accuracy",
            "Dense seed 0 retrained at a later commit: the spread between dense rows is the "
            "seeds', not a code change.", render_accuracy),
    Section("latency", "Inference latency of the LSTM stack", "latency.csv",
            "python -m {module} --out {path}", "latency",
            "`.tflite` step and sequence latency of every structure against dense, 1 and 2 "
            "threads, XNNPack on and off; the bytes of the LSTM weights in the file.",
            render_latency),
    Section("latency-1x1", "Latency with S in 1x1 blocks (CSR)", "latency_1x1.csv",
            "python -m {module} --structures dense,dkp,dkp-1x1 --compressions 25,50 --modes step "
            "--threads 1 --out {path}", "latency",
            "Unstructured S (stored as CSR weights) against 1x4 S, 2x650 stack.", render_latency),
    Section("latency-1x1-200", "Latency with S in 1x1 blocks at ptb-small's size",
            "latency_1x1_200.csv",
            "python -m {module} --units 200 --structures dense,dkp,dkp-1x1 --compressions 25,50 "
            "--modes step --threads 1 --out {path}", "latency",
            "The same at the 2x200 size the accuracy table trains.", render_latency),
    Section("latency-fused-s", "Latency of the fused-S lowering try", "latency_fused_s.csv",
            "python -m {module} --structures dense,dkp,dkp-fused-s --compressions 10,25,50 "
            "--modes step --threads 1 --out {path}", "latency",
            "One S per layer over the concatenated input and state (`fuse_doping=True`, step "
            "mode) against the default lowering of the same DKP models, 2x650 stack.",
            render_latency),
    Section("sparse-kernels", "Kernels for S against a dense FULLY_CONNECTED",
            "sparse_kernels.json",
            "python -m {module} --out-json {path}", "sparse_kernels",
            "One `x @ S` model per density, pattern and kernel of `tflite_ops.sparse_matmul`: the "
            "data the `auto` rule's block limit was calibrated on (before the `csr` kernel "
            "existed).", render_sparse_kernels),
    Section("sparse-kernels-csr", "Kernels for S, with the CSR kernel", "sparse_kernels_csr.json",
            "python -m {module} --out-json {path}", "sparse_kernels",
            "The rerun with `csr`, on another host (whose XNNPack dense FC is slower).",
            render_sparse_kernels),
    Section("checkpoint-size", "The .keras checkpoint", "checkpoint_size.json",
            "python -m {module} --out {path}", "checkpoint_size",
            "`.keras` file of the LSTM stack annealed and finalized (S stored sparse), against "
            "the dense stack's file, and whether reloading is bit-exact.",
            render_checkpoint_size),
    Section("convert-time", "Conversion time", "convert_time.json",
            "python -m {module} --out-json {path}", "convert_time",
            "`pipelines.convert` wall time and file size for the PTB-medium model, DKP and "
            "dense.", render_convert_time),
    Section("train-step", "Training step time", "train_step.json",
            "python -m {module} --out {path}", "train_step",
            "One `train_on_batch` of the PTB-medium LM: dense, DKP LSTMs, DKP everywhere, and "
            "DKP inside the annealing wrappers.", render_train_step),
    Section("train-step-preconditioned", "Training step time with scaled factor gradients",
            "train_step_preconditioned.json",
            "python -m {module} --models dense,dkp,dkp_preconditioned --out {path}", "train_step",
            "The cost of `precondition_factors` (ScaledGD).", render_train_step),
    Section("train-step-keras3", "Training step time on Keras 3, each backend",
            "train_step_keras3.json", "python -m {module} --out {path}", "train_step_keras3",
            "The same LM built by `pipelines.models.build_lm` on tf_keras and on Keras 3 "
            "(`--keras 3`) for each installed backend, each backend in its own process, blocks "
            "interleaved across processes; every ratio is against the tf_keras dense LSTM of "
            "the same run.", render_train_step_keras3),
    Section("sgd-probe", "Plain SGD against scaled factor gradients", "sgd_probe.json",
            "python -m {module} --data ../shared/data/ptb --out {path}", "sgd_probe",
            "A third of an epoch of Zaremba's SGD per method, plain and scaled factor gradients, "
            "three seeds (a probe: early training only).", render_sgd_probe),
    Section("sgd-probe-medium", "Plain SGD against scaled gradients at ptb-medium's shapes",
            "sgd_probe_medium.json",
            "python -m {module} --data ../shared/data/ptb --preset ptb-medium --fraction 0.3333 "
            "--methods dense,kp,dkp --seeds 0 --out {path}", "sgd_probe",
            "The same probe at 2x650, one seed.", render_sgd_probe),
    Section("doping-share", "How far the structure works without S", "doping_share.json",
            "python -m {module} --data ../shared/data/ptb --runs runs/accuracy/ptb-small "
            "--out {path}",
            "doping_share",
            "The accuracy runs' doped models evaluated as trained and with every S zeroed: "
            "what co-matrix dropout does to the structure.", render_doping_share),
    Section("arm64-parity", "Outputs on emulated arm64 cores", "arm64_parity_emulated.csv",
            "sudo python -m {module} --out {path}", "arm64_parity",
            "Converted 2x64 models (dense, DKP 1x4 and CSR, int8, float16, LMF, HMD; step and "
            "sequence) run in an emulated aarch64 LiteRT (qemu 7.2) against x86.",
            render_parity),
    Section("arm64-parity-qemu10", "Outputs on emulated arm64, qemu 10",
            "arm64_parity_qemu10_emulated.csv",
            "sudo python -m {module} --qemu " + _QEMU10 + " "
            "--out {path}", "arm64_parity", "The same under qemu 10.", render_parity),
    Section("arm64-parity-650", "Outputs on emulated arm64, 2x650",
            "arm64_parity_650_emulated.csv",
            "sudo python -m {module} --units 650 --models dkp-int8,dense-int8,dkp "
            "--cpus 'cortex-a72;cortex-a76;max;max,sme=off' --out {path}", "arm64_parity",
            "The PTB-medium-sized stack, including `max` with SME switched off.", render_parity),
    Section("arm64-parity-650-qemu10", "Outputs on emulated arm64, 2x650, qemu 10",
            "arm64_parity_650_qemu10_emulated.csv",
            "sudo python -m {module} --units 650 --models dkp-int8,dense-int8,dkp --qemu "
            + _QEMU10 + " --out {path}",
            "arm64_parity", "The same under qemu 10.", render_parity),
    Section("arm64-insns", "Instructions per LSTM step on emulated arm64, estimated Pi 4 step",
            "arm64_emulated.csv", "python -m {module} --out {path}", "arm64_insns",
            "The 2x650 LSTM stack's step-mode models (every structure at 10x / 25x / 50x, the "
            "dynamic-int8 exports of dense and DKP 25x, and the lowering tries as variants): "
            "aarch64 instructions per step counted by qemu's insn plugin under a Cortex-A72 "
            "(emulated), a Raspberry Pi 4 step time estimated from them (a model, not a "
            "measurement), and the outputs' error against x86.", render_insns),
    Section("arm64-insns-main-job", "The main job's models on emulated arm64",
            "arm64_emulated_main_job.csv",
            "python -m {module} --run-dir runs/demo --cpu cortex-a72 --samples 2 --steps 8 "
            "--out {path}", "arm64_insns",
            "The dense and DKP LSTM language models `python -m pipelines.run --out runs/demo` "
            "trains on the embedded corpus (`dense_step.tflite`, `dkp_step.tflite`), counted as "
            "the 2x650 "
            "stack above: instructions per step under a Cortex-A72 (emulated), the estimated "
            "Pi 4 step, the outputs' error against x86.", render_insns_main_job),
    Section("arm64-insns-main-job-a76", "The main job's models on an emulated Cortex-A76",
            "arm64_emulated_main_job_a76.csv",
            "python -m {module} --run-dir runs/demo --cpu cortex-a76 --samples 2 --steps 8 "
            "--out {path}", "arm64_insns",
            "The same files under `-cpu cortex-a76` (Raspberry Pi 5, many phones' big cores); "
            "the estimate still uses the Pi 4's constants.", render_insns_main_job),
    Section("arm64-insns-profile", "Where an LSTM step's instructions go on emulated arm64",
            "arm64_emulated_profile.csv",
            "python -m {module} --profile --compressions 25 --structures dense,dkp,dkp-fused-s,kp "
            "--no-int8 --invokes 200 --out {path}", "arm64_insns",
            "The hottest LiteRT / XNNPack functions of the 2x650 step (dense, DKP 25x with 1x4 "
            "S, its fused-S lowering try, and `kp`: the factors without S), under a Cortex-A72 "
            "(emulated).", render_insns_profile),
    Section("arm64-fc-probe", "One dynamic-int8 FULLY_CONNECTED on emulated arm64",
            "arm64_fc_probe_emulated.csv", "sudo python -m {module} --out {path}", "arm64_fc_probe",
            "Single-FC models by input rows and shape: which FULLY_CONNECTED shapes the emulated "
            "cores get wrong.", render_parity),
    Section("arm64-fc-probe-qemu10", "One dynamic-int8 FULLY_CONNECTED, qemu 10",
            "arm64_fc_probe_qemu10_emulated.csv",
            "sudo python -m {module} --qemu " + _QEMU10 + " "
            "--out {path}", "arm64_fc_probe", "The same under qemu 10.", render_parity),
)


def find_result(name, root=common.PROJECT_ROOT):
  """The committed result file ``name``, relative to ``root``, from the first of `RESULT_DIRS`
  that holds it."""
  for directory in RESULT_DIRS:
    if os.path.exists(os.path.join(root, directory, name)):
      return os.path.join(directory, name)
  raise FileNotFoundError(f"result file {name!r} is in none of {RESULT_DIRS}: commit it, or "
                          "drop its section from benchmarks.results_page.SECTIONS")


def _module(name, root):
  """The benchmark's module path: studies live in ``benchmarks/studies``."""
  studies = os.path.join(root, "benchmarks", "studies", name + ".py")
  return f"benchmarks.studies.{name}" if os.path.exists(studies) else f"benchmarks.{name}"


def unlisted_results(root=common.PROJECT_ROOT):
  """Source files in the results directories that no section (and no sidecar) covers."""
  listed = {s.source for s in SECTIONS} | {HAND_RECORDED}
  listed |= {os.path.splitext(s.source)[0] + ".json" for s in SECTIONS}
  unlisted = []
  for directory in RESULT_DIRS:
    path = os.path.join(root, directory)
    if not os.path.isdir(path):
      continue
    unlisted += [name for name in sorted(os.listdir(path))
                 if not name.endswith(_DERIVED_EXTENSIONS) and name not in listed
                 and not name.startswith(".")]
  return unlisted


def render(root=common.PROJECT_ROOT):
  """The page's text, from the result files under ``root``."""
  unlisted = unlisted_results(root)
  if unlisted:
    raise ValueError(f"result files {unlisted} have no section on the results page: add one "
                     "to benchmarks.results_page.SECTIONS")
  lines = ["# Results", "",
           "<!-- Generated by `python -m benchmarks.results_page` from the committed result "
           "files; do not edit by hand. -->", "",
           "Every measured number of the project is on this page, generated from the result "
           "file its section names; the guides link here. Speed-ups and size ratios are against "
           "the dense baseline measured in the same run on the same host: compare absolute "
           "times only within one section. Hosts are small shared VMs (2 vCPUs), so latencies "
           "carry noise; ratios from interleaved repetitions are the steadier figures.", "",
           "## Contents", ""]
  lines += [f"- [{s.title}](#{s.anchor}) (`{s.source}`)" for s in SECTIONS]
  lines += ["- [Measured once, recorded by hand](#hand-recorded)"]
  for section in SECTIONS:
    relative = find_result(section.source, root)
    command = section.command.format(module=_module(section.module, root),
                                     path=relative.replace(os.sep, "/"))
    link = "../" + relative.replace(os.sep, "/")
    lines += ["", f'<a id="{section.anchor}"></a>', "", f"## {section.title}", "",
              section.what, "", f"Source: [`{relative}`]({link}). Regenerate: `{command}`."]
    lines += section.render(os.path.join(root, relative))
  hand = find_result(HAND_RECORDED, root)
  with open(os.path.join(root, hand), encoding="utf-8") as f:
    hand_text = f.read().strip()
  lines += ["", '<a id="hand-recorded"></a>', "", "## Measured once, recorded by hand", "",
            f"Source: [`{hand}`](../{hand.replace(os.sep, '/')}), observations no result file "
            "holds (run logs, install sizes); each says how it was measured.", "", hand_text]
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    page = render()
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  return common.publish_page(PAGE, page, args.check, "python -m benchmarks.results_page")


def build_parser():
  return common.page_parser("benchmarks.results_page", __doc__.splitlines()[0], PAGE)


if __name__ == "__main__":
  sys.exit(main())
