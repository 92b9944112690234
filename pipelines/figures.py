"""Matplotlib without a display, and figures written atomically (reports and benchmarks)."""

from __future__ import annotations

from tflite_ops import files


def pyplot():
  """`matplotlib.pyplot` on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_figure(fig, path, dpi=100):
  """Lays out ``fig``, writes it to ``path`` atomically and closes it."""
  fig.tight_layout()
  with files.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=dpi)
  pyplot().close(fig)
