"""The nonzeros each doping matrix S may keep: counted, reported and enforced.

A DKP layer's plan budgets S's nonzeros (``plan.doping_max_nnz``) so that the
whole layer meets its compression; an S with more misses its target. Pure
numpy over the layers' `doped_matrices` (duck typed: ``doping_values()``,
``plan``, ``doping.assign``), so both front ends, tf_keras and Keras 3, count
and enforce budgets with these functions.
"""

from __future__ import annotations

import warnings

import numpy as np

from dkp_keras import blocks

MISSED_TARGET_ACTIONS = ("prune", "raise")


def doping_counts(owners):
  """(nonzeros, budgeted nonzeros, entries) over every S of the DKP layers or cells ``owners``.

  The budget is what the layers' compression factors allow (their plans);
  an S with more nonzeros misses its target.
  """
  nnz = max_nnz = size = 0
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      values = matrix.doping_values()
      if values is not None:
        nnz += int(np.count_nonzero(values))
        max_nnz += matrix.plan.doping_max_nnz
        size += values.size
  return nnz, max_nnz, size


def format_density(nnz, size):
  """``"12.5% dense (1000 of 8000 entries)"``: how a doping matrix's fill is reported.

  >>> format_density(1000, 8000)
  '12.50% dense (1000 of 8000 entries)'
  """
  return f"{100.0 * nnz / size:.2f}% dense ({nnz} of {size} entries)" if size else "empty"


def target_compression(owners):
  """The compression the DKP layers or cells ``owners`` were asked for, together."""
  targets = {owner.compression for owner in owners}
  if len(targets) == 1:
    return targets.pop()
  dense = [sum(m.structure.m * m.structure.n for m in owner.doped_matrices.values())
           for owner in owners]
  return sum(dense) / sum(d / owner.compression for d, owner in zip(dense, owners))


def check_missed_target_action(on_missed_target):
  if on_missed_target not in MISSED_TARGET_ACTIONS:
    raise ValueError(f"on_missed_target must be one of {MISSED_TARGET_ACTIONS}, "
                     f"got {on_missed_target!r}")


def missed_target_message(missed):
  """What `enforce_budgets` says of ``missed``: (layer name, nnz, max nnz, entries) tuples."""
  lines = [f"  {name}: S {format_density(nnz, size)}, its target needs at most "
           f"{format_density(max_nnz, size)}" for name, nnz, max_nnz, size in missed]
  return ("the doped layers below are denser than their compression allows (training stopped "
          "before the annealing's end_step, or the annealing ended before S's values differed: "
          "train at least end_step steps, or anneal over fewer):\n" + "\n".join(lines))


def prune_to_budget(owners, pooling):
  """Keeps each S's highest-scored blocks (``pooling`` of their |values|), as many as its
  plan budgets."""
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      if matrix.doping is None:
        continue
      bh, bw = matrix.plan.block_size
      values = matrix.doping_values()
      if np.count_nonzero(values) > matrix.plan.doping_max_nnz:
        matrix.doping.assign(blocks.keep_top_blocks(
            values, matrix.plan.doping_max_nnz // (bh * bw), (bh, bw), pooling))


def enforce_budgets(doped_layers, on_missed_target, pooling_of):
  """`finalize`'s check: no S denser than its layer's compression allows goes unnoticed.

  Args:
    doped_layers: (layer, its doped DKP layers or cells) pairs.
    on_missed_target: ``"prune"`` brings such an S to its budget by magnitude
      (`prune_to_budget`) and warns naming the layers; ``"raise"`` raises.
    pooling_of: ``pooling_of(layer name)``, the block score (``"AVG"`` or ``"MAX"``) to
      prune that layer's S by.

  Raises:
    ValueError: with ``on_missed_target="raise"``, naming each layer over its budget.
  """
  missed = []
  for layer, owners in doped_layers:
    nnz, max_nnz, size = doping_counts(owners)
    if nnz > max_nnz:
      missed.append((layer.name, nnz, max_nnz, size))
      if on_missed_target == "prune":
        prune_to_budget(owners, pooling_of(layer.name))
  if missed:
    message = missed_target_message(missed)
    if on_missed_target == "raise":
      raise ValueError(message + "\n(finalize(model) prunes them to their targets instead)")
    # stacklevel 3: the warning points at the caller of finalize.
    warnings.warn(message + "\nfinalize pruned them to their targets by magnitude, without "
                  "training: fine-tune the model or anneal again to recover accuracy",
                  stacklevel=3)
