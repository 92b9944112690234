"""DKPLSTMCell / DKPLSTM: equal a Keras LSTM given the reconstructed weights, in every mode."""

import inspect
import pydoc

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from hypothesis import given, settings, strategies as st

import dkp_keras as dkp
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping

STRUCTURES = ["kronecker", "lowrank", "hmd"]


def dense_twin(layer, x, **kwargs):
  """A Keras LSTM with the DKP layer's reconstructed weights."""
  twin = keras.layers.LSTM(layer.units, **kwargs)
  twin(x)
  kernel, recurrent_kernel, bias = layer.cell.dense_kernels()
  twin.set_weights([kernel, recurrent_kernel, bias])
  return twin


def inputs(batch=2, steps=4, dim=6, seed=1):
  return np.random.default_rng(seed).normal(size=(batch, steps, dim)).astype(np.float32)


@settings(max_examples=12)
@given(input_dim=st.integers(1, 12), units=st.integers(1, 10), batch=st.integers(1, 3),
       steps=st.integers(1, 4), structure=st.sampled_from(STRUCTURES), doped=st.booleans())
def test_matches_keras_lstm_with_reconstructed_weights(input_dim, units, batch, steps,
                                                       structure, doped):
  layer = dkp.DKPLSTM(units, compression=1.0, structure=structure, doped=doped,
                      return_sequences=True, structure_fraction=0.6)
  x = inputs(batch, steps, input_dim)
  try:
    layer(x)
  except ValueError as error:
    assert "compression" in str(error)
    return
  randomize_doping(layer.cell)
  twin = dense_twin(layer, x, return_sequences=True)
  assert_normwise_close(layer(x).numpy(), twin(x).numpy())


@pytest.mark.parametrize("kwargs", [
    {"return_state": True},
    {"return_sequences": True, "go_backwards": True},
    {"return_sequences": True, "unroll": True},
    {"return_sequences": True, "time_major": True},
])
def test_modes_match_keras_lstm(kwargs):
  x = inputs(3, 5, 8)
  if kwargs.get("time_major"):
    x = np.swapaxes(x, 0, 1)
  layer = dkp.DKPLSTM(12, compression=2, **kwargs)
  layer(x)
  randomize_doping(layer.cell)
  twin = dense_twin(layer, x, **kwargs)
  for ours, theirs in zip(np.atleast_1d(layer(x)), np.atleast_1d(twin(x))):
    assert_normwise_close(np.asarray(ours), np.asarray(theirs))


def test_initial_state_and_masking_match_keras_lstm():
  tokens = np.array([[3, 5, 2, 0, 0], [1, 4, 4, 2, 6]])
  embed = keras.layers.Embedding(8, 6, mask_zero=True)
  x = embed(tokens)
  state = [tf.fill((2, 12), 0.3), tf.fill((2, 12), -0.2)]
  layer = dkp.DKPLSTM(12, compression=2, return_sequences=True)
  layer(x, initial_state=state)
  randomize_doping(layer.cell)
  twin = dense_twin(layer, x, return_sequences=True)
  assert_normwise_close(layer(x, initial_state=state).numpy(),
                        twin(x, initial_state=state).numpy())


def test_stateful_carries_state_like_keras_lstm():
  x = inputs(2, 3, 6)
  layer = dkp.DKPLSTM(8, compression=2, stateful=True)
  model = keras.Sequential([keras.Input(batch_shape=(2, 3, 6)), layer])
  randomize_doping(layer.cell)
  twin = dense_twin(layer, x, stateful=True)
  twin_model = keras.Sequential([keras.Input(batch_shape=(2, 3, 6)), twin])
  twin.set_weights(list(layer.cell.dense_kernels()))
  layer.reset_states()
  twin.reset_states()
  for _ in range(3):  # the states carry over between calls
    assert_normwise_close(model.predict(x, verbose=0), twin_model.predict(x, verbose=0))
  layer.reset_states()
  twin.reset_states()
  assert_normwise_close(model.predict(x, verbose=0), twin_model.predict(x, verbose=0))


def test_standalone_cell_equals_layer():
  x = inputs()
  layer = dkp.DKPLSTM(10, compression=2, return_sequences=True)
  layer(x)
  randomize_doping(layer.cell)
  rnn = keras.layers.RNN(layer.cell, return_sequences=True)
  np.testing.assert_allclose(rnn(x).numpy(), layer(x).numpy(), atol=1e-6)


def test_dropout_only_in_training():
  x = inputs()
  layer = dkp.DKPLSTM(10, compression=2, dropout=0.5, recurrent_dropout=0.5)
  inference = layer(x, training=False).numpy()
  np.testing.assert_array_equal(layer(x, training=False).numpy(), inference)
  assert not np.allclose(layer(x, training=True).numpy(), inference)


def test_cmr_drops_doping_in_training_for_the_whole_sequence():
  x = inputs(2, 6, 8)
  layer = dkp.DKPLSTM(12, compression=1.5, return_sequences=True)
  layer(x)
  randomize_doping(layer.cell, scale=0.5)
  layer.cell.cmr_rate.assign(0.999)
  twin = keras.layers.LSTM(12, return_sequences=True)
  twin(x)
  cell = layer.cell
  twin.set_weights([cell.input_matrix.structure.dense_matrix(
      cell.input_matrix.structure_values()).T, cell.recurrent_matrix.structure.dense_matrix(
          cell.recurrent_matrix.structure_values()).T, cell.bias.numpy()])
  assert_normwise_close(layer(x, training=True).numpy(), twin(x).numpy())
  assert_normwise_close(layer(x, training=False).numpy(),
                        dense_twin(layer, x, return_sequences=True)(x).numpy())


def _lm():
  tokens = keras.Input((5,), dtype="int32")
  x = keras.layers.Embedding(20, 8)(tokens)
  x = dkp.DKPLSTM(12, compression=2, return_sequences=True, recurrent_dropout=0.1)(x)
  x = dkp.DKPLSTM(12, compression=2, structure="lowrank", structure_fraction=0.6)(x)
  return keras.Model(tokens, keras.layers.Dense(20)(x))


@pytest.mark.parametrize("suffix", [".keras", "_savedmodel"])
def test_save_load_round_trip(tmp_path, suffix):
  model = _lm()
  for layer in model.layers:
    if isinstance(layer, dkp.DKPLSTM):
      randomize_doping(layer.cell)
  tokens = np.random.default_rng(0).integers(0, 20, size=(3, 5))
  path = str(tmp_path / f"lm{suffix}")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_array_equal(loaded.predict(tokens, verbose=0),
                                model.predict(tokens, verbose=0))


def test_config_round_trip_and_cell_arguments():
  layer = dkp.DKPLSTM(16, compression=3, structure="hmd", dropout=0.2, return_state=True,
                      go_backwards=True, cmr_granularity="row")
  clone = dkp.DKPLSTM.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  assert (clone.units, clone.compression, clone.dropout, clone.structure) == (16, 3.0, 0.2, "hmd")


def test_prunable_weights_are_both_doping_matrices():
  layer = dkp.DKPLSTM(8, compression=2)
  layer(inputs(dim=8))
  names = sorted(w.name.split("/")[-1] for w in layer.get_prunable_weights())
  assert names == ["input_doping:0", "recurrent_doping:0"]


def test_meets_compression_budget_of_a_650_unit_layer():
  layer = dkp.DKPLSTM(650, compression=25)
  layer.cell.build((None, 650))
  cell = layer.cell
  dense = 4 * 650 * (650 + 650) + 4 * 650
  planned = sum(m.plan.params for m in cell.doped_matrices.values()) + 4 * 650
  assert dense / planned >= 25
  assert cell.input_matrix.structure.weight_shapes == {"kron_a": (50, 26), "kron_b": (52, 25)}
  assert 0.95 < cell.input_matrix.plan.doping_sparsity < 0.97  # ~96% sparse at 25x


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, "units"),
    ({"units": 4, "dropout": 1.5}, "dropout"),
    ({"units": 4, "recurrent_dropout": -0.1}, "recurrent_dropout"),
    ({"units": 4, "compression": 0}, "compression"),
    ({"units": 4, "structure": "cp"}, "unknown structure"),
    ({"units": 4, "block_size": (4, 1, 1)}, "block_size"),
])
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dkp.DKPLSTM(**kwargs)


def test_input_dimension_mismatch_is_rejected():
  layer = dkp.DKPLSTM(8, compression=2)
  layer(inputs(dim=8))
  with pytest.raises(ValueError, match="incompatible|expected"):
    layer(inputs(dim=5))
  with pytest.raises(ValueError, match="ndim|incompatible"):
    layer(np.ones((2, 8), np.float32))


def test_compression_beyond_the_structure_is_rejected():
  with pytest.raises(ValueError, match="compression"):
    dkp.DKPLSTM(8, compression=500)(inputs(dim=8))


def test_cmr_draw_is_shared_by_all_time_steps_inside_tf_function():
  # One draw per sequence also inside the RNN's while loop (graph mode, as in fit).
  x = inputs(2, 6, 8)
  # Whole-matrix CMR: one draw keeps or drops all of S, so each outcome is one of two.
  layer = dkp.DKPLSTM(8, compression=1.5, return_sequences=True, cmr_granularity="matrix")
  layer(x)
  cell = layer.cell
  for matrix in cell.doped_matrices.values():
    for weight in matrix.weights.values():
      weight.assign(tf.zeros_like(weight))
  cell.input_matrix.doping.assign(tf.zeros_like(cell.input_matrix.doping))
  cell.recurrent_matrix.doping.assign(
      np.random.default_rng(0).normal(0, 1.0, cell.recurrent_matrix.doping.shape))
  state = [tf.fill((2, 8), 0.5), tf.fill((2, 8), 0.5)]
  kept = layer(x, initial_state=state, training=False).numpy()
  cell.cmr_rate.assign(0.9999)
  dropped = layer(x, initial_state=state, training=True).numpy()
  assert not np.allclose(kept, dropped, atol=1e-4)
  cell.cmr_rate.assign(0.5)
  train_call = tf.function(lambda: layer(x, initial_state=state, training=True))
  outcomes = set()
  for _ in range(12):
    out = train_call().numpy()
    is_kept, is_dropped = np.allclose(out, kept, atol=1e-5), np.allclose(out, dropped, atol=1e-5)
    assert is_kept or is_dropped, "S was kept for some time steps and dropped for others"
    outcomes.add(is_kept)
  assert outcomes == {True, False}


def test_layer_lists_the_cell_arguments_explicitly():
  cell_parameters = inspect.signature(dkp.DKPLSTMCell.__init__).parameters
  layer_parameters = inspect.signature(dkp.DKPLSTM.__init__).parameters
  for name, parameter in cell_parameters.items():
    if name in ("self", "kwargs"):
      continue
    assert layer_parameters[name].default == parameter.default, name
    # Each one is a class attribute IDEs and help() see, reading the cell's value.
    assert name in vars(dkp.DKPLSTM), name
  assert "recurrent_dropout" in pydoc.render_doc(dkp.DKPLSTM, renderer=pydoc.plaintext)
  layer = dkp.DKPLSTM(4, compression=1.5, recurrent_dropout=0.25, structure="lowrank")
  assert (layer.recurrent_dropout, layer.structure) == (0.25, "lowrank")
  with pytest.raises(AttributeError, match="read.only"):
    layer.dropout = 0.5


def test_cell_takes_inputs_raw_or_projected():
  x = inputs(2, 1, 6)[:, 0]
  cell = dkp.DKPLSTMCell(5, compression=1.5)
  states = [tf.ones((2, 5)), tf.zeros((2, 5))]
  raw, _ = cell(x, states, training=False)
  randomize_doping(cell)
  raw, _ = cell(x, states, training=False)
  projected = dkp.lstm.ProjectedInputs(cell.project_inputs(tf.constant(x)))
  from_projection, _ = cell(projected, states, training=False)
  np.testing.assert_allclose(from_projection.numpy(), raw.numpy(), atol=1e-6)
