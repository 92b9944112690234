"""Scaled gradients for factored weights (`dkp_keras.preconditioning`) in `keras.ops`.

The same ScaledGD preconditioning as the tf_keras front end, on any Keras 3
backend: each factor's gradient is divided by the other factor's Gram matrix
(``∇A / ‖B‖²`` for Kronecker, ``∇U (V Vᵀ)⁻¹`` and ``(Uᵀ U)⁻¹ ∇V`` for low rank);
the forward pass is unchanged. See `dkp_keras.preconditioning` for why.
"""

from __future__ import annotations

from keras import ops

# As dkp_keras.preconditioning: relative damping of a low-rank factor's Gram matrix.
GRAM_DAMPING = 1e-3
_TINY = 1e-12


def _with_gradient(x, transform):
  """``x`` in the forward pass; its gradient ``g`` becomes ``transform(g)`` (linear)."""
  frozen = ops.stop_gradient(x)
  return frozen + transform(x - frozen)


def kronecker_factors(a, b):
  """``(A, B)`` whose gradients are ``∇A / ‖B‖²`` and ``∇B / ‖A‖²``."""
  a_sq = ops.stop_gradient(ops.sum(ops.square(a))) + _TINY
  b_sq = ops.stop_gradient(ops.sum(ops.square(b))) + _TINY
  return _with_gradient(a, lambda d: d / b_sq), _with_gradient(b, lambda d: d / a_sq)


def _damped_inverse_gram(gram):
  rank = gram.shape[0]
  damping = GRAM_DAMPING * ops.trace(gram) / rank + _TINY
  return ops.inv(gram + damping * ops.eye(rank, dtype=gram.dtype))


def lowrank_factors(u, v):
  """``(U, V)`` (``W = U V``) whose gradients are ``∇U (V Vᵀ)⁻¹`` and ``(Uᵀ U)⁻¹ ∇V``."""
  v_gram_inv = ops.stop_gradient(_damped_inverse_gram(ops.matmul(v, ops.transpose(v))))
  u_gram_inv = ops.stop_gradient(_damped_inverse_gram(ops.matmul(ops.transpose(u), u)))
  return (_with_gradient(u, lambda d: ops.matmul(d, v_gram_inv)),
          _with_gradient(v, lambda d: ops.matmul(u_gram_inv, d)))


_FACTOR_PAIRS = {"kronecker": ("kron_a", "kron_b", kronecker_factors),
                 "lowrank": ("lowrank_u", "lowrank_v", lowrank_factors),
                 "hmd": ("hmd_u", "hmd_v", lowrank_factors)}


def precondition(structure, weights):
  """``weights`` (name -> tensor) of ``structure`` with its factors' gradients scaled."""
  first, second, scaled = _FACTOR_PAIRS[structure.name]
  weights = dict(weights)
  weights[first], weights[second] = scaled(weights[first], weights[second])
  return weights
