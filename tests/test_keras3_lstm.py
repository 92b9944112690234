"""Keras 3 DKPLSTM / DKPLSTMCell: the tf_keras layer's twin in every mode both Kerases share,
trains with dropout and CMR, `.keras` round trips exact."""

import inspect
import pydoc

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import dkp_keras as dkp
from dkp_keras import keras3 as k3
from dkp_keras.doped_layer_base import CellArgument, ProjectedInputs
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping

BATCH, STEPS, FEATURES, UNITS = 2, 5, 10, 12


def twins(**arguments):
  """A tf_keras DKPLSTM with random S and its Keras 3 twin holding the same weights."""
  legacy = dkp.DKPLSTM(UNITS, **arguments)
  legacy.build((BATCH, STEPS, FEATURES))
  if legacy.cell.doped:
    randomize_doping(legacy.cell, scale=0.3)
  twin = k3.DKPLSTM(UNITS, **arguments)
  twin.build((BATCH, STEPS, FEATURES))
  assert ([w.name.split("/")[-1].split(":")[0] for w in legacy.weights]
          == [w.name for w in twin.weights])
  assert [tuple(w.shape) for w in legacy.weights] == [tuple(w.shape) for w in twin.weights]
  twin.set_weights(legacy.get_weights())
  return legacy, twin


def assert_same_outputs(twin_outputs, legacy_outputs):
  twin_outputs = twin_outputs if isinstance(twin_outputs, (list, tuple)) else [twin_outputs]
  legacy_outputs = legacy_outputs if isinstance(legacy_outputs, list) else [legacy_outputs]
  assert len(twin_outputs) == len(legacy_outputs)
  for ours, theirs in zip(twin_outputs, legacy_outputs):
    theirs = theirs.numpy()
    assert np.std(theirs) > 1e-3  # a comparison of something
    assert_normwise_close(keras.ops.convert_to_numpy(ours), theirs)


def inputs(seed=0):
  return np.random.default_rng(seed).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)


@pytest.mark.parametrize("arguments", [
    {"compression": 3, "return_sequences": True},
    {"compression": 3, "structure": "lowrank"},
    {"compression": 2, "structure": "hmd", "return_sequences": True},
    {"compression": 3, "doped": False, "return_sequences": True},
    {"compression": 3, "use_bias": False, "unit_forget_bias": False},
    {"compression": 3, "precondition_factors": True, "return_sequences": True},
    {"compression": 3, "go_backwards": True, "return_sequences": True},
    {"compression": 3, "return_state": True},
    {"compression": 3, "unroll": True, "return_sequences": True},
    # Not hard_sigmoid: Keras 2 and Keras 3 define it differently.
    {"compression": 3, "activation": "relu", "recurrent_activation": "softsign"},
], ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_tf_keras_weights_give_the_same_outputs(arguments):
  legacy, twin = twins(**arguments)
  x = inputs()
  assert_same_outputs(twin(x), legacy(x))


def test_masked_steps_and_initial_state_match_tf_keras():
  legacy, twin = twins(compression=3, return_sequences=True)
  x = inputs()
  mask = np.array([[True] * STEPS, [True] * 3 + [False] * (STEPS - 3)])
  state = [np.random.default_rng(3).normal(size=(BATCH, UNITS)).astype(np.float32)
           for _ in range(2)]
  assert_same_outputs(twin(x, mask=mask, initial_state=state),
                      legacy(x, mask=tf.constant(mask),
                             initial_state=[tf.constant(s) for s in state]))


def test_stateful_layers_carry_the_same_state():
  legacy, twin = twins(compression=3, stateful=True)
  for seed in (0, 1):
    x = inputs(seed)
    assert_same_outputs(twin(x), legacy(x))


def test_cell_in_a_plain_rnn_matches_the_layer():
  _, twin = twins(compression=3, return_sequences=True)
  rnn = keras.layers.RNN(k3.DKPLSTMCell(UNITS, compression=3), return_sequences=True)
  rnn.build((BATCH, STEPS, FEATURES))
  rnn.set_weights(twin.get_weights())
  x = inputs()
  assert_normwise_close(keras.ops.convert_to_numpy(rnn(x)), keras.ops.convert_to_numpy(twin(x)))


def test_cell_takes_inputs_raw_or_projected():
  # The layer's loop hands the cell ProjectedInputs; no flag on the cell says which it gets.
  _, twin = twins(compression=3)
  cell, x = twin.cell, inputs()[:, 0]
  states = [keras.ops.ones((BATCH, UNITS)), keras.ops.zeros((BATCH, UNITS))]
  raw, _ = cell(x, states)
  from_projection, _ = cell(ProjectedInputs(cell.project_inputs(x)), states)
  assert_normwise_close(keras.ops.convert_to_numpy(from_projection),
                        keras.ops.convert_to_numpy(raw))


def test_recurrent_s_is_dropped_by_rows_for_the_whole_sequence():
  # Rate ~1 drops every row of both S: the outputs are those of the LSTM without S.
  _, twin = twins(compression=3, return_sequences=True)
  without_s = k3.DKPLSTM(UNITS, compression=3, return_sequences=True)
  without_s.build((BATCH, STEPS, FEATURES))
  without_s.set_weights([np.zeros_like(w) if "doping" in v.name else w
                         for v, w in zip(twin.weights, twin.get_weights())])
  twin.cell.cmr_rate.assign(0.999999)
  x = inputs()
  assert_normwise_close(keras.ops.convert_to_numpy(twin(x, training=True)),
                        keras.ops.convert_to_numpy(without_s(x)))
  assert not np.allclose(keras.ops.convert_to_numpy(twin(x)),
                         keras.ops.convert_to_numpy(without_s(x)), atol=1e-3)


def test_trains_with_dropout_and_round_trips_a_keras_file(tmp_path):
  tokens = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(20, FEATURES)(tokens)
  x = k3.DKPLSTM(UNITS, compression=3, return_sequences=True, dropout=0.2,
                 recurrent_dropout=0.2)(x)
  model = keras.Model(tokens, k3.DopedDense(20, compression=2)(x))
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  data = np.random.default_rng(0).integers(0, 20, size=(16, STEPS))
  model.fit(data, data, batch_size=8, epochs=2, verbose=0,
            callbacks=[k3.SparsityAnnealing(0, 4, 2), k3.CoMatrixDropout()])
  model = k3.finalize(model, on_missed_target="raise")
  path = tmp_path / "lstm.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  for before, after in zip(model.weights, loaded.weights):
    assert (keras.ops.convert_to_numpy(before).tobytes()
            == keras.ops.convert_to_numpy(after).tobytes())
  np.testing.assert_array_equal(model.predict(data, verbose=0), loaded.predict(data, verbose=0))
  assert k3.compression_report(model)["meets_target"].all()


def test_config_round_trip_and_cell_arguments_on_the_layer():
  layer = k3.DKPLSTM(8, compression=4, structure="lowrank", dropout=0.1, block_size=(2, 1),
                     return_sequences=True, seed=2)
  config = layer.get_config()
  assert k3.DKPLSTM.from_config(config).get_config() == config
  assert (layer.units, layer.compression, layer.dropout, layer.block_size) == (8, 4.0, 0.1, (2, 1))
  with pytest.raises(ValueError, match="dropout must be in"):
    k3.DKPLSTM(8, dropout=1.0)


def test_layer_lists_the_cell_arguments_explicitly():
  cell_parameters = inspect.signature(k3.DKPLSTMCell.__init__).parameters
  layer_parameters = inspect.signature(k3.DKPLSTM.__init__).parameters
  for name, parameter in cell_parameters.items():
    if name in ("self", "kwargs"):
      continue
    assert layer_parameters[name].default == parameter.default, name
    if name not in ("units", "compression"):
      assert layer_parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    # Each one is a read-only descriptor on the class, which IDEs and help() see.
    assert isinstance(vars(k3.DKPLSTM)[name], CellArgument), name
  assert set(k3.DKPLSTM.cell_arguments) == set(cell_parameters) - {"self", "kwargs"}
  assert "recurrent_dropout" in pydoc.render_doc(k3.DKPLSTM, renderer=pydoc.plaintext)
  layer = k3.DKPLSTM(4, compression=1.5, recurrent_dropout=0.25, structure="lowrank", seed=3)
  assert (layer.recurrent_dropout, layer.structure, layer.seed) == (0.25, "lowrank", 3)
  with pytest.raises(AttributeError, match="read.only"):
    layer.dropout = 0.5


def test_bidirectional_matches_tf_keras():
  legacy = tf_keras.layers.Bidirectional(dkp.DKPLSTM(UNITS, compression=3,
                                                     return_sequences=True))
  legacy.build((BATCH, STEPS, FEATURES))
  randomize_doping(legacy.forward_layer.cell, seed=1)
  randomize_doping(legacy.backward_layer.cell, seed=2)
  twin = keras.layers.Bidirectional(k3.DKPLSTM(UNITS, compression=3, return_sequences=True))
  twin.build((BATCH, STEPS, FEATURES))
  # Per direction: the two Kerases order a wrapper's list differently (tf_keras puts all
  # trainable weights first), each DKPLSTM's own list is the same.
  twin.forward_layer.set_weights(legacy.forward_layer.get_weights())
  twin.backward_layer.set_weights(legacy.backward_layer.get_weights())
  x = inputs()
  assert_same_outputs(twin(x), legacy(x))


@pytest.mark.parametrize("unroll", [False, True])
def test_one_cmr_draw_per_sequence(unroll):
  # The masked S of both matrices are formed once, before the loop, not once per step.
  _, twin = twins(compression=3, return_sequences=True, unroll=unroll)
  cell, draws = twin.cell, []
  original = cell._doping_kernel  # pylint: disable=protected-access

  def counting(matrix, training):
    draws.append(training)
    return original(matrix, training)

  cell._doping_kernel = counting  # pylint: disable=protected-access
  twin.cell.cmr_rate.assign(0.5)
  twin(inputs(), training=True)
  assert len(draws) == 2
