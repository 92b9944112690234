"""PNG plots from a latency CSV: latency vs compression, and size vs latency.

``python -m benchmarks.plot benchmarks/results/latency.csv [--out-dir DIR]`` writes
``<name>_latency_vs_compression.png`` and ``<name>_size_vs_latency.png`` beside
the CSV (or into ``--out-dir``), one line / marker per structure, one row of
panels per mode and one panel per (threads, XNNPack) setting.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from pipelines import figures

REQUIRED = ("structure", "compression", "mode", "threads", "xnnpack", "latency_us_median",
            "model_bytes")


def load(path):
  frame = pd.read_csv(path)
  missing = [c for c in REQUIRED if c not in frame.columns]
  if missing:
    raise ValueError(f"{path} is not a latency CSV: missing columns {missing}")
  return frame


def _figure(frame, draw, title):
  """One row per mode, one panel per (threads, XNNPack) setting."""
  modes = sorted(frame["mode"].unique())
  columns = sorted(frame.groupby(["threads", "xnnpack"]).groups)
  fig, axes = figures.pyplot().subplots(len(modes), len(columns), figsize=(3.6 * len(columns),
                                                              3.2 * len(modes)), squeeze=False)
  for row, mode in enumerate(modes):
    for ax, (threads, xnnpack) in zip(axes[row], columns):
      subset = frame[(frame["mode"] == mode) & (frame["threads"] == threads) &
                     (frame["xnnpack"] == xnnpack)]
      draw(ax, subset)
      ax.set_title(f"{mode}, {threads} thread(s), XNNPack {'on' if xnnpack else 'off'}",
                   fontsize=9)
      ax.set_yscale("log")
      ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  return fig


def _latency_vs_compression(ax, subset):
  for structure, rows in subset.groupby("structure"):
    rows = rows.sort_values("compression")
    ax.plot(rows["compression"], rows["latency_us_median"], marker="o", label=structure)
  ax.set_xlabel("compression (x)")
  ax.set_ylabel("median latency (µs)")


def _size_vs_latency(ax, subset):
  for structure, rows in subset.groupby("structure"):
    ax.scatter(rows["model_bytes"] / 1024, rows["latency_us_median"], label=structure)
  ax.set_xscale("log")
  ax.set_xlabel(".tflite size (KiB)")
  ax.set_ylabel("median latency (µs)")


def plot(csv_path, out_dir=None):
  """Writes both PNGs; returns their paths."""
  frame = load(csv_path)
  out_dir = out_dir or os.path.dirname(os.path.abspath(csv_path))
  stem = os.path.splitext(os.path.basename(csv_path))[0]
  written = []
  for suffix, draw, title in (
      ("latency_vs_compression", _latency_vs_compression, "latency vs compression"),
      ("size_vs_latency", _size_vs_latency, "size vs latency")):
    path = os.path.join(out_dir, f"{stem}_{suffix}.png")
    figures.save_figure(_figure(frame, draw, title), path)
    written.append(path)
  return written


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.plot",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("csv", help="a CSV written by benchmarks.latency")
  parser.add_argument("--out-dir", help="where to write the PNGs (default: beside the CSV)")
  args = parser.parse_args(argv)
  try:
    for path in plot(args.csv, args.out_dir):
      print(f"wrote {path}")
  except (OSError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
