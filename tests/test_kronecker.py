"""Tests for dkp_keras.kronecker: KP matmul, factor-shape choice, nearest KP.

Pure numpy except one small TensorFlow check of `kron_matmul(..., ops=tf)`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dkp_keras import kronecker
from dkp_keras.kronecker import KroneckerShape

dims = st.integers(1, 6)
batches = st.integers(1, 5)
seeds = st.integers(0, 2**32 - 1)


def _assert_close_normwise(y, ref, rtol):
  """|y - ref| <= rtol * max|ref| + rtol * |ref| elementwise (normwise scale)."""
  y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
  assert y.shape == ref.shape
  scale = np.max(np.abs(ref)) if ref.size else 0.0
  bound = rtol * scale + rtol * np.abs(ref)
  excess = np.abs(y - ref) - bound
  assert np.all(excess <= 0), f"max excess {excess.max()} (rtol {rtol}, max|ref| {scale})"


def _brute_force_candidates(m, n, max_padding):
  """Every (m1, n1, m2, n2) with m <= m1*m2 <= m+p and n <= n1*n2 <= n+p."""
  row_pairs = [(m1, m2) for m1 in range(1, m + max_padding + 1)
               for m2 in range(1, m + max_padding + 1) if m <= m1 * m2 <= m + max_padding]
  col_pairs = [(n1, n2) for n1 in range(1, n + max_padding + 1)
               for n2 in range(1, n + max_padding + 1) if n <= n1 * n2 <= n + max_padding]
  return [(m1, n1, m2, n2) for m1, m2 in row_pairs for n1, n2 in col_pairs]


def _formula_rank(m, n, m1, n1, m2, n2):
  # rank(A ⊗ B) = rank(A) rank(B), and the used block is only m x n.
  return min(min(m1, n1) * min(m2, n2), m, n)


# --------------------------------------------------------------------------- kron_matmul


@given(m1=dims, n1=dims, m2=dims, n2=dims, batch=batches, seed=seeds)
def test_kron_matmul_matches_dense_float64(m1, n1, m2, n2, batch, seed):
  rng = np.random.default_rng(seed)
  a, b = rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))
  x = rng.standard_normal((batch, n1 * n2))
  y = kronecker.kron_matmul(x, a, b)
  assert y.shape == (batch, m1 * m2)
  _assert_close_normwise(y, x @ np.kron(a, b).T, rtol=1e-12)


def _float32_problem(m1, n1, m2, n2, batch, seed):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((m1, n1)).astype(np.float32)
  b = rng.standard_normal((m2, n2)).astype(np.float32)
  x = rng.standard_normal((batch, n1 * n2)).astype(np.float32)
  return x, a, b


@given(m1=dims, n1=dims, m2=dims, n2=dims, batch=batches, seed=seeds)
def test_kron_matmul_matches_dense_float32(m1, n1, m2, n2, batch, seed):
  x, a, b = _float32_problem(m1, n1, m2, n2, batch, seed)
  y = kronecker.kron_matmul(x, a, b)
  assert y.dtype == np.float32
  ref = x.astype(np.float64) @ np.kron(a.astype(np.float64), b.astype(np.float64)).T
  _assert_close_normwise(y, ref, rtol=1e-5)


@settings(max_examples=5)
@given(m1=dims, n1=dims, m2=dims, n2=dims, batch=batches, seed=seeds)
def test_kron_matmul_with_tf_ops(m1, n1, m2, n2, batch, seed):
  x, a, b = _float32_problem(m1, n1, m2, n2, batch, seed)
  y = kronecker.kron_matmul(tf.constant(x), tf.constant(a), tf.constant(b), ops=tf)
  assert isinstance(y, tf.Tensor)
  ref = x.astype(np.float64) @ np.kron(a.astype(np.float64), b.astype(np.float64)).T
  _assert_close_normwise(y.numpy(), ref, rtol=1e-5)


def test_kron_matmul_is_not_transposed_kron():
  # A non-square, asymmetric case where x @ kron(a, b) (no transpose) or
  # kron(b, a) would give a different answer.
  a = np.arange(6.0).reshape(2, 3)
  b = np.arange(8.0).reshape(4, 2) - 3.0
  x = np.arange(12.0).reshape(2, 6) / 7.0
  y = kronecker.kron_matmul(x, a, b)
  np.testing.assert_allclose(y, x @ np.kron(a, b).T, rtol=1e-12)
  assert not np.allclose(y, x @ np.kron(b, a).T)


# --------------------------------------------------------------------------- kron_dense


def test_kron_dense_crops_to_shape():
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 5))
  full = np.kron(a, b)
  np.testing.assert_array_equal(kronecker.kron_dense(a, b), full)
  cropped = kronecker.kron_dense(a, b, (5, 17))
  assert cropped.shape == (5, 17)
  np.testing.assert_array_equal(cropped, full[:5, :17])


def test_kron_dense_accepts_tensors():
  a, b = tf.ones((2, 2)), tf.eye(2)
  np.testing.assert_array_equal(kronecker.kron_dense(a, b, (3, 3)), np.kron(np.ones((2, 2)),
                                                                         np.eye(2))[:3, :3])


# --------------------------------------------------------------------------- KroneckerShape


def test_kronecker_shape_properties():
  s = KroneckerShape(2600, 650, m1=50, n1=25, m2=52, n2=26)
  assert s.a_shape == (50, 25) and s.b_shape == (52, 26)
  assert s.padded_shape == (2600, 650)
  assert not s.is_padded
  assert s.params == 50 * 25 + 52 * 26
  assert s.rank == 650

  padded = KroneckerShape(37, 37, 8, 8, 5, 5)
  assert padded.is_padded and padded.padded_shape == (40, 40)
  assert padded.rank == 37  # capped by the used 37 x 37 block


@pytest.mark.parametrize("args", [
    (0, 4, 2, 2, 2, 2),
    (4, -1, 2, 2, 2, 2),
    (4, 4, 0, 2, 2, 2),
    (4, 4, 2, 2, 2, 0),
])
def test_kronecker_shape_rejects_non_positive(args):
  with pytest.raises(ValueError, match="positive integer"):
    KroneckerShape(*args)


@pytest.mark.parametrize("args", [
    (5, 4, 2, 2, 2, 2),   # 4 rows < 5
    (4, 5, 2, 2, 2, 2),   # 4 cols < 5
    (6, 6, 1, 1, 5, 6),   # 5 rows < 6
])
def test_kronecker_shape_rejects_too_small_product(args):
  with pytest.raises(ValueError, match="smaller than"):
    KroneckerShape(*args)


def test_kronecker_shape_is_frozen():
  s = KroneckerShape(4, 4, 2, 2, 2, 2)
  with pytest.raises(Exception):
    s.m1 = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- choose_kronecker_shape

small = st.integers(1, 40)


@st.composite
def shape_requests(draw):
  m, n = draw(small), draw(small)
  max_padding = draw(st.integers(0, 8))
  smallest = kronecker.smallest_kronecker_params(m, n, max_padding)
  # None, or a budget from a bit below the smallest feasible to the dense size.
  budget = draw(st.one_of(st.none(), st.integers(max(1, smallest - 3), max(smallest, m * n))))
  return m, n, budget, max_padding


@given(shape_requests())
def test_choose_kronecker_shape_properties(request):
  m, n, budget, max_padding = request
  candidates = [c for c in _brute_force_candidates(m, n, max_padding)
                if budget is None or c[0] * c[1] + c[2] * c[3] <= budget]
  if not candidates:
    with pytest.raises(ValueError, match="compression"):
      kronecker.choose_kronecker_shape(m, n, budget, max_padding=max_padding)
    return
  s = kronecker.choose_kronecker_shape(m, n, budget, max_padding=max_padding)
  assert (s.m, s.n) == (m, n)
  assert s.m1 * s.m2 >= m and s.n1 * s.n2 >= n
  assert s.m1 * s.m2 - m <= max_padding and s.n1 * s.n2 - n <= max_padding
  if budget is not None:
    assert s.params <= budget
  assert s.rank == _formula_rank(m, n, s.m1, s.n1, s.m2, s.n2)
  best_rank = max(_formula_rank(m, n, *c) for c in candidates)
  assert s.rank == best_rank
  # Among shapes of that rank: if an unpadded one exists, a padded choice must
  # save a clear share of parameters, and an unpadded choice is the smallest.
  unpadded = [c[0] * c[1] + c[2] * c[3] for c in candidates
              if c[0] * c[2] == m and c[1] * c[3] == n and _formula_rank(m, n, *c) == best_rank]
  if unpadded:
    if s.is_padded:
      assert s.params * kronecker.PADDING_PENALTY <= min(unpadded)
    else:
      assert s.params == min(unpadded)


@given(m=small, n=small)
def test_choose_kronecker_shape_without_padding_allowed_is_exact(m, n):
  s = kronecker.choose_kronecker_shape(m, n, max_padding=0)
  assert s.padded_shape == (m, n)


def test_choose_kronecker_shape_2600x1300():
  s = kronecker.choose_kronecker_shape(2600, 1300)
  assert not s.is_padded
  assert s.params == 3852
  assert s.rank == 1300
  assert {s.a_shape, s.b_shape} == {(50, 50), (52, 26)}


def test_choose_kronecker_shape_2600x650():
  s = kronecker.choose_kronecker_shape(2600, 650)
  assert not s.is_padded
  assert s.params == 2600
  assert s.rank == 650
  # Same answer under a budget that still allows it.
  assert kronecker.choose_kronecker_shape(2600, 650, max_params=2600) == s


def test_choose_kronecker_shape_pads_primes():
  s = kronecker.choose_kronecker_shape(37, 37)
  assert s.is_padded
  assert s.rank == 37
  # The only unpadded full-rank option is 1x1 ⊗ 37x37 (1370 parameters).
  assert s.params * 5 < 37 * 37
  assert max(s.padded_shape) <= 37 + 8


def test_choose_kronecker_shape_impossible_budget():
  smallest = kronecker.smallest_kronecker_params(37, 37)
  with pytest.raises(ValueError, match="compression"):
    kronecker.choose_kronecker_shape(37, 37, max_params=smallest - 1)
  assert kronecker.choose_kronecker_shape(37, 37, max_params=smallest).params == smallest


@pytest.mark.parametrize("m, n", [(0, 5), (5, 0), (-3, 5), (2.5, 4)])
def test_choose_kronecker_shape_rejects_bad_sizes(m, n):
  with pytest.raises(ValueError, match="positive integer"):
    kronecker.choose_kronecker_shape(m, n)


@given(m=st.integers(1, 24), n=st.integers(1, 24), seed=seeds)
def test_chosen_shape_reaches_its_rank_numerically(m, n, seed):
  # 9x10 once chose A 3x3 ⊗ B 3x4 (padded to 9x12): rank 8 after cropping, not 9.
  rng = np.random.default_rng(seed)
  s = kronecker.choose_kronecker_shape(m, n)
  a, b = rng.standard_normal(s.a_shape), rng.standard_normal(s.b_shape)
  assert np.linalg.matrix_rank(kronecker.kron_dense(a, b, (m, n))) >= s.rank
  assert s.rank == min(m, n) or s.is_padded


# --------------------------------------------------------------------------- nearest_kronecker


@given(m1=dims, n1=dims, m2=dims, n2=dims, seed=seeds)
def test_nearest_kronecker_recovers_exact_product(m1, n1, m2, n2, seed):
  rng = np.random.default_rng(seed)
  a0, b0 = rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))
  w = np.kron(a0, b0)
  shape = KroneckerShape(m1 * m2, n1 * n2, m1, n1, m2, n2)
  a, b = kronecker.nearest_kronecker(w, shape)
  assert a.shape == (m1, n1) and b.shape == (m2, n2)
  # Factors are only defined up to (s, 1/s): compare the products.
  _assert_close_normwise(np.kron(a, b), w, rtol=1e-10)


def _best_scaled_error(w, k):
  """min over alpha of ||W - alpha K||_F."""
  denom = np.sum(k * k)
  alpha = np.sum(w * k) / denom if denom > 0 else 0.0
  return np.linalg.norm(w - alpha * k)


@given(m1=dims, n1=dims, m2=dims, n2=dims, seed=seeds)
def test_nearest_kronecker_is_optimal_among_random_alternatives(m1, n1, m2, n2, seed):
  rng = np.random.default_rng(seed)
  w = rng.standard_normal((m1 * m2, n1 * n2))
  shape = KroneckerShape(m1 * m2, n1 * n2, m1, n1, m2, n2)
  a, b = kronecker.nearest_kronecker(w, shape)
  err = np.linalg.norm(w - np.kron(a, b))
  tol = 1e-9 * (1.0 + np.linalg.norm(w))
  assert err <= np.linalg.norm(w) + tol  # never worse than the zero matrix
  for _ in range(10):
    # Other factors, optimally scaled.
    k = np.kron(rng.standard_normal(a.shape), rng.standard_normal(b.shape))
    assert err <= _best_scaled_error(w, k) + tol
    # Small perturbations of its own factors.
    eps = 10.0 ** rng.uniform(-4, -1)
    k = np.kron(a + eps * rng.standard_normal(a.shape), b + eps * rng.standard_normal(b.shape))
    assert err <= np.linalg.norm(w - k) + tol


def test_nearest_kronecker_padded_shape():
  rng = np.random.default_rng(1)
  shape = KroneckerShape(37, 37, 8, 8, 5, 5)  # padded to 40 x 40
  a0, b0 = rng.standard_normal(shape.a_shape), rng.standard_normal(shape.b_shape)
  w = kronecker.kron_dense(a0, b0, (37, 37)) + 0.01 * rng.standard_normal((37, 37))
  a, b = kronecker.nearest_kronecker(w, shape)
  assert a.shape == (8, 8) and b.shape == (5, 5)
  padded_w = np.zeros((40, 40))
  padded_w[:37, :37] = w
  # Optimal on the zero-padded problem: no worse than the true factors there.
  assert np.linalg.norm(padded_w - np.kron(a, b)) <= np.linalg.norm(padded_w - np.kron(a0, b0))
  # And the cropped product approximates W well (the padding costs ~20% here).
  rel = np.linalg.norm(kronecker.kron_dense(a, b, (37, 37)) - w) / np.linalg.norm(w)
  assert rel < 0.3
  # A random W is hardly compressible: rel error close to 1, but never above.
  noise = rng.standard_normal((37, 37))
  a, b = kronecker.nearest_kronecker(noise, shape)
  assert np.linalg.norm(kronecker.kron_dense(a, b, (37, 37)) - noise) <= np.linalg.norm(noise)


@pytest.mark.parametrize("w_shape", [(36, 37), (37, 36), (40, 40)])
def test_nearest_kronecker_rejects_wrong_shape(w_shape):
  shape = KroneckerShape(37, 37, 8, 8, 5, 5)
  with pytest.raises(ValueError, match="expects"):
    kronecker.nearest_kronecker(np.zeros(w_shape), shape)


def test_nearest_kronecker_of_zero_is_zero():
  shape = KroneckerShape(6, 4, 2, 2, 3, 2)
  a, b = kronecker.nearest_kronecker(np.zeros((6, 4)), shape)
  assert math.isclose(float(np.abs(np.kron(a, b)).max()), 0.0)


@pytest.mark.parametrize("value", [2.5, True, 0])
def test_kronecker_shape_rejects_non_positive_integers(value):
  with pytest.raises(ValueError, match="positive integer"):
    KroneckerShape(value, 2, 2, 2, 2, 2)
