"""Tests for dkp_keras.structures: structured matrices, budgets and doping plans."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dkp_keras import kronecker, structures
from dkp_keras.structures import HMDStructure, KroneckerStructure, LowRankStructure

STRUCTURE_CLASSES = (KroneckerStructure, LowRankStructure, HMDStructure)
BLOCK_SIZES = ((4, 1), (1, 4), (1, 1), (2, 2))

seeds = st.integers(0, 2**32 - 1)


def _random_weights(structure, rng, dtype=np.float64):
  return {name: rng.standard_normal(shape).astype(dtype)
          for name, shape in structure.weight_shapes.items()}


def _min_params(cls, m, n):
  """The fewest parameters any structure of this kind can have (independent of for_budget)."""
  if cls is KroneckerStructure:
    return kronecker.smallest_kronecker_params(m, n)
  return m + n  # rank 1 (HMD with no dense rows is rank-1 low-rank)


def _rms(x):
  x = np.asarray(x, np.float64)
  return float(np.sqrt(np.mean(x ** 2)))


@st.composite
def budget_requests(draw, max_dim=40):
  m, n = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
  budget = draw(st.integers(1, m * n))
  return m, n, budget


# --------------------------------------------------------------------------- structures


@pytest.mark.parametrize("cls", STRUCTURE_CLASSES, ids=lambda c: c.name)
@given(request=budget_requests(), seed=seeds)
def test_for_budget_structure_is_consistent(cls, request, seed):
  m, n, budget = request
  try:
    s = cls.for_budget(m, n, budget)
  except ValueError as e:
    assert "compression" in str(e)
    assert budget < _min_params(cls, m, n)
    return
  assert budget >= _min_params(cls, m, n)
  assert (s.m, s.n) == (m, n)
  assert 0 < s.params <= budget
  assert s.params == sum(math.prod(shape) for shape in s.weight_shapes.values())
  rng = np.random.default_rng(seed)
  weights = _random_weights(s, rng)
  dense = s.dense_matrix(weights)
  assert dense.shape == (m, n)
  x = rng.standard_normal((3, n))
  y = s.matmul(x, weights, ops=np)
  assert y.shape == (3, m)
  np.testing.assert_allclose(y, x @ dense.T, rtol=1e-10, atol=1e-10 * (1 + np.abs(y).max()))


@pytest.mark.parametrize("cls", STRUCTURE_CLASSES, ids=lambda c: c.name)
@settings(max_examples=4)
@given(request=budget_requests(max_dim=24), seed=seeds)
def test_structure_matmul_with_tf_ops(cls, request, seed):
  m, n, budget = request
  assume(budget >= _min_params(cls, m, n))
  try:
    s = cls.for_budget(m, n, budget)
  except ValueError:
    assume(False)
  rng = np.random.default_rng(seed)
  weights = _random_weights(s, rng, np.float32)
  x = rng.standard_normal((2, n)).astype(np.float32)
  y = s.matmul(tf.constant(x), {k: tf.constant(v) for k, v in weights.items()}, ops=tf)
  ref = x.astype(np.float64) @ s.dense_matrix(weights).astype(np.float64).T
  np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4 * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("cls", STRUCTURE_CLASSES, ids=lambda c: c.name)
@given(m=st.integers(34, 64), n=st.integers(34, 64), fraction=st.sampled_from([2, 4, 8]),
       target=st.sampled_from([0.01, 0.3, 2.0]))
def test_initial_values_have_target_rms(cls, m, n, fraction, target):
  s = cls.for_budget(m, n, m * n // fraction)
  rng = np.random.default_rng(0)
  values = s.initial_values(rng.standard_normal, target)
  assert set(values) == set(s.weight_shapes)
  for name, shape in s.weight_shapes.items():
    assert np.shape(values[name]) == tuple(shape)
  rms = _rms(s.dense_matrix(values))
  assert target / 1.5 <= rms <= target * 1.5, (s, rms, target)


@pytest.mark.parametrize("cls", STRUCTURE_CLASSES, ids=lambda c: c.name)
def test_initial_values_zero_target(cls):
  s = cls.for_budget(30, 20, 150)
  values = s.initial_values(np.random.default_rng(0).standard_normal, 0.0)
  assert not np.any(s.dense_matrix(values))


def test_kronecker_structure_padded():
  s = KroneckerStructure(37, 37, (8, 8), (5, 5))
  assert s.shape.is_padded
  rng = np.random.default_rng(0)
  weights = _random_weights(s, rng)
  x = rng.standard_normal((4, 37))
  np.testing.assert_allclose(s.matmul(x, weights), x @ s.dense_matrix(weights).T, rtol=1e-10)
  np.testing.assert_array_equal(s.dense_matrix(weights),
                                np.kron(weights["kron_a"], weights["kron_b"])[:37, :37])


def test_kronecker_structure_for_budget_docstring_example():
  s = KroneckerStructure.for_budget(2600, 650, max_params=10_000)
  assert s.weight_shapes == {"kron_a": (50, 26), "kron_b": (52, 25)}
  assert s.params == 2600


def test_kronecker_structure_explicit_factors_over_budget():
  with pytest.raises(ValueError, match="budget"):
    KroneckerStructure.for_budget(16, 16, 10, factor_shapes=((4, 4), (4, 4)))
  s = KroneckerStructure.for_budget(16, 16, 32, factor_shapes=((4, 4), (4, 4)))
  assert s.params == 32


def test_lowrank_for_budget_rank():
  assert LowRankStructure.for_budget(2600, 650, max_params=32_500).rank == 10
  # Never above full rank, however large the budget.
  assert LowRankStructure.for_budget(10, 4, max_params=10_000).rank == 4
  with pytest.raises(ValueError, match="compression"):
    LowRankStructure.for_budget(10, 4, max_params=13)
  with pytest.raises(ValueError, match="rank >= 1"):
    LowRankStructure(10, 4, 0)


def test_hmd_for_budget_example():
  s = HMDStructure.for_budget(2600, 650, max_params=67_600)
  assert (s.dense_rows, s.rank) == (52, 10)
  assert s.params <= 67_600
  with pytest.raises(ValueError, match="dense_rows"):
    HMDStructure(4, 4, 4, 1)  # all rows dense
  with pytest.raises(ValueError, match="rank >= 1"):
    HMDStructure(4, 4, 1, 0)


def test_hmd_without_dense_rows():
  s = HMDStructure(6, 5, 0, 2)
  rng = np.random.default_rng(0)
  weights = _random_weights(s, rng)
  assert weights["hmd_dense"].shape == (0, 5)
  x = rng.standard_normal((3, 5))
  np.testing.assert_allclose(s.matmul(x, weights), x @ s.dense_matrix(weights).T, rtol=1e-10)


def test_hmd_for_budget_falls_back_to_fewer_dense_rows():
  # HMDStructure(10, 2, dense_rows=0, rank=1) has 12 parameters.
  assert HMDStructure(10, 2, 0, 1).params == 12
  assert HMDStructure.for_budget(10, 2, 12).params <= 12


def test_structure_equality_and_repr():
  a = KroneckerStructure(16, 16, (4, 4), (4, 4))
  assert a == KroneckerStructure(16, 16, (4, 4), (4, 4))
  assert a != KroneckerStructure(16, 16, (2, 8), (8, 2))
  assert a != LowRankStructure(16, 16, 1)
  assert hash(LowRankStructure(5, 6, 2)) == hash(LowRankStructure(5, 6, 2))
  assert "rank=2" in repr(LowRankStructure(5, 6, 2))


# --------------------------------------------------------------------------- structure_class


@pytest.mark.parametrize("name, cls", [
    ("kronecker", KroneckerStructure), ("kp", KroneckerStructure), ("dkp", KroneckerStructure),
    ("lowrank", LowRankStructure), ("lmf", LowRankStructure), ("low_rank", LowRankStructure),
    ("hmd", HMDStructure),
])
def test_structure_class_names(name, cls):
  assert structures.structure_class(name) is cls


@pytest.mark.parametrize("name", ["svd", "", "Kronecker", None])
def test_structure_class_unknown(name):
  with pytest.raises(ValueError, match="kronecker, lowrank, hmd"):
    structures.structure_class(name)


# --------------------------------------------------------------------------- plan_doped_matrix


def _tfmot_kept_blocks(num_blocks, sparsity, dtype):
  """tfmot's pruning_impl rule: k = max(round(size * (1 - sparsity)), 1)."""
  size, s = dtype(num_blocks), dtype(sparsity)
  return int(max(np.round(size * (dtype(1) - s)), dtype(1)))


@st.composite
def plan_requests(draw):
  m, n = draw(st.integers(1, 150)), draw(st.integers(1, 150))
  compression = draw(st.floats(1.0, 60.0))
  max_params = m * n / compression
  if draw(st.booleans()):
    max_params = int(max_params)
  return dict(m=m, n=n, max_params=max_params,
              structure=draw(st.sampled_from(structures.STRUCTURES)),
              doped=draw(st.booleans()),
              block_size=draw(st.sampled_from(BLOCK_SIZES)))


@settings(max_examples=100)
@given(plan_requests())
def test_plan_doped_matrix_meets_budget(request):
  m, n, max_params = request["m"], request["n"], request["max_params"]
  cls = structures.structure_class(request["structure"])
  bh, bw = request["block_size"]
  block_elems = bh * bw
  share = int(max_params * 0.5) if request["doped"] else int(max_params)
  # Doped: the structure takes its share, or more when nothing fits in it, leaving S a block.
  structure_budget = share if not request["doped"] or _min_params(cls, m, n) <= share else (
      int(max_params) - block_elems)
  try:
    plan = structures.plan_doped_matrix(**request)
  except ValueError as e:
    assert "compression" in str(e)
    # Infeasible only when the structure itself cannot fit in its budget.
    assert structure_budget < _min_params(cls, m, n) or (
        request["doped"] and int(max_params) - _min_params(cls, m, n) < block_elems)
    return
  assert isinstance(plan.structure, cls)
  assert (plan.structure.m, plan.structure.n) == (m, n)
  assert plan.block_size == (bh, bw)
  assert plan.structure.params <= structure_budget
  assert plan.params == plan.structure.params + plan.doping_max_nnz
  assert plan.params <= max_params
  if not request["doped"]:
    assert not plan.doped and plan.doping_sparsity is None and plan.doping_max_nnz == 0
    return
  assert plan.doped
  num_blocks = math.ceil(n / bh) * math.ceil(m / bw)
  assert plan.doping_max_nnz > 0
  assert plan.doping_max_nnz % block_elems == 0
  assert plan.doping_max_nnz <= num_blocks * block_elems
  assert 0.0 <= plan.doping_sparsity < 1.0  # tfmot schedules need sparsity in [0, 1)
  planned = plan.doping_max_nnz // block_elems
  for dtype in (np.float64, np.float32):  # tfmot computes in float32
    kept = _tfmot_kept_blocks(num_blocks, plan.doping_sparsity, dtype)
    assert kept * block_elems <= plan.doping_max_nnz  # never over budget
    assert kept == planned  # and no block of the budget wasted


def test_plan_doped_matrix_docstring_example():
  plan = structures.plan_doped_matrix(2600, 650, max_params=67_600)
  assert plan.structure.params == 2600
  assert plan.doping_max_nnz == 65_000
  assert plan.block_size == (4, 1)
  num_blocks = math.ceil(650 / 4) * 2600
  assert _tfmot_kept_blocks(num_blocks, plan.doping_sparsity, np.float32) * 4 == 65_000


def test_plan_doped_matrix_dense_doping_when_budget_allows():
  # KP of 8x8 takes 2x2 ⊗ 4x4 = 20 params; the other 180 cover all 64 blocks.
  plan = structures.plan_doped_matrix(8, 8, max_params=200, block_size=(1, 1))
  assert plan.structure.params == 20
  assert plan.doping_sparsity == 0.0
  assert plan.doping_max_nnz == 64
  # One block short of dense: sparsity just above 0 and tfmot keeps 63.
  plan = structures.plan_doped_matrix(8, 8, max_params=20 + 63, structure_fraction=0.25,
                                      block_size=(1, 1))
  assert plan.doping_max_nnz == 63
  # tfmot keeps round(64 * (1 - s)) blocks: 63 needs s in (0.5/64, 1.5/64).
  assert 0.5 / 64 < plan.doping_sparsity < 1.5 / 64
  assert _tfmot_kept_blocks(64, plan.doping_sparsity, np.float32) == 63


def test_plan_doped_matrix_without_doping():
  plan = structures.plan_doped_matrix(2600, 650, max_params=67_600, doped=False)
  assert plan.doping_sparsity is None
  assert plan.doping_max_nnz == 0
  assert not plan.doped
  assert plan.params == plan.structure.params <= 67_600


def test_plan_doped_matrix_infeasible_messages():
  with pytest.raises(ValueError, match="compression"):
    structures.plan_doped_matrix(100, 100, max_params=30, structure="lowrank")
  with pytest.raises(ValueError, match="compression"):
    structures.plan_doped_matrix(37, 37, max_params=70, structure="kronecker")
  # The structure may exceed its share on small matrices, but S keeps one block.
  plan = structures.plan_doped_matrix(37, 37, max_params=100, structure="kronecker")
  assert plan.structure.params == 89 and plan.doping_max_nnz == 8


def test_plan_doped_matrix_rejects_bad_arguments():
  with pytest.raises(ValueError, match="structure_fraction"):
    structures.plan_doped_matrix(10, 10, 50, structure_fraction=0.0)
  with pytest.raises(ValueError, match="structure_fraction"):
    structures.plan_doped_matrix(10, 10, 50, structure_fraction=1.5)
  with pytest.raises(ValueError, match="block_size"):
    structures.plan_doped_matrix(10, 10, 50, block_size=(0, 4))
  with pytest.raises(ValueError, match="unknown structure"):
    structures.plan_doped_matrix(10, 10, 50, structure="tt")


def test_plan_doped_matrix_passes_structure_options():
  plan = structures.plan_doped_matrix(40, 30, max_params=600, structure="lowrank",
                                      structure_options={"rank": 2})
  assert plan.structure == LowRankStructure(40, 30, 2)
  assert plan.params <= 600


# --------------------------------------------------------------------------- budgets


def test_layer_weight_budget_arithmetic():
  # (100*100 + 100) / 10 - 100 = 1010 - 100 = 910
  assert structures.layer_weight_budget(100 * 100, 100, 10) == pytest.approx(910)
  assert structures.layer_weight_budget(100 * 100, 0, 10) == pytest.approx(1000)
  assert structures.layer_weight_budget(100 * 100, 100, 1) == pytest.approx(10_000)
  # LSTM-like: 4*650*(650+650) weights + 2600 bias at compression 20.
  weights, bias = 4 * 650 * 1300, 2600
  assert structures.layer_weight_budget(weights, bias, 20) == pytest.approx(
      (weights + bias) / 20 - bias)


def test_layer_weight_budget_too_small():
  # (100 + 100) / 100 - 100 < 2: the bias alone exceeds the target size.
  with pytest.raises(ValueError, match="compression"):
    structures.layer_weight_budget(100, 100, 100)


@pytest.mark.parametrize("compression", [0.999, 0, -5, float("nan"), float("inf"),
                                         float("-inf"), "ten", "", None, [10]])
def test_check_compression_rejects(compression):
  with pytest.raises(ValueError, match="compression"):
    structures.check_compression(compression)
  with pytest.raises(ValueError, match="compression"):
    structures.layer_weight_budget(100, 10, compression)


@pytest.mark.parametrize("compression", [1, 1.0, 7, 59.5, np.float32(3.0)])
def test_check_compression_accepts(compression):
  value = structures.check_compression(compression)
  assert isinstance(value, float) and value == float(compression)


def test_check_compression_rejects_numeric_string():
  with pytest.raises(ValueError):
    structures.check_compression("10")


# --------------------------------------------------------------------------- block size


@pytest.mark.parametrize("block", [(4, 1), [4, 1], (1, 4), (1, 1), (np.int64(2), 2)])
def test_check_block_size_accepts(block):
  out = structures.check_block_size(block)
  assert out == tuple(int(b) for b in block)
  assert isinstance(out, tuple) and all(type(b) is int for b in out)


@pytest.mark.parametrize("block", [(0, 1), (1, 0), (-4, 1), (4,), (4, 1, 1), (4.5, 1), "ab",
                                   "41", None, 4])
def test_check_block_size_rejects(block):
  with pytest.raises(ValueError, match="block_size"):
    structures.check_block_size(block)


def test_hmd_rank_is_capped_by_the_low_rank_block():
  structure = HMDStructure.for_budget(4, 4, 1000)
  assert structure.rank <= min(4 - structure.dense_rows, 4)


def test_check_block_size_rejects_booleans():
  with pytest.raises(ValueError, match="block_size"):
    structures.check_block_size((True, 1))
