"""Keras 3 annealing without tfmot: S reaches its target in whole blocks along tfmot's schedule,
short or misaligned windows and early stops end as on the tf_keras path, CMR follows it."""

import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import given, strategies as st
import tf_keras

import dkp_keras as dkp
from dkp_keras import annealing as legacy_annealing
from dkp_keras.blocks import grid_shape, kept_block_count, kept_blocks
from dkp_keras.deployed_layout import is_block_aligned
from dkp_keras import keras3 as k3
from dkp_keras.keras3 import annealing
from dkp_keras.keras3.doped_matrix import find_doped_owners as k3_owners
from helpers import randomize_doping

VOCAB, STEPS = 30, 8


def small_model(block_size=(4, 1), keras_module=keras, front=k3):
  """A tiny LM of DKP layers; ``keras_module=tf_keras, front=dkp`` builds its tf_keras twin."""
  tokens = keras_module.Input((STEPS,), dtype="int32")
  x = keras_module.layers.Embedding(VOCAB, 16)(tokens)
  x = front.DopedDense(24, compression=4, activation="tanh", block_size=block_size)(x)
  outputs = front.DopedDense(VOCAB, compression=3, block_size=block_size)(x)
  return keras_module.Model(tokens, outputs)


def data(batches, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, VOCAB, size=(batches * batch, STEPS))
  return x, np.roll(x, -1, axis=1)


def fit_steps(model, steps, epochs=2, callbacks=(), **schedule):
  """Trains ``steps`` batches (split into ``epochs``) with SparsityAnnealing(**schedule)."""
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data(batches=steps // epochs)
  model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
            callbacks=[annealing_callback(**schedule), *callbacks])
  return model


def annealing_callback(begin_step=0, end_step=8, frequency=2, **kwargs):
  return k3.SparsityAnnealing(begin_step=begin_step, end_step=end_step, frequency=frequency,
                              **kwargs)


def doped_matrices(model):
  return [m for layer in model.layers if isinstance(layer, k3.DopedDense)
          for m in layer.doped_matrices.values() if m.doping is not None]


def assert_at_target(matrix):
  """S keeps exactly the blocks its plan budgets, in whole blocks."""
  values, plan = matrix.doping_values(), matrix.plan
  bh, bw = plan.block_size
  assert kept_blocks(values, plan.block_size) == plan.doping_max_nnz // (bh * bw)
  assert np.count_nonzero(values) <= plan.doping_max_nnz
  assert is_block_aligned(values, plan.block_size)


def finalize_quietly(model, **kwargs):
  with warnings.catch_warnings():
    # A missed target warns: fail instead.
    warnings.filterwarnings("error", message=".*denser than their compression allows")
    return k3.finalize(model, **kwargs)


@pytest.mark.parametrize("block_size", [(4, 1), (1, 4), (2, 2)])
def test_reaches_target_sparsity_in_whole_blocks(block_size):
  model = fit_steps(small_model(block_size), steps=12, end_step=8)
  for matrix in doped_matrices(model):  # masked at the end of training, before finalize
    assert_at_target(matrix)
  final = finalize_quietly(model, on_missed_target="raise")
  report = k3.compression_report(final)
  assert report["meets_target"].all()
  rows = report[report["doped"] & (report["layer"] != "total")]
  assert (rows["compression"] >= rows["target_compression"] * 0.99).all()


def test_schedule_is_tfmots_with_an_update_at_end_step():
  schedule = annealing.AnnealingSchedule(begin_step=2, end_step=7, frequency=4)
  legacy = legacy_annealing.AnnealingDecay(0.0, 0.8, begin_step=2, end_step=7, frequency=4)
  for step in range(12):
    should_prune, sparsity = legacy(tf.constant(step, tf.int64))
    assert schedule.updates_mask(step) == bool(should_prune)
    assert schedule.sparsity(step, 0.8) == pytest.approx(float(sparsity), abs=1e-6)


@given(begin=st.integers(0, 20), length=st.integers(1, 40), frequency=st.integers(1, 12),
       switch=st.integers(0, 60), step=st.integers(0, 80))
def test_last_update_is_the_latest_mask_update_a_batch_made(begin, length, frequency, switch,
                                                           step):
  end = begin + length
  switch = begin + switch % (length + 1)
  schedule = annealing.AnnealingSchedule(begin, end, frequency, early_block_size=(1, 1),
                                         block_switch_step=switch)
  updates = [s for s in range(1, step + 1) if schedule.updates_mask(s)]  # batches: steps >= 1
  assert schedule.last_update(step) == (updates[-1] if updates else None)


@pytest.mark.parametrize("end_step, frequency", [(4, 100), (5, 2), (6, 4)])
def test_short_or_misaligned_window_still_ends_at_target(end_step, frequency):
  model = fit_steps(small_model(), steps=6, end_step=end_step, frequency=frequency)
  final = finalize_quietly(model, on_missed_target="raise")
  for matrix in doped_matrices(final):
    assert_at_target(matrix)


def test_before_begin_step_s_is_dense():
  model = fit_steps(small_model(), steps=6, begin_step=100, end_step=200)
  for matrix in doped_matrices(model):
    assert np.count_nonzero(matrix.doping_values()) == matrix.doping_values().size


class SparsityProbe(keras.callbacks.Callback):
  """The fraction of zero blocks of the first S seen by each training step's forward pass."""

  def __init__(self):
    super().__init__()
    self.sparsities = []

  def on_train_batch_begin(self, batch, logs=None):
    matrix = doped_matrices(self.model)[0]
    blocks = np.prod(grid_shape(matrix.doping.shape, matrix.plan.block_size))
    self.sparsities.append(1 - kept_blocks(matrix.doping_values(), matrix.plan.block_size)
                           / blocks)


def test_each_step_sees_the_scheduled_sparsity():
  probe = SparsityProbe()
  model = small_model()
  for layer in model.layers[2:]:
    randomize_doping(layer)  # S starts at zero: every block would count as pruned
  fit_steps(model, steps=8, end_step=6, frequency=2, callbacks=[probe])
  matrix = doped_matrices(model)[0]
  schedule = annealing.AnnealingSchedule(0, 6, 2)
  expected, sparsity = [], 0.0
  for step in range(1, 9):  # the n-th batch is step n, as in tfmot
    if schedule.updates_mask(step):
      keep = kept_block_count(matrix.doping.shape, matrix.plan.block_size,
                              schedule.sparsity(step, matrix.plan.doping_sparsity))
      sparsity = 1 - keep / np.prod(grid_shape(matrix.doping.shape, matrix.plan.block_size))
    expected.append(sparsity)
  np.testing.assert_allclose(probe.sparsities, expected)


@pytest.mark.parametrize("stop_after_epoch", [None, 1])
def test_training_stopped_before_end_step_warns_and_prunes_to_target(stop_after_epoch):
  model = small_model()
  stopper = keras.callbacks.LambdaCallback(
      on_epoch_end=lambda epoch, logs: setattr(model, "stop_training",
                                               stop_after_epoch is not None
                                               and epoch + 1 >= stop_after_epoch))
  fit_steps(model, steps=6, end_step=200, frequency=2, callbacks=[stopper])
  with pytest.warns(UserWarning, match="denser than their compression allows") as record:
    final = k3.finalize(model)
  assert any("% dense" in str(warning.message) for warning in record)
  for matrix in doped_matrices(final):
    assert_at_target(matrix)
  assert k3.compression_report(final)["meets_target"].all()


def test_finalize_can_raise_and_rejects_bad_arguments():
  model = fit_steps(small_model(), steps=6, end_step=200, frequency=2)
  with pytest.raises(ValueError, match="denser than their compression allows"):
    k3.finalize(model, on_missed_target="raise")
  with pytest.raises(ValueError, match="on_missed_target"):
    k3.finalize(model, on_missed_target="ignore")
  with pytest.raises(ValueError, match="expects a Keras 3 Model"):
    k3.finalize("model")


def test_finalize_clears_negative_zeros_and_cmr_rates():
  model = fit_steps(small_model(), steps=12, end_step=8,
                    callbacks=[k3.CoMatrixDropout(0.5, end_step=100)])
  layer = model.layers[2]
  values = layer.matrix.doping_values()
  values[values == 0] = -0.0
  layer.matrix.doping.assign(values)
  layer.cmr_rate.assign(0.3)
  final = finalize_quietly(model)
  for matrix in doped_matrices(final):
    values = matrix.doping_values()
    assert not np.any((values == 0) & np.signbit(values))
  assert float(keras.ops.convert_to_numpy(layer.cmr_rate)) == 0.0


class RateProbe(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.rates = []

  def on_train_batch_begin(self, batch, logs=None):
    self.rates.append(float(keras.ops.convert_to_numpy(self.model.layers[2].cmr_rate)))


def test_cmr_decays_over_the_annealing_window_whatever_the_callback_order():
  probe = RateProbe()
  model = small_model()
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data(batches=6)
  # CoMatrixDropout before SparsityAnnealing: the window is read at each step.
  history = model.fit(x, y, batch_size=4, epochs=1, verbose=0,
                      callbacks=[k3.CoMatrixDropout(0.8), annealing_callback(0, 4, 2), probe])
  np.testing.assert_allclose(probe.rates, [0.8, 0.6, 0.4, 0.2, 0.0, 0.0], atol=1e-6)
  assert history.history["cmr_rate"] == [0.0]
  assert set(history.history) >= {f"sparsity/{layer.name}" for layer in model.layers[2:]}
  assert float(keras.ops.convert_to_numpy(model.layers[2].cmr_rate)) == 0.0


def test_callbacks_reject_models_without_doped_layers_and_bad_windows():
  inputs = keras.Input((4,))
  model = keras.Model(inputs, k3.DopedDense(4, compression=1.5, doped=False)(inputs))
  model.compile("adam", "mse")
  for callback in (annealing_callback(), k3.CoMatrixDropout()):
    with pytest.raises(ValueError, match="no doped layer"):
      model.fit(np.ones((4, 4)), np.ones((4, 4)), verbose=0, callbacks=[callback])
  with pytest.raises(ValueError, match="begin_step < end_step"):
    k3.SparsityAnnealing(begin_step=5, end_step=5)
  with pytest.raises(ValueError, match="frequency"):
    k3.SparsityAnnealing(frequency=0)
  with pytest.raises(ValueError, match="block_pooling_type"):
    k3.SparsityAnnealing(block_pooling_type="MIN")


def test_compression_report_equals_the_tf_keras_report_of_the_twin():
  model = fit_steps(small_model(), steps=12, end_step=8)
  model = finalize_quietly(model)
  legacy = small_model(keras_module=tf_keras, front=dkp)
  legacy.set_weights(model.get_weights())
  report, legacy_report = k3.compression_report(model), dkp.compression_report(legacy)
  columns = ["structure", "doped", "dense_params", "params", "nnz_doping", "bytes",
             "dense_bytes", "target_compression", "meets_target", "compression"]
  pd.testing.assert_frame_equal(report[columns], legacy_report[columns])
  assert list(report["type"][:-1]) == list(legacy_report["type"][:-1])


def test_a_run_resumed_with_a_new_callback_keeps_s_at_target():
  # The masks live in the callback: a new one, past end_step, starts from S's magnitudes at
  # the target (no later mask update would); the step count carries on in the optimizer.
  model = fit_steps(small_model(), steps=8, end_step=8, frequency=2)
  x, y = data(batches=2)
  model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[annealing_callback(end_step=8)])
  assert annealing.completed_steps(model) == 12
  for matrix in doped_matrices(model):
    assert_at_target(matrix)


def test_doped_layers_inside_bidirectional_and_time_distributed_anneal_to_target(tmp_path):
  tokens = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(VOCAB, 8)(tokens)
  x = keras.layers.Bidirectional(k3.DKPLSTM(8, compression=2, return_sequences=True))(x)
  x = keras.layers.TimeDistributed(k3.DopedDense(VOCAB, compression=2))(x)
  model = fit_steps(keras.Model(tokens, x), steps=8, end_step=6,
                    callbacks=[k3.CoMatrixDropout()])
  final = finalize_quietly(model, on_missed_target="raise")
  owners = [owner for layer in final.layers for owner in k3_owners(layer)]
  assert len(owners) == 3  # two cells and a DopedDense
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      assert_at_target(matrix)
  report = k3.compression_report(final)
  assert report["meets_target"].all() and report["doped"].sum() == 3  # two layers + total
  final.save(tmp_path / "wrapped.keras")
  loaded = keras.models.load_model(tmp_path / "wrapped.keras")
  x, _ = data(batches=1)
  np.testing.assert_array_equal(final.predict(x, verbose=0), loaded.predict(x, verbose=0))
