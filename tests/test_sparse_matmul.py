"""S kernels for TFLite: each computes x @ S; the auto rule picks what TFLite runs fast."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from tflite_ops import sparse_matmul


def block_sparse(n, m, density, block=(4, 1), seed=0):
  rng = np.random.default_rng(seed)
  bh, bw = block
  keep = rng.random((-(-n // bh), -(-m // bw))) < density
  mask = np.kron(keep, np.ones(block))[:n, :m]
  return (rng.normal(size=(n, m)) * mask).astype(np.float32)


@settings(max_examples=15)
@given(n=st.integers(1, 13), m=st.integers(1, 9), batch=st.integers(1, 3),
       method=st.sampled_from(["block", "csr", "gather", "dense"]), seed=st.integers(0, 99))
def test_every_kernel_computes_x_times_s(n, m, batch, method, seed):
  kernel = block_sparse(n, m, 0.4, seed=seed)
  if not kernel.any():
    kernel[0, 0] = 1.0
  x = np.random.default_rng(seed).normal(size=(batch, n)).astype(np.float32)
  y = sparse_matmul.sparse_matmul(tf.constant(x), kernel, method).numpy()
  # float32 summation error is bounded by the sum of |terms|, not by |result|
  bound = 1e-5 * (np.abs(x) @ np.abs(kernel)) + 1e-12
  assert np.all(np.abs(y - x.astype(np.float64) @ kernel) <= bound)


def test_block_alignment():
  assert sparse_matmul.is_block_aligned(block_sparse(37, 20, 0.3))      # edge block partial
  assert not sparse_matmul.is_block_aligned(block_sparse(36, 20, 0.3, block=(1, 4)))
  assert sparse_matmul.is_block_aligned(np.zeros((5, 5)))


@pytest.mark.parametrize("kernel, expected", [
    (block_sparse(64, 32, 0.05), "block"),                     # 1x4 blocks: fast sparse FC
    (block_sparse(64, 32, 0.15), "block"),
    (block_sparse(64, 32, 0.05, block=(1, 4)), "csr"),         # wrong orientation: unstructured
    (block_sparse(200, 100, 0.01, block=(1, 1)), "csr"),       # random
    (block_sparse(200, 100, 0.06, block=(1, 1)), "csr"),
    (block_sparse(200, 100, 0.3, block=(1, 1)), "dense"),      # too dense for CSR to pay
    (np.zeros((8, 8), np.float32), "none"),                    # pruned away
])
def test_auto_rule(kernel, expected):
  assert sparse_matmul.choose_kernel(kernel) == expected


def test_auto_rule_without_csr_falls_back_to_dense():
  random = block_sparse(200, 100, 0.04, block=(1, 1))
  assert sparse_matmul.choose_kernel(random, csr=False) == "dense"
  assert sparse_matmul.choose_kernel(block_sparse(64, 32, 0.05), csr=False) == "block"
  very_sparse = block_sparse(200, 100, 0.01, block=(1, 1))   # the converter pads it into 1x4
  assert sparse_matmul.choose_kernel(very_sparse, csr=False) == "block"


def test_unknown_kernel_is_rejected():
  with pytest.raises(ValueError, match="unknown sparse kernel"):
    sparse_matmul.sparse_matmul(tf.ones((1, 4)), np.eye(4, dtype=np.float32), "sparse")
