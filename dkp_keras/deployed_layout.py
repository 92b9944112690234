"""How a deployed TFLite file stores a sparse weight: the kernel rule and its bytes.

Pure numpy, shared by the accounting (`dkp_keras.compression`) and the
lowering (`tflite_ops`), so the sizes the report gives are the sizes of the
file `pipelines.convert` writes. A sparse weight (S, or a plain kernel that
magnitude pruning left at least half zeros) is stored, by ``choose_kernel``:

- ``block``: TFLite's 1x4 block-sparse FULLY_CONNECTED weight (Keras (4, 1)
  blocks: 4 consecutive inputs of one output): every kept block's values
  (zeros inside included), one index per block, one segment offset per row;
- ``csr``: TFLite's unstructured sparse weight, one value and one index per
  nonzero, one offset per row;
- ``dense``: all entries; ``none``: an all-zero S, no op at all.

Index vectors take the narrowest unsigned type that holds their values
(uint8 / uint16 / int32, TFLite's `SparseIndexVector` choices).

>>> import numpy as np
>>> s = np.zeros((64, 32), np.float32); s[:4, 0] = 1.0
>>> choose_kernel(s), stored_bytes(s)
('block', 50)
"""

from __future__ import annotations

import numpy as np

from dkp_keras import blocks

FLOAT_BYTES = 4
# Unstructured S up to this density runs the CSR FC: below the density where
# the CSR FC stops beating dense (with XNNPack) on the benchmark hosts, with a
# margin, as hosts differ (`python -m benchmarks.sparse_kernels`;
# see the results page docs/results.md).
CSR_MAX_DENSITY = 0.08
# Below this density the converter stores unstructured S in zero-padded 1x4
# blocks (above, it densifies it at load): 'block' where CSR is not allowed.
RANDOM_SPARSE_MAX_DENSITY = 0.03
# The 1x4 block-sparse FC beats dense (with XNNPack, LiteRT's default) below
# this density (`python -m benchmarks.sparse_kernels`; see the results page
# docs/results.md).
BLOCK_MAX_DENSITY = 0.2
# TFLite's optimized sparse FC kernel: blocks of 4 consecutive inputs = Keras (4, 1).
FAST_BLOCK = (4, 1)


def is_block_aligned(kernel, block_size=FAST_BLOCK):
  """Whether every ``block_size`` block of the [n, m] kernel is all zero or all nonzero.

  That is: the nonzero pattern is a union of whole blocks (edge blocks count
  only their cells inside the kernel).
  """
  kernel = np.asarray(kernel)
  counts = blocks.block_view(kernel != 0, block_size).sum(axis=(1, 3))
  capacity = blocks.block_view(np.ones(kernel.shape, bool), block_size).sum(axis=(1, 3))
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


def is_pruned(kernel):
  """Whether a plain layer's kernel is at least half zeros, as magnitude pruning leaves it:
  it is then counted by its nonzeros and deployed as a sparse weight."""
  kernel = np.asarray(kernel)
  return kernel.ndim == 2 and np.count_nonzero(kernel) <= kernel.size // 2


def index_bytes(max_value):
  """Bytes per entry of a TFLite sparse index vector holding values <= max_value."""
  if max_value < 2 ** 8:
    return 1
  if max_value < 2 ** 16:
    return 2
  return 4


def sparse_bytes(kernel, block_size):
  """Bytes of S stored as a TFLite block-sparse weight (values + indices + segments).

  The TFLite weight is [out, in]: rows dense, the input axis compressed in
  blocks (a Keras (4, 1) block is TFLite's 1x4).
  """
  bh, bw = block_size
  input_blocks, rows = blocks.grid_shape(kernel.shape, block_size)
  kept = blocks.kept_blocks(kernel, block_size)
  values = kept * bh * bw * FLOAT_BYTES
  indices = kept * index_bytes(input_blocks - 1)
  segments = (rows + 1) * index_bytes(kept)
  return values + indices + segments


def stored_bytes(kernel, csr=True):
  """Bytes of a float32 [n, m] Keras kernel stored with its ``choose_kernel`` kernel."""
  kernel = np.asarray(kernel)
  kind = choose_kernel(kernel, csr)
  if kind == "none":
    return 0
  if kind == "block":
    return sparse_bytes(kernel, FAST_BLOCK)
  if kind == "csr":
    return sparse_bytes(kernel, (1, 1))
  return kernel.size * FLOAT_BYTES
