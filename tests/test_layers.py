"""DopedDense: equals its dense reconstruction, serializes, prunes only S, rejects bad input."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from hypothesis import given, settings, strategies as st
from tensorflow_model_optimization.sparsity.keras import PrunableLayer

import dkp_keras as dkp
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping

STRUCTURES = ["kronecker", "lowrank", "hmd"]


def dense_reference(layer, x):
  y = x @ layer.dense_kernel()
  return y + layer.bias.numpy() if layer.bias is not None else y


@settings(max_examples=20)
@given(units=st.integers(1, 24), input_dim=st.integers(1, 24), batch=st.integers(1, 4),
       structure=st.sampled_from(STRUCTURES), doped=st.booleans(), use_bias=st.booleans(),
       compression=st.floats(1.0, 3.0))
def test_matches_dense_reconstruction(units, input_dim, batch, structure, doped, use_bias,
                                      compression):
  layer = dkp.DopedDense(units, compression=compression, structure=structure, doped=doped,
                         use_bias=use_bias, bias_initializer="random_normal")
  x = np.random.default_rng(1).normal(size=(batch, input_dim)).astype(np.float32)
  try:
    layer.build((None, input_dim))
  except ValueError as error:  # tiny layers may not fit some structures: must say so
    assert "compression" in str(error)
    return
  randomize_doping(layer)
  assert_normwise_close(layer(x).numpy(), dense_reference(layer, x))


def test_any_input_rank_and_activation():
  layer = dkp.DopedDense(12, compression=2, activation="relu")
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 8)).astype(np.float32)
  y = layer(x).numpy()
  assert y.shape == (2, 3, 4, 12)
  reference = np.maximum(dense_reference(layer, x.reshape(-1, 8)), 0).reshape(y.shape)
  assert_normwise_close(y, reference)


def test_symbolic_shape_and_drop_in_model():
  inputs = keras.Input((None, 16))
  outputs = dkp.DopedDense(8, compression=2)(inputs)
  assert outputs.shape.as_list() == [None, None, 8]
  model = keras.Model(inputs, outputs)
  model.compile("adam", "mse")
  x = np.ones((4, 3, 16), np.float32)
  model.fit(x, np.zeros((4, 3, 8)), epochs=1, verbose=0)


def test_initial_scale_follows_kernel_initializer():
  # The factors are rescaled so W starts at the dense initializer's RMS.
  layer = dkp.DopedDense(256, compression=16, kernel_initializer=keras.initializers.RandomUniform(
      -0.05, 0.05), doped=False)
  layer.build((None, 128))
  rms = np.sqrt(np.mean(layer.dense_kernel() ** 2))
  assert 0.5 * 0.05 / np.sqrt(3) < rms < 2 * 0.05 / np.sqrt(3)


def test_prunable_weights_are_only_the_doping_matrix():
  layer = dkp.DopedDense(16, compression=2)
  layer.build((None, 16))
  assert isinstance(layer, PrunableLayer)
  assert [w.name for w in layer.get_prunable_weights()] == [layer.matrix.doping.name]
  plain = dkp.DopedDense(16, compression=2, doped=False)
  plain.build((None, 16))
  assert plain.get_prunable_weights() == []


def test_config_round_trip_rebuilds_the_same_structure():
  layer = dkp.DopedDense(30, compression=2, structure="hmd", activation="tanh",
                         structure_options={"dense_fraction": 0.3}, block_size=(2, 2),
                         cmr_granularity="row")
  layer.build((None, 20))
  clone = dkp.DopedDense.from_config(layer.get_config())
  clone.build((None, 20))
  assert clone.matrix.plan == layer.matrix.plan
  assert clone.get_config() == layer.get_config()


def _model():
  inputs = keras.Input((6,))
  x = dkp.DopedDense(16, compression=1.5, activation="relu")(inputs)
  outputs = dkp.DopedDense(8, compression=1.5, structure="lowrank")(x)
  model = keras.Model(inputs, outputs)
  for layer in model.layers[1:]:
    randomize_doping(layer)
  return model


@pytest.mark.parametrize("suffix", [".keras", "_savedmodel"])
def test_save_load_round_trip(tmp_path, suffix):
  model = _model()
  x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
  path = str(tmp_path / f"model{suffix}")
  model.save(path)
  loaded = keras.models.load_model(path)  # no custom_objects: the layers are registered
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_cmr_applies_in_training_only():
  layer = dkp.DopedDense(8, compression=1.5)
  x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
  layer.build(x.shape)
  randomize_doping(layer, scale=1.0)
  layer.cmr_rate.assign(0.999)
  inference = layer(x, training=False).numpy()
  assert_normwise_close(inference, dense_reference(layer, x))
  structure_only = layer.matrix.structure.matmul(x, layer.matrix.structure_values()) + \
      layer.bias.numpy()
  assert_normwise_close(layer(x, training=True).numpy(), structure_only)
  layer.cmr_rate.assign(0.0)
  assert_normwise_close(layer(x, training=True).numpy(), inference)


def test_row_granularity_drops_whole_output_rows():
  layer = dkp.DopedDense(64, compression=1.5, cmr_granularity="row", use_bias=False)
  x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
  layer.build(x.shape)
  randomize_doping(layer, scale=1.0)
  layer.cmr_rate.assign(0.5)
  full = layer(x, training=False).numpy()
  structure_only = layer.matrix.structure.matmul(x, layer.matrix.structure_values())
  dropped = layer(x, training=True).numpy()
  kept_rows = np.all(np.isclose(dropped, full, atol=1e-5), axis=0)
  dropped_rows = np.all(np.isclose(dropped, structure_only, atol=1e-5), axis=0)
  assert np.all(kept_rows | dropped_rows)          # each output row: all of S or none
  assert 10 < dropped_rows.sum() < 54               # about half the rows dropped


def test_block_granularity_drops_whole_blocks_of_s():
  layer = dkp.DopedDense(16, compression=1.5, cmr_granularity="block", block_size=(4, 1))
  layer.build((None, 12))
  randomize_doping(layer, scale=1.0)
  layer.cmr_rate.assign(0.5)
  kept = layer._doping_kernel(layer.matrix, training=True).numpy() / layer.matrix.doping_values()
  blocks = kept.reshape(3, 4, 16)  # [in, out] kernel: 4 consecutive inputs of one output
  assert np.all(blocks == blocks[:, :1, :])
  assert set(np.unique(kept)) == {0.0, 1.0} and 5 < np.sum(blocks[:, 0] == 0) < 43
  np.testing.assert_array_equal(layer._doping_kernel(layer.matrix, training=False),
                                layer.matrix.doping_values())


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, "units"),
    ({"units": -3}, "units"),
    ({"units": 8, "compression": 0.5}, "compression"),
    ({"units": 8, "compression": "high"}, "compression"),
    ({"units": 8, "structure": "tucker"}, "unknown structure"),
    ({"units": 8, "block_size": (0, 4)}, "block_size"),
    ({"units": 8, "block_size": (4,)}, "block_size"),
    ({"units": 8, "cmr_granularity": "column"}, "granularity"),
    ({"units": 8, "structure_fraction": 0.0}, "structure_fraction"),
])
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dkp.DopedDense(**kwargs)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_compression_beyond_the_structure_is_rejected(structure):
  layer = dkp.DopedDense(64, compression=5000, structure=structure)
  with pytest.raises(ValueError, match="compression"):
    layer.build((None, 64))


def test_input_dimension_mismatch_is_rejected():
  layer = dkp.DopedDense(8, compression=2)
  layer(np.ones((1, 16), np.float32))
  with pytest.raises(ValueError, match="incompatible|expected axis"):
    layer(np.ones((1, 12), np.float32))


def test_unknown_input_dimension_is_rejected():
  with pytest.raises(ValueError, match="last dimension"):
    dkp.DopedDense(8).build(tf.TensorShape([None, None]))
