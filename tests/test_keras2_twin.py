"""keras2_twin: a Keras 3 chain of supported layers rebuilt as tf_keras (same names, weights and
outputs); everything else refused with a message naming the layer and why."""

import keras
import numpy as np
import pytest
import tf_keras

import dkp_keras as dkp
from dkp_keras import keras2_twin
from dkp_keras import keras3 as k3
from dkp_keras.keras3.doped_matrix import find_doped_owners
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping

VOCAB, STEPS = 20, 6


def every_supported_layer():
  """A Keras 3 chain of every supported layer, S random."""
  tokens = keras.Input((STEPS,), dtype="int32", name="tokens")
  x = keras.layers.Embedding(VOCAB, 8, embeddings_initializer=keras.initializers.RandomNormal(
      stddev=1.0))(tokens)
  x = keras.layers.Dropout(0.1)(x)
  x = k3.DKPLSTM(12, compression=2, return_sequences=True, name="dkp_lstm")(x)
  x = keras.layers.LSTM(10, return_sequences=True)(x)
  x = keras.layers.Bidirectional(k3.DKPLSTM(8, compression=1.5, return_sequences=True),
                                 merge_mode="sum")(x)
  x = keras.layers.TimeDistributed(k3.DopedDense(7, compression=1.2, structure="lowrank"))(x)
  x = keras.layers.Activation("relu")(x)
  x = k3.DopedDense(6, compression=2, structure="hmd", activation="tanh")(x)
  model = keras.Model(tokens, keras.layers.Dense(4, activation="softsign")(x), name="k3")
  for owner in find_doped_owners(model):
    randomize_doping(owner, scale=0.3)
  return model


def test_twin_has_the_layers_names_weights_and_outputs_of_the_keras3_model():
  model = every_supported_layer()
  twin = keras2_twin.tf_keras_twin(model)
  assert isinstance(twin, tf_keras.Model) and twin.name == "k3"
  assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
  assert [type(layer).__name__ for layer in twin.layers] == [
      type(layer).__name__ for layer in model.layers]
  assert isinstance(twin.get_layer("dkp_lstm"), dkp.DKPLSTM)
  for ours, theirs in zip(twin.layers, model.layers):  # the same values (in wrappers, in
    # another order: tf_keras' Bidirectional lists its trainable weights first)
    assert sorted(w.tobytes() for w in ours.get_weights()) == sorted(
        np.asarray(w).tobytes() for w in theirs.get_weights())
  x = np.random.default_rng(0).integers(0, VOCAB, size=(3, STEPS))
  expected = keras.ops.convert_to_numpy(model(x))
  assert np.std(expected) > 1e-3
  assert_normwise_close(twin(x).numpy(), expected)


def test_sequential_models_and_fixed_batches_carry_over():
  model = keras.Sequential([keras.Input(batch_shape=(2, STEPS, 3)),
                            k3.DKPLSTM(8, compression=2, stateful=True),
                            keras.layers.Dense(2)])
  twin = keras2_twin.tf_keras_twin(model)
  assert tuple(twin.inputs[0].shape) == (2, STEPS, 3) and twin.layers[1].stateful
  x = np.random.default_rng(1).normal(size=(2, STEPS, 3)).astype(np.float32)
  assert_normwise_close(twin(x).numpy(), keras.ops.convert_to_numpy(model(x)))


def _chain(*layers, inputs=None):
  inputs = inputs or keras.Input((STEPS, 4))
  x = inputs
  for layer in layers:
    x = layer(x)
  return keras.Model(inputs, x)


def _doubled(values):
  return values * 2


def _quantized():
  model = _chain(keras.layers.Dense(3, name="q"))
  model.get_layer("q").quantize("int8")
  return model


def _branched():
  inputs = keras.Input((STEPS, 4))
  return keras.Model(inputs, keras.layers.Add(name="join")([keras.layers.Dense(4)(inputs),
                                                            inputs]))


@pytest.mark.parametrize("make, message", [
    (lambda: _chain(keras.layers.GRU(3, name="gru")),
     r"layer 'gru' \(GRU\) is not supported for Keras 3 conversion; supported layers: .*DKPLSTM"),
    (lambda: _chain(keras.layers.Dense(3, name="lora", lora_rank=2)),
     r"layer 'lora' \(Dense\): lora_rank=2 has no tf_keras equivalent"),
    (lambda: _chain(keras.layers.Dense(3, activation="hard_sigmoid", name="hs")),
     r"layer 'hs' \(Dense\): activation='hard_sigmoid' computes another function in tf_keras"),
    (lambda: _chain(keras.layers.Dense(3, activation=_doubled, name="fn")),
     r"layer 'fn' \(Dense\): activation=.* is not a built-in Keras activation"),
    (_quantized, r"layer 'q' \(Dense\): dtype policy QuantizedDTypePolicy \(a quantized layer\)"),
    (_branched, r"layer 'join' does not simply follow .*only chains of layers"),
])
def test_what_has_no_twin_is_refused_by_name(make, message):
  with pytest.raises(keras2_twin.UnsupportedKeras3ModelError, match=message):
    keras2_twin.tf_keras_twin(make())
  assert issubclass(keras2_twin.UnsupportedKeras3ModelError, ValueError)


def test_a_keras3_file_is_recognised_and_loaded(tmp_path):
  model = _chain(k3.DopedDense(16, compression=1.2))
  model.save(tmp_path / "k3.keras")
  legacy_inputs = tf_keras.Input((STEPS, 4))
  tf_keras.Model(legacy_inputs, tf_keras.layers.Dense(3)(legacy_inputs)).save(
      tmp_path / "k2.keras")
  assert keras2_twin.saved_by_keras3(tmp_path / "k3.keras")
  assert not keras2_twin.saved_by_keras3(tmp_path / "k2.keras")
  loaded = keras2_twin.load_keras3_model(tmp_path / "k3.keras")
  assert keras2_twin.is_keras3_model(loaded) and isinstance(loaded.layers[-1], k3.DopedDense)
