"""Structured matrices behind one interface: Kronecker, low-rank (LMF) and HMD.

A structure is a small, immutable description of an (m x n) = (outputs x
inputs) matrix: its weight shapes, parameter count, how to multiply a batch by
it and how to rebuild it densely. It owns no variables: the Keras layers create
them and hand their values back (``weights`` is a dict name -> array/tensor),
so the same object serves numpy tests, TF training and the TFLite lowering.

Doping (the sparse co-matrix ``S``) is planned here too (`plan_doped_matrix`):
the structure takes part of the budget, ``S`` the rest, so that the whole
matrix meets the requested compression.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dkp_keras import blocks
from dkp_keras import kronecker

STRUCTURES = ("kronecker", "lowrank", "hmd")


def _rms(values):
  values = np.asarray(values, dtype=np.float64)
  return float(np.sqrt(np.mean(values ** 2))) if values.size else 0.0


def _scale_product(factors, target_rms, gain=1.0):
  """Scales factors equally so that their product has RMS ``target_rms``.

  The entries of a product of independent zero-mean factors have RMS
  ``gain * prod(rms(factor))``; ``gain`` is sqrt(rank) for ``U·V``.
  """
  current = gain * math.prod(_rms(f) for f in factors)
  if current == 0.0 or target_rms == 0.0:
    return [np.zeros_like(f) for f in factors]
  scale = (target_rms / current) ** (1.0 / len(factors))
  return [f * scale for f in factors]


class Structure:
  """Interface of a structured (m x n) matrix; subclasses define the weights."""

  name = None

  def __init__(self, m, n):
    self.m, self.n = int(m), int(n)

  @property
  def weight_shapes(self):
    """Dict weight name -> shape, in creation order."""
    raise NotImplementedError

  @property
  def params(self):
    return sum(math.prod(s) for s in self.weight_shapes.values())

  @classmethod
  def for_budget(cls, m, n, max_params, **options):
    """The best structure of this kind with at most ``max_params`` parameters."""
    raise NotImplementedError

  def matmul(self, x, weights, ops=np):
    """``x @ Wᵀ`` for ``x`` of shape (batch, n): (batch, m), never forming W.

    ``ops`` is the array namespace of ``x`` and ``weights``: ``np``, ``tf`` or ``keras.ops``.
    """
    raise NotImplementedError

  def dense_matrix(self, weights):
    """The dense (m x n) matrix ``W`` (numpy), for tests and accounting."""
    raise NotImplementedError

  def initial_values(self, draw, target_rms):
    """Initial weights: drawn with ``draw(shape)``, scaled so W has RMS ``target_rms``."""
    raise NotImplementedError

  def get_config(self):
    raise NotImplementedError

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()

  def __hash__(self):
    return hash((type(self), tuple(sorted(self.get_config().items()))))


class KroneckerStructure(Structure):
  """``W = A ⊗ B`` (two factors), zero-padded when m or n factor badly.

  >>> s = KroneckerStructure.for_budget(2600, 650, max_params=10_000)
  >>> s.weight_shapes
  {'kron_a': (50, 26), 'kron_b': (52, 25)}
  """

  name = "kronecker"

  def __init__(self, m, n, a_shape, b_shape):
    super().__init__(m, n)
    (m1, n1), (m2, n2) = a_shape, b_shape
    self.shape = kronecker.KroneckerShape(m, n, m1, n1, m2, n2)

  @classmethod
  def for_budget(cls, m, n, max_params, factor_shapes=None, **unused):
    if factor_shapes is not None:
      structure = cls(m, n, *factor_shapes)
      _check_budget(structure, max_params)
      return structure
    shape = kronecker.choose_kronecker_shape(m, n, max_params=max_params)
    return cls(m, n, shape.a_shape, shape.b_shape)

  @property
  def weight_shapes(self):
    return {"kron_a": self.shape.a_shape, "kron_b": self.shape.b_shape}

  def matmul(self, x, weights, ops=np):
    padded_m, padded_n = self.shape.padded_shape
    if padded_n > self.n:
      x = ops.pad(x, [[0, 0], [0, padded_n - self.n]])
    y = kronecker.kron_matmul(x, weights["kron_a"], weights["kron_b"], ops=ops)
    return y[:, :self.m] if padded_m > self.m else y

  def dense_matrix(self, weights):
    return kronecker.kron_dense(weights["kron_a"], weights["kron_b"], (self.m, self.n))

  def initial_values(self, draw, target_rms):
    a, b = _scale_product([draw(self.shape.a_shape), draw(self.shape.b_shape)], target_rms)
    return {"kron_a": a, "kron_b": b}

  def get_config(self):
    return {"m": self.m, "n": self.n, "a_shape": list(self.shape.a_shape),
            "b_shape": list(self.shape.b_shape)}


class LowRankStructure(Structure):
  """``W = U · V`` with ``U`` (m x r), ``V`` (r x n): low-rank matrix factorisation (LMF).

  >>> LowRankStructure.for_budget(2600, 650, max_params=32_500).rank
  10
  """

  name = "lowrank"

  def __init__(self, m, n, rank):
    super().__init__(m, n)
    if rank < 1:
      raise ValueError(f"low-rank structure needs rank >= 1, got {rank}")
    self.rank = int(rank)

  @classmethod
  def for_budget(cls, m, n, max_params, rank=None, **unused):
    if rank is None:
      rank = min(max_params // (m + n), min(m, n))
      if rank < 1:
        raise ValueError(
            f"a rank-1 factorisation of a {m}x{n} matrix needs {m + n} parameters, the budget "
            f"is {max_params}; ask for a lower compression")
    structure = cls(m, n, rank)
    _check_budget(structure, max_params)
    return structure

  @property
  def weight_shapes(self):
    return {"lowrank_u": (self.m, self.rank), "lowrank_v": (self.rank, self.n)}

  def matmul(self, x, weights, ops=np):
    hidden = ops.matmul(x, ops.transpose(weights["lowrank_v"]))
    return ops.matmul(hidden, ops.transpose(weights["lowrank_u"]))

  def dense_matrix(self, weights):
    return np.asarray(weights["lowrank_u"]) @ np.asarray(weights["lowrank_v"])

  def initial_values(self, draw, target_rms):
    u, v = _scale_product([draw((self.m, self.rank)), draw((self.rank, self.n))], target_rms,
                          gain=math.sqrt(self.rank))
    return {"lowrank_u": u, "lowrank_v": v}

  def get_config(self):
    return {"m": self.m, "n": self.n, "rank": self.rank}


class HMDStructure(Structure):
  """Hybrid matrix decomposition: the first ``dense_rows`` rows dense, the rest ``U · V``.

  >>> s = HMDStructure.for_budget(2600, 650, max_params=67_600)
  >>> (s.dense_rows, s.rank)
  (52, 10)
  """

  name = "hmd"

  def __init__(self, m, n, dense_rows, rank):
    super().__init__(m, n)
    if not 0 <= dense_rows < m:
      raise ValueError(f"HMD needs 0 <= dense_rows < {m} (some rows low-rank), got {dense_rows}")
    if rank < 1:
      raise ValueError(f"HMD needs rank >= 1, got {rank}")
    self.dense_rows, self.rank = int(dense_rows), int(rank)

  @classmethod
  def for_budget(cls, m, n, max_params, dense_rows=None, rank=None, dense_fraction=0.5,
                 **unused):
    """Spends ``dense_fraction`` of the budget on dense rows, the rest on the rank."""
    fixed_rows = dense_rows is not None
    if not fixed_rows:
      dense_rows = min(int(max_params * dense_fraction) // n, m - 1)
    if rank is None:
      def rank_for(rows):
        return min(int((max_params - rows * n) // (m - rows + n)), m - rows, n)
      # Give back dense rows until a rank-1 low-rank part fits.
      while rank_for(dense_rows) < 1 and dense_rows > 0 and not fixed_rows:
        dense_rows -= 1
      rank = rank_for(dense_rows)
      if rank < 1:
        raise ValueError(
            f"HMD of a {m}x{n} matrix with {dense_rows} dense rows does not fit in "
            f"{max_params} parameters; ask for a lower compression")
    structure = cls(m, n, dense_rows, rank)
    _check_budget(structure, max_params)
    return structure

  @property
  def weight_shapes(self):
    return {"hmd_dense": (self.dense_rows, self.n),
            "hmd_u": (self.m - self.dense_rows, self.rank), "hmd_v": (self.rank, self.n)}

  def matmul(self, x, weights, ops=np):
    hidden = ops.matmul(x, ops.transpose(weights["hmd_v"]))
    low_rank = ops.matmul(hidden, ops.transpose(weights["hmd_u"]))
    if not self.dense_rows:
      return low_rank
    dense = ops.matmul(x, ops.transpose(weights["hmd_dense"]))
    # numpy and tf call it concat, keras.ops concatenate.
    concat = getattr(ops, "concat", None) or ops.concatenate
    return concat([dense, low_rank], -1)

  def dense_matrix(self, weights):
    low_rank = np.asarray(weights["hmd_u"]) @ np.asarray(weights["hmd_v"])
    return np.concatenate([np.asarray(weights["hmd_dense"]).reshape(-1, self.n), low_rank], 0)

  def initial_values(self, draw, target_rms):
    (dense,) = _scale_product([draw((self.dense_rows, self.n))], target_rms)
    u, v = _scale_product([draw((self.m - self.dense_rows, self.rank)),
                           draw((self.rank, self.n))], target_rms, gain=math.sqrt(self.rank))
    return {"hmd_dense": dense, "hmd_u": u, "hmd_v": v}

  def get_config(self):
    return {"m": self.m, "n": self.n, "dense_rows": self.dense_rows, "rank": self.rank}


_BY_NAME = {cls.name: cls for cls in (KroneckerStructure, LowRankStructure, HMDStructure)}


def structure_class(name):
  """The structure class for ``name`` ('kronecker', 'lowrank' or 'hmd')."""
  aliases = {"kp": "kronecker", "dkp": "kronecker", "lmf": "lowrank", "low_rank": "lowrank"}
  key = aliases.get(name, name)
  if key not in _BY_NAME:
    raise ValueError(f"unknown structure {name!r}; choose one of {', '.join(STRUCTURES)}")
  return _BY_NAME[key]


def _check_budget(structure, max_params):
  if structure.params > max_params:
    raise ValueError(
        f"{structure!r} has {structure.params} parameters, more than the budget of "
        f"{max_params}; ask for a lower compression or smaller factors")


@dataclasses.dataclass(frozen=True)
class MatrixPlan:
  """How one (m x n) weight matrix is compressed: a structure plus optional doping.

  ``doping_sparsity`` is the final sparsity of S (its kernel is [n, m], Keras
  layout), counted in ``block_size`` blocks so that whole kept blocks fit the
  budget; it is None without doping.
  """
  structure: Structure
  doping_sparsity: float | None
  doping_max_nnz: int
  block_size: tuple

  @property
  def doped(self):
    return self.doping_sparsity is not None

  @property
  def params(self):
    return self.structure.params + self.doping_max_nnz


def plan_doped_matrix(m, n, max_params, structure="kronecker", doped=True,
                      structure_fraction=0.5, block_size=(4, 1), structure_options=None):
  """Plans a structure (+ sparse S) for an (m x n) matrix within ``max_params``.

  Without doping the structure gets the whole budget. With doping it gets at
  most ``structure_fraction`` of it (more only when no structure fits in that
  share, as for small matrices, leaving S at least one block) and S the rest,
  in whole ``block_size`` blocks of its [n, m] Keras kernel ((4, 1) = 4
  consecutive inputs of one output, TFLite's fast 1x4 sparse layout).

  >>> plan = plan_doped_matrix(2600, 650, max_params=67_600)
  >>> plan.structure.params, plan.doping_max_nnz
  (2600, 65000)
  """
  block_size = check_block_size(block_size)
  if not 0.0 < structure_fraction <= 1.0:
    raise ValueError(f"structure_fraction must be in (0, 1], got {structure_fraction}")
  options = dict(structure_options or {})
  cls = structure_class(structure)
  if not doped:
    return MatrixPlan(cls.for_budget(m, n, int(max_params), **options), None, 0, block_size)
  block_elems = block_size[0] * block_size[1]
  try:
    built = cls.for_budget(m, n, int(max_params * structure_fraction), **options)
  except ValueError:
    # Small matrices: the structure may need more than its share; S keeps >= 1 block.
    built = cls.for_budget(m, n, int(max_params) - block_elems, **options)
  num_blocks = math.prod(blocks.grid_shape((n, m), block_size))
  kept_blocks = min(int(max_params - built.params) // block_elems, num_blocks)
  if kept_blocks < 1:
    raise ValueError(
        f"no room left for the doping matrix of a {m}x{n} matrix: the {built.name} structure "
        f"uses {built.params} of {int(max_params)} parameters; lower the compression or "
        f"use doped=False")
  # tfmot keeps round(num_blocks * (1 - sparsity)) blocks: aim a quarter block
  # low so that float rounding never keeps one block too many.
  sparsity = 0.0 if kept_blocks == num_blocks else 1.0 - (kept_blocks - 0.25) / num_blocks
  return MatrixPlan(built, sparsity, kept_blocks * block_elems, block_size)


def check_block_size(block_size):
  """Validates a tfmot block size: two positive ints (Keras kernel [in, out] order)."""
  try:
    if any(isinstance(b, bool) for b in block_size):
      raise TypeError
    block = tuple(int(b) for b in block_size)
  except (TypeError, ValueError):
    raise ValueError(f"block_size must be two positive integers, got {block_size!r}") from None
  if len(block) != 2 or min(block) < 1 or block != tuple(block_size):
    raise ValueError(f"block_size must be two positive integers, got {block_size!r}")
  return block


def layer_weight_budget(dense_weight_params, bias_params, compression):
  """Parameters left for the weight matrices so the layer meets ``compression``.

  The factor counts the whole layer (weights + bias) against its dense twin;
  the bias stays dense, so it comes off the budget.
  """
  compression = check_compression(compression)
  budget = (dense_weight_params + bias_params) / compression - bias_params
  if budget < 2:
    raise ValueError(
        f"compression {compression} leaves {budget:.0f} parameters for the weights once the "
        f"{bias_params} bias parameters are kept; ask for a lower compression")
  return budget


def check_compression(compression):
  try:
    if isinstance(compression, (str, bytes)):
      raise TypeError
    value = float(compression)
  except (TypeError, ValueError):
    raise ValueError(f"compression must be a number >= 1, got {compression!r}") from None
  if not value >= 1.0 or math.isinf(value):
    raise ValueError(f"compression must be a finite number >= 1, got {compression!r}")
  return value
