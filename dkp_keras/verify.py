"""Normwise numerical comparison: the check used by tests and by conversion.

Elementwise relative tolerances fail even between two float32 computations of
the same product (cancellation makes some entries tiny); compare against the
size of the whole reference instead.
"""

from __future__ import annotations

import numpy as np


def normwise_error(actual, reference):
  """``max|actual - reference| / max|reference|`` (absolute when the reference is 0).

  >>> normwise_error([1.0, 2.0], [1.0, 2.002])
  0.000999...
  """
  actual = np.asarray(actual, dtype=np.float64)
  reference = np.asarray(reference, dtype=np.float64)
  if actual.shape != reference.shape:
    raise ValueError(f"shapes differ: {actual.shape} vs {reference.shape}")
  if not reference.size:
    return 0.0
  scale = float(np.max(np.abs(reference)))
  diff = float(np.max(np.abs(actual - reference)))
  return diff / scale if scale > 0 else diff


def assert_normwise_close(actual, reference, tol=1e-5):
  """Raises AssertionError when ``normwise_error(actual, reference) > tol``."""
  error = normwise_error(actual, reference)
  if not error <= tol:
    raise AssertionError(f"normwise error {error:.3g} exceeds {tol:.3g}")
  return error
