"""Co-matrix dropout (CMR), the layer side, in `keras.ops` (see `dkp_keras.cmr`).

The mask of S's [in, out] kernel is drawn once per forward pass: one scalar
('matrix'), one entry per output ('row', the default) or one per ``block_size``
block ('block'); inference never masks. `CoMatrixDropout`
(`dkp_keras.keras3.callbacks`) schedules the rate.
"""

from __future__ import annotations

import keras
from keras import ops


def keep_mask(rate, kernel_shape, granularity, scaling, seed_generator, block_size=(1, 1)):
  """A 0/1 mask (scaled by ``1/(1-rate)`` for ``scaling='inverted'``) for S of shape (n, m).

  Args:
    rate: the drop probability, a scalar tensor or variable.
    kernel_shape: (n, m), S's Keras kernel shape.
    granularity: 'matrix', 'row' or 'block'.
    scaling: 'none' or 'inverted'.
    seed_generator: the layer's `keras.random.SeedGenerator`.
    block_size: the blocks of 'block' granularity.
  """
  n, m = kernel_shape
  rate = ops.cast(rate, "float32")
  if granularity == "block":
    rows, cols = block_size
    draw = keras.random.uniform((-(-n // rows), -(-m // cols)), seed=seed_generator)
    keep = ops.cast(draw >= rate, "float32")
    keep = ops.repeat(ops.repeat(keep, rows, axis=0), cols, axis=1)[:n, :m]
  else:
    shape = () if granularity == "matrix" else (1, m)
    keep = ops.cast(keras.random.uniform(shape, seed=seed_generator) >= rate, "float32")
  if scaling == "inverted":
    keep = keep / ops.maximum(1.0 - rate, 1e-6)
  return keep
