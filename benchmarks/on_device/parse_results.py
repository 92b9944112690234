"""Parses on-device benchmark outputs into the CSV of `benchmarks.latency`.

Sources: TFLite's `benchmark_model` stdout (Android, `android.sh`), the JSON of
`ai_edge_litert.tools.benchmark_litert_model` and of `time_tflite.py`
(Raspberry Pi, `rpi.sh`). Raw files are named
``<model stem>__t<threads>__xnn<on|off>.txt`` (stdout) or ``.json``.

    python benchmarks/on_device/parse_results.py --model-dir D --raw-dir R --out results.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys

COLUMNS = ["structure", "compression", "mode", "threads", "xnnpack", "latency_us_median",
           "latency_us_p10", "latency_us_p90", "model_bytes", "speedup_vs_dense", "device",
           "latency_us_mean", "latency_us_min", "latency_us_max", "latency_us_std", "runs",
           "peak_memory_mb", "source", "model", "raw_file"]
BASELINES = ("dense", "fused-lstm")
MODEL_NAME = re.compile(
    r"^(?P<structure>.+?)_(?P<compression>\d+(?:\.\d+)?)x?_(?P<mode>step|sequence)$")
RAW_NAME = re.compile(r"^(?P<stem>.+)__t(?P<threads>\d+)__xnn(?P<xnnpack>on|off)$")
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|p10|p50|median|p90|p95)=({_NUMBER})")


def _stat_lines(text):
  """The `count=... avg=...` statistics lines of benchmark_model, in order."""
  out = []
  for line in text.splitlines():
    stats = {key: float(value) for key, value in _STAT.findall(line)}
    if "count" in stats and "avg" in stats:
      out.append(stats)
  return out


def parse_benchmark_model(text):
  """Latency (µs) and memory of one `benchmark_model` stdout; a dict.

  benchmark_model prints no median: ``latency_us_mean`` is its avg and the
  median stays None unless the output has percentiles.
  """
  result = {"latency_us_mean": None, "latency_us_median": None, "latency_us_p10": None,
            "latency_us_p90": None, "latency_us_min": None, "latency_us_max": None,
            "latency_us_std": None, "runs": None, "init_us": None, "first_us": None,
            "warmup_us_mean": None, "peak_memory_mb": None, "num_threads": None,
            "use_xnnpack": None, "graph": None}
  summary = re.search(r"Inference timings in us:(.*)", text)
  if summary:
    for name, key in (("Init", "init_us"), ("First inference", "first_us"),
                      ("Warmup \\(avg\\)", "warmup_us_mean"),
                      ("Inference \\(avg\\)", "latency_us_mean")):
      match = re.search(rf"{name}:\s*({_NUMBER})", summary.group(1))
      if match:
        result[key] = float(match.group(1))
  stats = _stat_lines(text)
  if stats:
    last = stats[-1]  # the warm-up statistics come first, the timed runs last
    if result["latency_us_mean"] is None:
      result["latency_us_mean"] = last["avg"]
    result["latency_us_min"] = last.get("min")
    result["latency_us_max"] = last.get("max")
    result["latency_us_std"] = last.get("std")
    result["runs"] = int(last["count"])
    result["latency_us_median"] = last.get("median", last.get("p50"))
    result["latency_us_p10"] = last.get("p10")
    result["latency_us_p90"] = last.get("p90")
  peak = re.search(rf"[Pp]eak memory footprint \(MB\)[^:]*:\s*({_NUMBER})", text)
  if peak:
    result["peak_memory_mb"] = float(peak.group(1))
  for pattern, key, kind in ((r"Num threads:\s*\[(\d+)\]", "num_threads", int),
                             (r"Use xnnpack:\s*\[(\w+)\]", "use_xnnpack", str),
                             (r"Graph:\s*\[([^\]]*)\]", "graph", str)):
    match = re.search(pattern, text)
    if match:
      result[key] = kind(match.group(1))
  if result["latency_us_mean"] is None:
    raise ValueError("no inference timings found in the benchmark_model output")
  return result


def parse_litert_json(obj):
  """Latency (µs) of the LiteRT benchmark tool's JSON or of time_tflite.py's; a dict."""
  if isinstance(obj, str):
    obj = json.loads(obj)
  if "latency" in obj:  # ai_edge_litert.tools.benchmark_litert_model (milliseconds)
    lat = obj["latency"]

    def us(key):
      return None if lat.get(key) is None else float(lat[key]) * 1e3

    return {"latency_us_mean": us("avg_ms"), "latency_us_median": us("median_ms"),
            "latency_us_p10": None, "latency_us_p90": None, "latency_us_min": us("min_ms"),
            "latency_us_max": us("max_ms"), "latency_us_std": us("std_ms"),
            "runs": lat.get("num_runs"), "num_threads": obj.get("num_threads"),
            "use_xnnpack": None, "peak_memory_mb": None, "graph": obj.get("model"),
            "tool": "benchmark_litert_model"}
  if "latency_us_median" in obj:  # time_tflite.py (microseconds)
    keys = ("latency_us_mean", "latency_us_median", "latency_us_p10", "latency_us_p90",
            "latency_us_min", "latency_us_max", "latency_us_std")
    out = {key: None if obj.get(key) is None else float(obj[key]) for key in keys}
    out.update(runs=obj.get("runs"), num_threads=obj.get("num_threads"),
               use_xnnpack=obj.get("xnnpack"), peak_memory_mb=None, graph=obj.get("model"),
               tool="time_tflite")
    return out
  raise ValueError("unknown JSON: expected 'latency' (LiteRT tool) or 'latency_us_median'")


def model_fields(path):
  """structure, compression, mode from `<structure>_<compression>x_<mode>.tflite`; bytes."""
  stem = os.path.splitext(os.path.basename(path))[0]
  match = MODEL_NAME.match(stem)
  fields = ({"structure": match["structure"], "compression": float(match["compression"]),
             "mode": match["mode"]} if match else
            {"structure": stem, "compression": None, "mode": None})
  fields["model_bytes"] = os.path.getsize(path) if os.path.exists(path) else None
  fields["model"] = stem
  return fields


def parse_raw_file(path):
  """(threads, xnnpack, parsed dict, source) of one raw output file."""
  stem, ext = os.path.splitext(os.path.basename(path))
  match = RAW_NAME.match(stem)
  if not match:
    raise ValueError(f"{path}: expected <model>__t<threads>__xnn<on|off>.txt|.json")
  with open(path, encoding="utf-8", errors="replace") as handle:
    text = handle.read()
  if ext == ".json":
    # time_tflite.py prints one JSON line; take the last non-empty line if several
    try:
      obj = json.loads(text)
    except json.JSONDecodeError:
      obj = json.loads([line for line in text.splitlines() if line.strip()][-1])
    parsed = parse_litert_json(obj)
    source = parsed["tool"]
  else:
    parsed, source = parse_benchmark_model(text), "benchmark_model"
  return match["stem"], int(match["threads"]), match["xnnpack"] == "on", parsed, source


def to_rows(model_dir, raw_dir, device=""):
  """One row per raw file, with the latency.py columns where they apply."""
  rows = []
  for name in sorted(os.listdir(raw_dir)):
    if not name.endswith((".txt", ".json")):
      continue
    path = os.path.join(raw_dir, name)
    try:
      stem, threads, xnnpack, parsed, source = parse_raw_file(path)
    except (ValueError, OSError) as error:
      print(f"skipped {path}: {error}", file=sys.stderr)
      continue
    row = model_fields(os.path.join(model_dir, stem + ".tflite"))
    row.update(threads=threads, xnnpack=xnnpack, device=device, source=source, raw_file=name)
    for key in ("latency_us_mean", "latency_us_median", "latency_us_p10", "latency_us_p90",
                "latency_us_min", "latency_us_max", "latency_us_std", "runs",
                "peak_memory_mb"):
      row[key] = parsed.get(key)
    rows.append(row)
  return add_speedups(rows)


def _latency(row):
  return row["latency_us_median"] if row["latency_us_median"] is not None else (
      row["latency_us_mean"])


def add_speedups(rows):
  """speedup_vs_dense: the dense (or fused-lstm) row of the same mode/threads/xnnpack/device."""
  base = {}
  for row in rows:
    if row["structure"] in BASELINES:
      base[(row["mode"], row["threads"], row["xnnpack"], row["device"])] = row
  for row in rows:
    ref = base.get((row["mode"], row["threads"], row["xnnpack"], row["device"]))
    mine = _latency(row)
    row["speedup_vs_dense"] = (_latency(ref) / mine if ref is not None and mine and
                               _latency(ref) is not None else None)
  return rows


def write_csv(rows, out):
  """The rows as CSV (empty cells for None); atomically."""
  directory = os.path.dirname(os.path.abspath(out))
  os.makedirs(directory, exist_ok=True)
  temp = out + ".tmp"
  with open(temp, "w", newline="", encoding="utf-8") as handle:
    writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                       for k, v in row.items()})
  os.replace(temp, out)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--model-dir", required=True, help="directory of the .tflite files")
  parser.add_argument("--raw-dir", required=True, help="directory of the raw outputs")
  parser.add_argument("--out", default="results.csv", help="CSV to write")
  parser.add_argument("--device", default="", help="device name for the device column")
  args = parser.parse_args(argv)
  if not os.path.isdir(args.raw_dir):
    parser.error(f"--raw-dir {args.raw_dir!r} is not a directory")
  rows = to_rows(args.model_dir, args.raw_dir, args.device)
  write_csv(rows, args.out)
  print(f"wrote {len(rows)} rows to {args.out}")
  return rows


if __name__ == "__main__":
  main()
