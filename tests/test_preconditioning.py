"""Scaled factor gradients: the forward pass is unchanged, gradients are ScaledGD's."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import dkp_keras as dkp
from dkp_keras import kronecker, preconditioning


def _kronecker_factors(a, b):
  return preconditioning.kronecker_factors(a, b, ops=tf)


def _lowrank_factors(u, v):
  return preconditioning.lowrank_factors(u, v, ops=tf)


def _grads(factor_fn, first, second, cotangent, product):
  """Forward values and gradients of <cotangent, product(first', second')>."""
  first, second = tf.Variable(first), tf.Variable(second)
  with tf.GradientTape() as tape:
    a, b = factor_fn(first, second)
    loss = tf.reduce_sum(cotangent * product(a, b))
  return (a.numpy(), b.numpy()), [g.numpy() for g in tape.gradient(loss, [first, second])]


def _kron(a, b):
  return tf.reshape(tf.einsum("ij,kl->ikjl", a, b),
                    (a.shape[0] * b.shape[0], a.shape[1] * b.shape[1]))


def _identity(a, b):
  return a, b


dims = st.integers(1, 5)


@settings(max_examples=15)
@given(m1=dims, n1=dims, m2=dims, n2=dims, seed=st.integers(0, 100))
def test_kronecker_gradients_are_divided_by_the_other_factors_norm(m1, n1, m2, n2, seed):
  rng = np.random.default_rng(seed)
  a, b = rng.normal(size=(m1, n1)), rng.normal(size=(m2, n2))
  cotangent = rng.normal(size=(m1 * m2, n1 * n2))
  values, scaled = _grads(_kronecker_factors, a, b, cotangent, _kron)
  _, raw = _grads(_identity, a, b, cotangent, _kron)
  np.testing.assert_array_equal(values[0], a)  # the forward pass is exactly the identity
  np.testing.assert_array_equal(values[1], b)
  np.testing.assert_allclose(scaled[0], raw[0] / np.sum(b ** 2), rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(scaled[1], raw[1] / np.sum(a ** 2), rtol=1e-6, atol=1e-12)


@settings(max_examples=15)
@given(m=st.integers(2, 8), n=st.integers(2, 8), rank=st.integers(1, 2), seed=st.integers(0, 100))
def test_lowrank_gradients_are_multiplied_by_the_inverse_gram(m, n, rank, seed):
  rng = np.random.default_rng(seed)
  u, v = rng.normal(size=(m, rank)), rng.normal(size=(rank, n))
  cotangent = rng.normal(size=(m, n))
  values, scaled = _grads(_lowrank_factors, u, v, cotangent, tf.matmul)
  _, raw = _grads(_identity, u, v, cotangent, tf.matmul)
  np.testing.assert_array_equal(values[0], u)
  np.testing.assert_array_equal(values[1], v)

  def damped_inverse(gram):
    damping = preconditioning.GRAM_DAMPING * np.trace(gram) / rank
    return np.linalg.inv(gram + damping * np.eye(rank))

  np.testing.assert_allclose(scaled[0], raw[0] @ damped_inverse(v @ v.T), rtol=1e-6, atol=1e-10)
  np.testing.assert_allclose(scaled[1], damped_inverse(u.T @ u) @ raw[1], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("precondition, invariant", [(True, True), (False, False)])
def test_an_sgd_step_on_w_does_not_depend_on_how_the_factors_share_the_scale(precondition,
                                                                              invariant):
  # (c·A) ⊗ (B/c) is the same W; with ScaledGD one SGD step moves W alike for every c,
  # plain gradients move it c²-fold more along the B direction.
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 2)), rng.normal(size=(4, 5))
  cotangent = rng.normal(size=(12, 10))
  factor_fn = _kronecker_factors if precondition else _identity

  def step(scale):
    (a0, b0), (ga, gb) = _grads(factor_fn, a * scale, b / scale, cotangent, _kron)
    return kronecker.kron_dense(a0 - 1e-3 * ga, b0 - 1e-3 * gb, (12, 10))

  assert np.allclose(step(1.0), step(10.0), rtol=1e-5, atol=1e-9) == invariant


@pytest.mark.parametrize("structure", ["kronecker", "lowrank", "hmd"])
def test_layer_option_keeps_the_output_and_scales_the_factor_gradients(structure):
  x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  plain = dkp.DopedDense(12, compression=3, structure=structure)
  scaled = dkp.DopedDense.from_config({**plain.get_config(), "precondition_factors": True})
  plain.build((None, 16))
  scaled.build((None, 16))
  scaled.set_weights(plain.get_weights())
  grads = {}
  for name, layer in (("plain", plain), ("scaled", scaled)):
    with tf.GradientTape() as tape:
      y = layer(x)
      loss = tf.reduce_sum(y * y)
    # A weight with no entries (HMD without dense rows) gets no gradient.
    grads[name] = {w.name: g for w, g in zip(plain.trainable_weights,
                                               tape.gradient(loss, layer.trainable_weights))
                   if g is not None}
    grads[name]["y"] = y
  np.testing.assert_array_equal(grads["plain"]["y"], grads["scaled"]["y"])
  changed = [name for name in grads["plain"] if name != "y" and not np.allclose(
      grads["plain"][name], grads["scaled"][name])]
  # Only the two factors change: S and the bias (and HMD's dense rows) keep plain gradients.
  assert len(changed) == 2, changed
  assert scaled.get_config()["precondition_factors"] is True
  assert dkp.DopedDense.from_config(scaled.get_config()).precondition_factors


@pytest.mark.parametrize("graph", [False, True])
def test_lstm_factor_gradients_are_scaled_over_the_whole_sequence(graph):
  # The preconditioned factors are formed once per sequence (outside RNN's loop): the
  # gradient summed over the time steps must still be the plain one, scaled.
  x = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 6)), tf.float32)
  plain = dkp.DKPLSTM(8, compression=2, doped=False)
  scaled = dkp.DKPLSTM.from_config({**plain.get_config(), "precondition_factors": True})
  plain(x)
  scaled(x)
  scaled.set_weights(plain.get_weights())

  def gradients(layer):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(layer(x, training=True) ** 2)
    return loss, tape.gradient(loss, layer.trainable_weights)

  run = tf.function(gradients) if graph else gradients
  (plain_loss, plain_grads), (scaled_loss, scaled_grads) = run(plain), run(scaled)
  assert float(plain_loss) == float(scaled_loss)
  values = {w.name.split("/")[-1]: w.numpy() for w in plain.trainable_weights}
  for weight, raw, got in zip(plain.trainable_weights, plain_grads, scaled_grads):
    name = weight.name.split("/")[-1][:-2]
    if name.endswith("kron_a") or name.endswith("kron_b"):
      other = values[name[:-1] + ("b:0" if name.endswith("a") else "a:0")]
      np.testing.assert_allclose(got, raw / np.sum(other ** 2), rtol=2e-5, atol=1e-9)
    else:
      np.testing.assert_allclose(got, raw, rtol=1e-6, atol=1e-9)


def test_lstm_cell_passes_the_option_to_both_matrices():
  layer = dkp.DKPLSTM(8, compression=2, precondition_factors=True)
  layer(tf.ones((2, 3, 4)))
  cell = dkp.DKPLSTM.from_config(layer.get_config()).cell
  assert cell.precondition_factors
  assert all(m.precondition_factors for m in layer.cell.doped_matrices.values())
