"""The doping matrix S as TFLite builtin ops: block-sparse FC, CSR FC, gather kernel, or dense.

Kernels (``x @ S`` for ``x`` (batch, n) and S the Keras [n, m] kernel):

- ``block``: ``x @ S`` as a FULLY_CONNECTED with a constant weight; with
  ``Optimize.EXPERIMENTAL_SPARSITY`` the converter stores it sparse. S in
  (4, 1) Keras blocks (4 consecutive inputs of one output) becomes TFLite's
  1x4 block-sparse weight, which the optimized sparse kernel runs ~9x faster
  than dense at 4% density; unstructured S is stored sparse only below ~3.5%
  density (above, it is densified at load and runs at dense speed).
- ``gather``: GATHER + MUL + UNSORTED_SEGMENT_SUM over S's nonzeros: works
  for any pattern, but measured ~1 ms at 4% density on a 2600x1300 matrix.
- ``dense``: a plain dense FULLY_CONNECTED (convert without the sparsity
  optimization to keep it dense).

``choose_kernel`` is the ``auto`` rule, backed by measurements (DESIGN.md and
`benchmarks/sparse_kernels.py`; 2-vCPU x86, 1 thread): block-aligned S below
``BLOCK_MAX_DENSITY`` -> ``block``; other S up to ``CSR_MAX_DENSITY`` ->
``csr``; otherwise ``dense``. The gather kernel is never the fastest there;
it is kept for patterns and runtimes where the sparse FC path is missing.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

KERNELS = ("auto", "block", "csr", "gather", "dense")
# Unstructured S up to this density runs the CSR FC. 1300 -> 2600, 1 thread,
# medians against dense with XNNPack (`results/sparse_kernels_csr.json`):
# 1% 13.5x, 2% 9.0x, 4% 4.8x, 10% 1.85x, 20% 0.89x, on a host where XNNPack's
# dense FC was no faster than the builtin one (571 vs 549 µs). On the host of
# `sparse_kernels.json` it was 1.8x faster (178 vs 320 µs), which would move
# the break-even near 10%: the limit keeps a margin.
CSR_MAX_DENSITY = 0.08
# Below this density the converter stores unstructured S in zero-padded 1x4
# blocks (above, it densifies it at load): 'block' where CSR is not allowed.
RANDOM_SPARSE_MAX_DENSITY = 0.03
# 1x4 block-sparse FC beats dense below this density. 1300 -> 2600, 1 thread,
# medians (`python -m benchmarks.sparse_kernels`): against dense with XNNPack
# (LiteRT's default) 4% 5.4x, 10% 2.3x, 20% 1.12x, 30% 0.72x; against the
# builtin dense kernel 4% 9.1x, 10% 3.6x, 20% 1.7x, 30% 1.16x, 40% 0.81x.
BLOCK_MAX_DENSITY = 0.2
# TFLite's optimized sparse FC kernel: blocks of 4 consecutive inputs = Keras (4, 1).
FAST_BLOCK = (4, 1)


def is_block_aligned(kernel, block_size=FAST_BLOCK):
  """Whether every ``block_size`` block of the [n, m] kernel is all zero or all nonzero.

  That is: the nonzero pattern is a union of whole blocks (edge blocks count
  only their cells inside the kernel).
  """
  bh, bw = block_size
  n, m = kernel.shape
  nonzero = np.zeros((math.ceil(n / bh) * bh, math.ceil(m / bw) * bw), dtype=bool)
  nonzero[:n, :m] = kernel != 0
  blocks = nonzero.reshape(nonzero.shape[0] // bh, bh, nonzero.shape[1] // bw, bw)
  counts = blocks.sum(axis=(1, 3))
  full = np.zeros_like(nonzero)
  full[:n, :m] = True
  capacity = full.reshape(blocks.shape).sum(axis=(1, 3))
  return bool(np.all((counts == 0) | (counts == capacity)))


def density(kernel):
  kernel = np.asarray(kernel)
  return float(np.count_nonzero(kernel)) / kernel.size if kernel.size else 0.0


def choose_kernel(kernel, csr=True):
  """The ``auto`` choice for one S: 'block' for S in whole 1x4 blocks, 'csr' for other
  sparse S (unless ``csr=False``: int8 weights have no CSR kernel), else 'dense'."""
  if not np.any(kernel):
    return "none"
  fill = density(kernel)
  if fill <= BLOCK_MAX_DENSITY and is_block_aligned(kernel):
    return "block"
  if csr and fill <= CSR_MAX_DENSITY:
    return "csr"
  if not csr and fill < RANDOM_SPARSE_MAX_DENSITY:
    return "block"
  return "dense"


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
    # is not a multiple of 4 (measured: 37 -> 64 at 5% density, 85% error), and
    # the converter may sparsify any constant weight: pad the inputs to a multiple of 4.
    pad = -kernel.shape[0] % 4
    if pad:
      kernel = np.concatenate([kernel, np.zeros((pad, kernel.shape[1]), np.float32)])
    weight = tf.constant(kernel)
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
