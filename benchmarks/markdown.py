"""Markdown for the benchmarks' result pages: one formatter per kind of number, so that
every page reads alike, and tables.

>>> table(["method", "ppl"], [["dkp", fixed(134.734)], ["kp", fixed(float("nan"))]])
['| method | ppl |', '|---|---|', '| dkp | 134.73 |', '| kp |  |']
>>> percent(1.006), times(25.04, 1)
('+0.6%', '25.0x')
"""

from __future__ import annotations

import math


def isnan(value):
  return isinstance(value, float) and math.isnan(value)


def fixed(value, digits=2):
  """``value`` with ``digits`` decimals; empty for a missing value (None or NaN)."""
  return "" if value is None or isnan(value) else f"{value:.{digits}f}"


def times(value, digits=2):
  """A factor, ``25.0x``; empty for a missing value."""
  return "" if value is None or isnan(value) else f"{value:.{digits}f}x"


def percent(ratio):
  """A ratio as a signed change, ``1.006`` -> ``+0.6%``."""
  return f"{100 * (ratio - 1):+.1f}%"


def us(value):
  """Microseconds, ``12.3 µs``; empty for a missing value."""
  return "" if value is None or isnan(value) else f"{value:.1f} µs"


def kib(num_bytes):
  return f"{num_bytes / 1024:,.0f} KiB"


def table(header, rows):
  """A Markdown table's lines: ``header`` cells, then one line per row of cells."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return lines
