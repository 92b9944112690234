"""`pipelines.keras3_callbacks` that differ from the tf_keras ones: `Reseed`."""

import keras
import numpy as np

from dkp_keras import keras3 as k3
from pipelines import keras3_callbacks


def _model_with_random_layers():
  inputs = keras.Input((3, 4), batch_size=2)
  x = keras.layers.Dropout(0.5, name="drop")(inputs)
  outputs = k3.DKPLSTM(8, compression=2, return_sequences=True, name="lstm")(x)
  return keras.Model(inputs, outputs)


def test_seed_generator_states_are_the_models_generators_not_its_weights():
  model = _model_with_random_layers()
  states = keras3_callbacks.seed_generator_states(model)
  assert len(states) >= 2  # the Dropout's and the DKP layer's (CMR)
  weights = {id(w) for w in model.weights}
  assert all(id(state) not in weights and tuple(state.shape) == (2,) for state in states)


def test_reseed_makes_an_epochs_draws_depend_on_seed_and_epoch_only():
  model = _model_with_random_layers()
  callback = keras3_callbacks.Reseed(seed=3)
  callback.set_model(model)
  ones = np.ones((2, 3, 4), np.float32)

  def draws(epoch):
    callback.on_epoch_begin(epoch)
    return np.concatenate([keras.ops.convert_to_numpy(model.get_layer("drop")(ones, training=True)),
                           keras.ops.convert_to_numpy(model(ones, training=True))], axis=-1)

  first = draws(2)
  draws(0)  # other draws in between
  np.testing.assert_array_equal(draws(2), first)
  assert not np.array_equal(draws(1), first)
