"""Tests for the pure accounting functions of dkp_keras.compression."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import compression
from dkp_keras.compression import index_bytes, kept_blocks, sparse_bytes


@pytest.mark.parametrize("max_value, expected", [
    (0, 1), (1, 1), (255, 1),
    (256, 2), (65535, 2),
    (65536, 4), (2**31 - 1, 4),
])
def test_index_bytes_thresholds(max_value, expected):
  assert index_bytes(max_value) == expected


def test_kept_blocks_block_4x1_with_ragged_input_dim():
  # Keras kernel [in=6, out=3]; (4, 1) blocks: inputs 0-3 and 4-5 of each output,
  # 2 x 3 = 6 blocks in all (the second row of blocks is padded with 2 zeros).
  kernel = np.zeros((6, 3))
  assert kept_blocks(kernel, (4, 1)) == 0
  kernel[5, 0] = 1.0    # block (inputs 4-5, out 0)
  kernel[0, 2] = -2.0   # block (inputs 0-3, out 2) ...
  kernel[3, 2] = 0.5    # ... same block again
  assert kept_blocks(kernel, (4, 1)) == 2
  kernel[4, 2] = 1e-30  # tiny but nonzero: block (inputs 4-5, out 2)
  assert kept_blocks(kernel, (4, 1)) == 3
  assert kept_blocks(np.ones((6, 3)), (4, 1)) == 6


def test_kept_blocks_other_block_shapes():
  kernel = np.zeros((5, 7))
  kernel[0, 0] = kernel[0, 6] = kernel[4, 3] = 1.0
  # (1, 1): plain nonzero count.
  assert kept_blocks(kernel, (1, 1)) == 3
  # (1, 4): outputs 0-3 and 4-6 of each input row: (0, 0-3), (0, 4-6), (4, 0-3).
  assert kept_blocks(kernel, (1, 4)) == 3
  # (2, 2): (0-1, 0-1), (0-1, 6), (4, 2-3).
  assert kept_blocks(kernel, (2, 2)) == 3
  # (4, 1): (0-3, 0), (0-3, 6), (4, 3).
  assert kept_blocks(kernel, (4, 1)) == 3
  # (8, 8): one block covers everything.
  assert kept_blocks(kernel, (8, 8)) == 1


@given(n=st.integers(1, 20), m=st.integers(1, 20),
       block=st.sampled_from([(4, 1), (1, 4), (1, 1), (2, 2), (3, 5)]),
       seed=st.integers(0, 2**32 - 1))
def test_kept_blocks_matches_loop(n, m, block, seed):
  rng = np.random.default_rng(seed)
  kernel = rng.standard_normal((n, m)) * (rng.random((n, m)) < 0.2)
  bh, bw = block
  expected = sum(
      bool(np.any(kernel[i:i + bh, j:j + bw])) for i in range(0, n, bh) for j in range(0, m, bw))
  assert kept_blocks(kernel, block) == expected
  assert kept_blocks(kernel, block) <= math.ceil(n / bh) * math.ceil(m / bw)


def test_sparse_bytes_small_example():
  kernel = np.zeros((6, 3))
  kernel[5, 0] = 1.0
  kernel[0, 2] = kernel[3, 2] = 2.0
  # 2 kept (4, 1) blocks:
  #   values   = 2 blocks * 4 elems * 4 bytes               = 32
  #   indices  = 2 blocks * index_bytes(ceil(6/4) = 2) = 1  =  2
  #   segments = (3 rows + 1) * index_bytes(2 blocks) = 1   =  4
  #                                                    total = 38
  assert sparse_bytes(kernel, (4, 1)) == 38


def test_sparse_bytes_two_byte_indices():
  kernel = np.zeros((1100, 300))
  kernel[np.arange(300) * 3, np.arange(300)] = 1.0  # one (4, 1) block per output
  # 300 kept blocks; ceil(1100/4) = 275 block columns:
  #   values   = 300 * 4 * 4                      = 4800
  #   indices  = 300 * index_bytes(275) = 300 * 2 =  600
  #   segments = (300 + 1) * index_bytes(300) = 2 =  602
  #                                         total = 6002
  assert kept_blocks(kernel, (4, 1)) == 300
  assert sparse_bytes(kernel, (4, 1)) == 6002


def test_sparse_bytes_empty_and_dense():
  assert sparse_bytes(np.zeros((8, 2)), (4, 1)) == 0 + 0 + 3 * 1
  # Dense 8x2 in (1, 1) blocks: 16 * 4 + 16 * index_bytes(8) + 3 * index_bytes(16).
  assert sparse_bytes(np.ones((8, 2)), (1, 1)) == 64 + 16 + 3


def test_sparse_bytes_counts_zeros_inside_kept_blocks():
  kernel = np.zeros((4, 1))
  kernel[0, 0] = 1.0
  assert sparse_bytes(kernel, (4, 1)) == sparse_bytes(np.ones((4, 1)), (4, 1))
  assert sparse_bytes(kernel, (4, 1)) == 4 * compression.FLOAT_BYTES + 1 + 2


def test_sparse_bytes_index_width_at_boundary():
  kernel = np.zeros((1024, 1))
  kernel[::4, 0] = 1.0  # 256 blocks, indices 0..255 (uint8), segments [0, 256] (uint16)
  assert sparse_bytes(kernel, (4, 1)) == 256 * 16 + 256 * 1 + 2 * 2


def test_report_refuses_an_unbuilt_model():
  model = keras.Sequential([dkp.DopedDense(8, compression=4)])
  with pytest.raises(ValueError, match="needs a built model"):
    dkp.compression_report(model)


def test_report_meets_target_column():
  inputs = keras.Input((16,))
  x = dkp.DopedDense(16, compression=4)(inputs)
  model = keras.Model(inputs, keras.layers.Dense(4)(x))
  report = dkp.compression_report(model).set_index("layer")
  assert report["meets_target"].all()  # S starts at zero
  doped = model.layers[1]
  doped.matrix.doping.assign(np.ones(doped.matrix.doping.shape, np.float32))
  report = dkp.compression_report(model).set_index("layer")
  assert not report.loc[doped.name, "meets_target"]
  assert report.loc["dense", "meets_target"]
  assert not report.loc["total", "meets_target"]
  warning = compression.missed_target_warning(report.reset_index())
  assert doped.name in warning and "4x asked" in warning and "100.00% dense" in warning
  doped.matrix.doping.assign(np.zeros(doped.matrix.doping.shape, np.float32))
  assert compression.missed_target_warning(dkp.compression_report(model)) is None
