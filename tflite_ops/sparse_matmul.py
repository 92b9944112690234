"""The doping matrix S as TFLite builtin ops: block-sparse FC, CSR FC, gather kernel, or dense.

Imports TensorFlow (it builds graph ops).

Kernels (``x @ S`` for ``x`` (batch, n) and S the Keras [n, m] kernel):

- ``block``: ``x @ S`` as a FULLY_CONNECTED with a constant weight; with
  ``Optimize.EXPERIMENTAL_SPARSITY`` the converter stores it sparse. S in
  (4, 1) Keras blocks (4 consecutive inputs of one output) becomes TFLite's
  1x4 block-sparse weight, which the optimized sparse kernel
  (`FullyConnectedSparseWeight1x4`) runs; unstructured S is stored sparse
  only below ~3.5% density (the converter's block rule, see
  `tflite_ops.describe`; above, it is densified at load and runs at dense speed).
- ``csr``: a plain constant weight that `tflite_ops.sparse_fc_rewrite` stores
  as TFLite's unstructured (CSR) sparse weight after conversion.
- ``gather``: GATHER + MUL + UNSORTED_SEGMENT_SUM over S's nonzeros: works
  for any pattern and any runtime with those builtin ops.
- ``dense``: a plain dense FULLY_CONNECTED (convert without the sparsity
  optimization to keep it dense).

``choose_kernel`` is the ``auto`` rule (`dkp_keras.deployed_layout`), backed
by the kernel benchmark `benchmarks/sparse_kernels.py`: block-aligned S below
``BLOCK_MAX_DENSITY`` -> ``block``; other S up to ``CSR_MAX_DENSITY`` ->
``csr``; otherwise ``dense``. The gather kernel is never the fastest there;
it is kept for patterns and runtimes where the sparse FC path is missing.
The measured figures are in docs/results.md; the TFLite facts the rule rests
on in docs/architecture.md.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dkp_keras import blocks
# The auto rule and its constants live with the accounting, which counts the same bytes.
from dkp_keras.deployed_layout import (  # noqa: F401  pylint: disable=unused-import
    BLOCK_MAX_DENSITY, CSR_MAX_DENSITY, FAST_BLOCK, RANDOM_SPARSE_MAX_DENSITY, choose_kernel,
    density, is_block_aligned)
from tflite_ops.lowering_options import KERNELS


def sparse_matmul_fn(kernel, method):
  """A function ``x -> x @ kernel`` (2-D ``x``) with the chosen TFLite lowering of S.

  Its constants are created here, once: call it once per traced graph and
  reuse the function for every time step (an unrolled LSTM would otherwise
  embed S once per step and the converter would slow to a crawl).
  Returns None for ``method='none'`` (S pruned away: nothing to add).
  """
  kernel = np.asarray(kernel, np.float32)
  if method == "none":
    return None
  if method == "csr":
    # The CSR kernel is a plain loop over any input size: no padding. The
    # converter leaves this constant dense (or densifies it); the rewrite finds it.
    weight = tf.constant(kernel)
    return lambda x: tf.matmul(x, weight)
  if method in ("block", "dense"):
    # TFLite's sparse FULLY_CONNECTED gives wrong results when the input size
    # is not a multiple of 4, and the converter may sparsify any constant
    # weight: pad the inputs to a multiple of 4.
    padded = blocks.pad_to_blocks(kernel, FAST_BLOCK)
    pad = padded.shape[0] - kernel.shape[0]
    weight = tf.constant(padded)
    if not pad:
      return lambda x: tf.matmul(x, weight)
    return lambda x: tf.matmul(tf.pad(x, [[0, 0], [0, pad]]), weight)
  if method == "gather":
    rows, cols = np.nonzero(kernel)
    rows_t = tf.constant(rows.astype(np.int32))
    cols_t = tf.constant(cols.astype(np.int32))
    values = tf.constant(kernel[rows, cols])
    outputs = kernel.shape[1]

    def gather(x):
      products = tf.gather(x, rows_t, axis=1) * values
      return tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(products), cols_t, outputs))
    return gather
  raise ValueError(f"unknown sparse kernel {method!r}; choose one of {KERNELS}")


def sparse_matmul(x, kernel, method):
  """``x @ kernel`` for a 2-D ``x`` with the chosen TFLite lowering of S."""
  fn = sparse_matmul_fn(kernel, method)
  return None if fn is None else fn(x)
