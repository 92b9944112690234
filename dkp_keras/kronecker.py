"""Kronecker-product math: factor shapes, matmul without forming A⊗B, nearest KP.

Pure functions over numpy arrays. `kron_matmul` also runs on TensorFlow tensors
(pass ``ops=tf``) and Keras 3 tensors (``ops=keras.ops``) so the Keras layers of
both front ends and the tests share one implementation.

Convention: a weight matrix ``W`` is (m x n) = (outputs x inputs), ``W = A ⊗ B``
with ``A`` (m1 x n1) and ``B`` (m2 x n2), ``m = m1*m2``, ``n = n1*n2``. Row-major
flattening gives ``(A ⊗ B) vec(X) = vec(A X Bᵀ)`` for ``X`` (n1 x n2).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

logger = logging.getLogger(__name__)

# A padded factorisation is chosen only when it needs clearly fewer parameters.
PADDING_PENALTY = 1.25


@dataclasses.dataclass(frozen=True)
class KroneckerShape:
  """Factor shapes of ``A ⊗ B`` for an (m x n) matrix, possibly padded.

  ``A`` is (m1 x n1), ``B`` is (m2 x n2). When ``m1*m2 > m`` or ``n1*n2 > n``
  the product is the padded (m1*m2 x n1*n2) matrix; only its top-left (m x n)
  block is used (inputs are zero-padded, extra outputs are dropped).

  >>> KroneckerShape(2600, 650, m1=50, n1=25, m2=52, n2=26).params
  2602
  """
  m: int
  n: int
  m1: int
  n1: int
  m2: int
  n2: int

  def __post_init__(self):
    for name in ("m", "n", "m1", "n1", "m2", "n2"):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"KroneckerShape.{name} must be a positive integer, got {value!r}")
    if self.m1 * self.m2 < self.m or self.n1 * self.n2 < self.n:
      raise ValueError(
          f"factors ({self.m1}x{self.n1}) ⊗ ({self.m2}x{self.n2}) give a "
          f"{self.m1 * self.m2}x{self.n1 * self.n2} matrix, smaller than {self.m}x{self.n}")

  @property
  def a_shape(self):
    return (self.m1, self.n1)

  @property
  def b_shape(self):
    return (self.m2, self.n2)

  @property
  def padded_shape(self):
    return (self.m1 * self.m2, self.n1 * self.n2)

  @property
  def is_padded(self):
    return self.padded_shape != (self.m, self.n)

  @property
  def params(self):
    return self.m1 * self.n1 + self.m2 * self.n2

  @property
  def rank(self):
    """rank(A)·rank(B) for generic factors, capped by m and n.

    Cropping a padded product can lower it; `choose_kronecker_shape` only
    picks padded shapes that it checked numerically to keep it.
    """
    return _reachable_rank(self.m, self.n, self.m1, self.n1, self.m2, self.n2)


def _divisor_pairs(k):
  small = [d for d in range(1, int(np.sqrt(k)) + 1) if k % d == 0]
  pairs = [(d, k // d) for d in small] + [(k // d, d) for d in small]
  return sorted(set(pairs))


def _candidates(m, n, max_padding):
  """All (m1, n1, m2, n2) whose product covers (m x n) with <= max_padding extra rows/cols."""
  for mp in range(m, m + max_padding + 1):
    for np_ in range(n, n + max_padding + 1):
      for m1, m2 in _divisor_pairs(mp):
        for n1, n2 in _divisor_pairs(np_):
          yield m1, n1, m2, n2


def _reachable_rank(m, n, m1, n1, m2, n2):
  """rank(A⊗B) = rank(A)·rank(B), capped by the used (m x n) block."""
  return min(min(m1, n1) * min(m2, n2), m, n)


def _keeps_rank(m, n, m1, n1, m2, n2, rank, seed=0):
  """Whether the padded KP cropped to (m x n) keeps ``rank`` for generic factors.

  Cropping usually keeps the reachable rank but not always (a 9x10 block of
  (3x3) ⊗ (3x4) has rank 8), so padded shapes are checked numerically: first
  on a random subset of the long side (cheap, and enough when it shows the
  rank), then on the whole block.
  """
  rng = np.random.default_rng(seed)
  w = kron_dense(rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2)), (m, n))
  if w.shape[0] > w.shape[1]:
    w = w.T
  subset = rng.choice(w.shape[1], size=min(w.shape[1], 2 * w.shape[0]), replace=False)
  if np.linalg.matrix_rank(w[:, subset]) >= rank:
    return True
  return np.linalg.matrix_rank(w) >= rank


def choose_kronecker_shape(m, n, max_params=None, max_padding=8):
  """Chooses two-factor shapes for an (m x n) matrix within a parameter budget.

  Criteria, in order: (1) the highest rank the KP can reach on the (m x n)
  block (``rank(A⊗B) = rank(A)·rank(B)``); (2) the fewest parameters (they
  leave more of the budget to the doping matrix), a padded shape's count
  weighted by its padded area / (m*n) and by ``PADDING_PENALTY``;
  (3) the least padding. Sizes that factor badly (primes) are zero-padded by at
  most ``max_padding`` rows / columns; a padded choice is logged.

  >>> s = choose_kronecker_shape(2600, 1300)
  >>> (s.a_shape, s.b_shape)
  ((50, 50), (52, 26))

  Raises:
    ValueError: when no two-factor shape fits in ``max_params``.
  """
  m, n = _positive_int(m, "m"), _positive_int(n, "n")
  ranked = []
  for m1, n1, m2, n2 in _candidates(m, n, max_padding):
    params = m1 * n1 + m2 * n2
    if max_params is not None and params > max_params:
      continue
    # Padding wastes compute in proportion to the padded area and adds PAD /
    # SLICE ops to the deployed graph: it must save a clear share of parameters.
    area_ratio = (m1 * m2 * n1 * n2) / (m * n)
    cost = params * area_ratio * (PADDING_PENALTY if area_ratio > 1 else 1.0)
    rank = _reachable_rank(m, n, m1, n1, m2, n2)
    ranked.append(((-rank, cost, area_ratio), (m1, n1, m2, n2)))
  if not ranked:
    raise ValueError(
        f"no Kronecker factorisation of a {m}x{n} matrix fits in {max_params} parameters "
        f"(the smallest needs {smallest_kronecker_params(m, n, max_padding)}); "
        f"ask for a lower compression")
  ranked.sort()
  best = ranked[0][1]
  for (neg_rank, _, area_ratio), factors in ranked:
    # Unpadded shapes reach their rank exactly; padded ones must show it.
    if area_ratio == 1 or _keeps_rank(m, n, *factors, rank=-neg_rank):
      best = factors
      break
  shape = KroneckerShape(m, n, *best)
  if shape.is_padded:
    logger.info("Kronecker factors for %dx%d are padded to %dx%d: A %s, B %s",
                m, n, *shape.padded_shape, shape.a_shape, shape.b_shape)
  return shape


def smallest_kronecker_params(m, n, max_padding=8):
  """The fewest parameters any two-factor KP of an (m x n) matrix can have."""
  return min(m1 * n1 + m2 * n2 for m1, n1, m2, n2 in _candidates(m, n, max_padding))


def kron_matmul(x, a, b, ops=np):
  """Computes ``x @ (A ⊗ B)ᵀ`` for a batch of row vectors without forming A⊗B.

  ``x`` has shape (batch, n1*n2); the result has shape (batch, m1*m2). Works on
  numpy arrays (``ops=np``), TensorFlow tensors (``ops=tf``) and Keras 3 tensors
  (``ops=keras.ops``): it uses only
  reshape / matmul / transpose, the ops the TFLite lowering uses too.

  >>> a, b, x = np.ones((2, 3)), np.eye(4), np.ones((5, 12))
  >>> np.allclose(kron_matmul(x, a, b), x @ np.kron(a, b).T)
  True
  """
  m1, n1 = a.shape
  m2, n2 = b.shape
  xb = ops.matmul(ops.reshape(x, (-1, n2)), ops.transpose(b))   # rows of X Bᵀ: (batch*n1, m2)
  xb = ops.transpose(ops.reshape(xb, (-1, n1, m2)), (0, 2, 1))  # (batch, m2, n1)
  y = ops.matmul(ops.reshape(xb, (-1, n1)), ops.transpose(a))   # (batch*m2, m1)
  y = ops.transpose(ops.reshape(y, (-1, m2, m1)), (0, 2, 1))    # A X Bᵀ: (batch, m1, m2)
  return ops.reshape(y, (-1, m1 * m2))


def kron_dense(a, b, shape=None):
  """The (m x n) matrix ``A ⊗ B``, cropped to ``shape`` (the unpadded size)."""
  w = np.kron(np.asarray(a), np.asarray(b))
  if shape is not None:
    w = w[:shape[0], :shape[1]]
  return w


def nearest_kronecker(w, shape):
  """Nearest Kronecker product in Frobenius norm (Van Loan–Pitsianis).

  Rearranges ``W`` so that ``A ⊗ B`` becomes the rank-1 matrix ``vec(A) vec(B)ᵀ``
  and takes the top singular pair. ``W`` is zero-padded to ``shape.padded_shape``.

  Returns:
    ``(a, b)`` with ``a`` of shape ``shape.a_shape`` and ``b`` of ``shape.b_shape``.
  """
  w = np.asarray(w, dtype=np.float64)
  if w.shape != (shape.m, shape.n):
    raise ValueError(f"matrix has shape {w.shape}, KroneckerShape expects {(shape.m, shape.n)}")
  padded = np.zeros(shape.padded_shape)
  padded[:shape.m, :shape.n] = w
  r = padded.reshape(shape.m1, shape.m2, shape.n1, shape.n2)
  r = r.transpose(0, 2, 1, 3).reshape(shape.m1 * shape.n1, shape.m2 * shape.n2)
  u, s, vt = np.linalg.svd(r, full_matrices=False)
  scale = np.sqrt(s[0])
  a = (scale * u[:, 0]).reshape(shape.a_shape)
  b = (scale * vt[0]).reshape(shape.b_shape)
  return a, b


def _positive_int(value, name):
  if int(value) != value or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  return int(value)
