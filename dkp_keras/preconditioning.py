"""Scaled gradients for factored weights, so that plain SGD trains them.

A factor entry of ``W = A ⊗ B`` moves a whole ``m2 x n2`` block of ``W``: the
gradient of ``A`` is the gradient of ``W`` contracted with ``B``, and an SGD step
on ``A`` changes ``W`` by about ``‖B‖²`` times the step SGD would take on a dense
``W``, and ``‖B‖²`` is far from 1 at the usual initializations. Scaled gradient
descent (ScaledGD, Tong, Ma & Chi 2021) divides each factor's gradient by the
Gram matrix of the other factor:

* Kronecker: ``∇A / ‖B‖²`` and ``∇B / ‖A‖²`` (``A ⊗ B`` is the rank-1 matrix
  ``vec(A) vec(B)ᵀ`` after Van Loan's rearrangement, so this is rank-1 ScaledGD);
* low rank ``U V``: ``∇U (V Vᵀ)⁻¹`` and ``(Uᵀ U)⁻¹ ∇V``.

Then one SGD step moves ``W`` about as far as it would move a dense matrix, for
any factor scale. The forward pass is unchanged (each factor goes through an
identity whose gradient is preconditioned). Adam is nearly indifferent to a
per-tensor gradient scale, so this matters for SGD; it is off by default.

Both front ends use these functions: ``ops`` is the array namespace of the
factors, ``tf`` (tf_keras) or ``keras.ops`` (Keras 3, any backend); only names
the two share are used.

>>> import tensorflow as tf
>>> a, b = tf.Variable(tf.ones((2, 3))), tf.Variable(tf.ones((4, 5)))
>>> with tf.GradientTape() as tape:
...   a2, b2 = kronecker_factors(a, b, ops=tf)
...   loss = tf.reduce_sum(a2)
>>> round(float(tape.gradient(loss, a)[0, 0]), 6)  # 1 / ‖B‖² = 1 / 20
0.05
"""

from __future__ import annotations

# Relative damping of a low-rank factor's Gram matrix: keeps the inverse bounded
# when the factor is (nearly) rank deficient.
GRAM_DAMPING = 1e-3
_TINY = 1e-12


def _with_gradient(x, transform, ops):
  """``x`` in the forward pass; its gradient ``g`` becomes ``transform(g)``.

  ``transform`` must be linear (it is applied to ``x - stop_gradient(x)``, which
  is exactly zero), so gradients summed over time steps are transformed alike.
  """
  frozen = ops.stop_gradient(x)
  return frozen + transform(x - frozen)


def _squared_norm(x, ops):
  """``‖x‖²`` (Frobenius) of a matrix, without gradient."""
  return ops.stop_gradient(ops.tensordot(x, x, axes=2))


def kronecker_factors(a, b, ops):
  """``(A, B)`` whose gradients are ``∇A / ‖B‖²`` and ``∇B / ‖A‖²``."""
  a_sq = _squared_norm(a, ops) + _TINY
  b_sq = _squared_norm(b, ops) + _TINY
  return (_with_gradient(a, lambda d: d / b_sq, ops),
          _with_gradient(b, lambda d: d / a_sq, ops))


def _damped_inverse_gram(gram, trace, ops):
  """``(gram + δ I)⁻¹``, δ relative to the Gram matrix's ``trace``."""
  rank = gram.shape[0]
  damping = GRAM_DAMPING * trace / rank + _TINY
  return ops.linalg.inv(gram + damping * ops.eye(rank, dtype=gram.dtype))


def lowrank_factors(u, v, ops):
  """``(U, V)`` (``W = U V``) whose gradients are ``∇U (V Vᵀ)⁻¹`` and ``(Uᵀ U)⁻¹ ∇V``."""
  # trace(V Vᵀ) = ‖V‖² and trace(Uᵀ U) = ‖U‖²: no trace op that tf and keras.ops share.
  v_gram_inv = ops.stop_gradient(_damped_inverse_gram(
      ops.matmul(v, ops.transpose(v)), _squared_norm(v, ops), ops))
  u_gram_inv = ops.stop_gradient(_damped_inverse_gram(
      ops.matmul(ops.transpose(u), u), _squared_norm(u, ops), ops))
  # The Gram inverses are symmetric: d @ P back-propagates as g @ P, P @ d as P @ g.
  return (_with_gradient(u, lambda d: ops.matmul(d, v_gram_inv), ops),
          _with_gradient(v, lambda d: ops.matmul(u_gram_inv, d), ops))


# The factor pair of each structure that `precondition` scales (HMD's dense rows
# move like a dense matrix and are left alone).
_FACTOR_PAIRS = {"kronecker": ("kron_a", "kron_b", kronecker_factors),
                 "lowrank": ("lowrank_u", "lowrank_v", lowrank_factors),
                 "hmd": ("hmd_u", "hmd_v", lowrank_factors)}


def precondition(structure, weights, ops):
  """``weights`` (name -> tensor) of ``structure`` with its factors' gradients scaled.

  Args:
    structure: a `dkp_keras.structures.Structure`.
    weights: its weights, name -> tensor or variable.
    ops: the array namespace of the weights, ``tf`` or ``keras.ops``.
  """
  first, second, scaled = _FACTOR_PAIRS[structure.name]
  weights = dict(weights)
  weights[first], weights[second] = scaled(weights[first], weights[second], ops)
  return weights
