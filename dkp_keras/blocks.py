"""The block grid of a sparse matrix: pure numpy, no TensorFlow.

S is pruned, scored, counted and stored in ``block_size`` blocks of its Keras
[in, out] kernel: ``(4, 1)`` is 4 consecutive inputs of one output, TFLite's
fast "1x4" sparse FULLY_CONNECTED layout. A matrix whose sides are not
multiples of the block is zero-padded to whole blocks.

>>> import numpy as np
>>> kernel = np.array([[0., 1.], [0., 2.], [3., 0.], [0., 0.]])
>>> kept_blocks(kernel, (2, 1))
2
>>> keep_top_blocks(kernel, 1, (2, 1)).tolist()
[[0.0, 1.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

import math

import numpy as np

POOLINGS = ("AVG", "MAX")


def grid_shape(shape, block_size):
  """(block rows, block columns) of an [n, m] matrix cut into ``block_size`` blocks.

  >>> grid_shape((10, 3), (4, 1))
  (3, 3)
  """
  (n, m), (bh, bw) = shape, block_size
  return -(-n // bh), -(-m // bw)


def padded_shape(shape, block_size):
  """The [n, m] ``shape`` rounded up to whole ``block_size`` blocks."""
  (rows, cols), (bh, bw) = grid_shape(shape, block_size), block_size
  return rows * bh, cols * bw


def pad_to_blocks(matrix, block_size):
  """``matrix`` zero-padded at its ends to whole ``block_size`` blocks."""
  matrix = np.asarray(matrix)
  padded = np.zeros(padded_shape(matrix.shape, block_size), dtype=matrix.dtype)
  padded[:matrix.shape[0], :matrix.shape[1]] = matrix
  return padded


def block_view(matrix, block_size):
  """``matrix`` zero-padded to whole blocks, as [block rows, bh, block cols, bw]."""
  padded = pad_to_blocks(matrix, block_size)
  (rows, cols), (bh, bw) = grid_shape(padded.shape, block_size), block_size
  return padded.reshape(rows, bh, cols, bw)


def from_block_view(view, shape):
  """The [n, m] matrix of ``shape`` whose `block_view` is ``view`` (padding cut off)."""
  rows, bh, cols, bw = view.shape
  return view.reshape(rows * bh, cols * bw)[:shape[0], :shape[1]]


def expand_blocks(block_values, block_size, shape, ops=np):
  """A per-block array repeated over each block's entries, cut to ``shape``.

  ``ops`` is ``np`` (default), ``tf`` or ``keras.ops``: the same for a tensor of block values.
  """
  bh, bw = block_size
  values = np.asarray(block_values) if ops is np else block_values
  full = ops.repeat(ops.repeat(values, bh, axis=0), bw, axis=1)
  return full[:shape[0], :shape[1]]


def kept_blocks(kernel, block_size):
  """Number of ``block_size`` blocks of a Keras [in, out] kernel with a nonzero."""
  return int(block_view(np.asarray(kernel) != 0, block_size).any(axis=(1, 3)).sum())


def block_scores(matrix, block_size, pooling="AVG"):
  """Each block's mean (``"AVG"``) or largest (``"MAX"``) absolute value."""
  if pooling not in POOLINGS:
    raise ValueError(f"block pooling must be one of {POOLINGS}, got {pooling!r}")
  magnitudes = np.abs(block_view(np.asarray(matrix, dtype=np.float64), block_size))
  return magnitudes.mean(axis=(1, 3)) if pooling == "AVG" else magnitudes.max(axis=(1, 3))


def kept_block_count(shape, block_size, sparsity):
  """Blocks of an [n, m] matrix kept at ``sparsity`` (tfmot rounds the kept count alike).

  >>> kept_block_count((8, 2), (4, 1), 0.75)
  1
  """
  return int(round(math.prod(grid_shape(shape, block_size)) * (1.0 - sparsity)))


def top_blocks_mask(matrix, keep, block_size, pooling="AVG"):
  """Boolean mask of ``matrix``'s ``keep`` highest-scored blocks (the mask
  `keep_top_blocks` applies): a kept block stays kept even where its entries are zero.

  Ties are broken towards earlier blocks, so the result is deterministic.
  """
  matrix = np.asarray(matrix)
  scores = block_scores(matrix, block_size, pooling)
  if not 0 <= keep <= scores.size:
    raise ValueError(f"keep must be in [0, {scores.size}] blocks, got {keep}")
  kept = np.zeros(scores.size, dtype=bool)
  # Stable sort of the negated scores: among equal scores the earlier block wins.
  kept[np.argsort(-scores, axis=None, kind="stable")[:keep]] = True
  return expand_blocks(kept.reshape(scores.shape), block_size, matrix.shape)


def keep_top_blocks(matrix, keep, block_size, pooling="AVG"):
  """``matrix`` with only its ``keep`` highest-scored blocks (magnitude pruning in blocks)."""
  matrix = np.asarray(matrix)
  return np.where(top_blocks_mask(matrix, keep, block_size, pooling), matrix,
                  np.zeros_like(matrix))
