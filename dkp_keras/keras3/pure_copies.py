"""Pure functions the tf_keras front end keeps inside TensorFlow modules: copies.

`dkp_keras.cmr`, `dkp_keras.compression` and `dkp_keras.annealing` import
tf_keras and tfmot at module level, so the Keras 3 front end cannot import the
pure helpers they hold. These are verbatim copies (the source is named on each)
until they move into pure modules that both front ends import; then this module
goes away.
"""

from __future__ import annotations

import math

import numpy as np

# From dkp_keras.cmr.
GRANULARITIES = ("matrix", "row", "block")
SCALINGS = ("none", "inverted")
DECAYS = ("linear", "cosine", "constant")


def check_cmr_options(granularity, scaling):  # dkp_keras.cmr.check_cmr_options
  if granularity not in GRANULARITIES:
    raise ValueError(f"unknown CMR granularity {granularity!r}; choose one of {GRANULARITIES}")
  if scaling not in SCALINGS:
    raise ValueError(f"unknown CMR scaling {scaling!r}; choose one of {SCALINGS}")


def scheduled_rate(step, rate, final_rate=0.0, begin_step=0, end_step=None, decay="linear"):
  """The CMR rate at ``step`` (dkp_keras.cmr.scheduled_rate).

  >>> scheduled_rate(50, 0.5, 0.0, 0, 100)
  0.25
  """
  if decay == "constant" or end_step is None:
    return float(rate)
  if step <= begin_step:
    return float(rate)
  if step >= end_step:
    return float(final_rate)
  progress = (step - begin_step) / (end_step - begin_step)
  if decay == "cosine":
    progress = 0.5 * (1.0 - math.cos(math.pi * progress))
  return float(rate + (final_rate - rate) * progress)


def doping_counts(owners):  # dkp_keras.compression.doping_counts
  """(nonzeros, budgeted nonzeros, entries) over every S of the DKP layers or cells ``owners``."""
  nnz = max_nnz = size = 0
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      values = matrix.doping_values()
      if values is not None:
        nnz += int(np.count_nonzero(values))
        max_nnz += matrix.plan.doping_max_nnz
        size += values.size
  return nnz, max_nnz, size


def format_density(nnz, size):  # dkp_keras.compression.format_density
  """``"12.5% dense (1000 of 8000 entries)"``: how a doping matrix's fill is reported."""
  return f"{100.0 * nnz / size:.2f}% dense ({nnz} of {size} entries)" if size else "empty"


def target_compression(owners):  # dkp_keras.compression._target_compression
  """The compression the DKP layers or cells ``owners`` were asked for, together."""
  targets = {owner.compression for owner in owners}
  if len(targets) == 1:
    return targets.pop()
  dense = [sum(m.structure.m * m.structure.n for m in owner.doped_matrices.values())
           for owner in owners]
  return sum(dense) / sum(d / owner.compression for d, owner in zip(dense, owners))


MISSED_TARGET_ACTIONS = ("prune", "raise")  # dkp_keras.annealing


def missed_target_message(missed):  # dkp_keras.annealing._missed_target_message
  lines = [f"  {name}: S {format_density(nnz, size)}, its target needs at most "
           f"{format_density(max_nnz, size)}" for name, nnz, max_nnz, size in missed]
  return ("the doped layers below are denser than their compression allows (training stopped "
          "before the annealing's end_step, or the annealing ended before S's values differed: "
          "train at least end_step steps, or anneal over fewer):\n" + "\n".join(lines))
