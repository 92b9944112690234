"""`pipelines.training_callbacks`, each callback alone on a tiny model."""

import json

import numpy as np
import pytest
import tf_keras as keras
import dkp_keras as dkp

from pipelines import training_callbacks


def _stateful_lstm():
  inputs = keras.Input((3, 2), batch_size=1)
  x = keras.layers.Dropout(0.5, name="drop")(inputs)
  outputs = keras.layers.LSTM(4, stateful=True, name="lstm")(x)
  return keras.Model(inputs, outputs)


def test_perplexity_adds_training_and_validation_perplexity():
  callback = training_callbacks.Perplexity(lambda model: 12.5)
  callback.set_model(_stateful_lstm())
  logs = {"loss": np.log(7.0)}
  callback.on_epoch_end(0, logs)
  assert logs["perplexity"] == pytest.approx(7.0) and logs["val_perplexity"] == 12.5
  logs = {"loss": 1e9}  # a diverged loss is capped, not inf
  training_callbacks.Perplexity().on_epoch_end(0, logs)
  assert np.isfinite(logs["perplexity"]) and "val_perplexity" not in logs


def test_reset_states_zeroes_the_lstm_states():
  model = _stateful_lstm()
  model(np.ones((1, 3, 2), np.float32))
  lstm = model.get_layer("lstm")
  assert np.abs(lstm.states[0].numpy()).sum() > 0
  callback = training_callbacks.ResetStates()
  callback.set_model(model)
  callback.on_epoch_begin(1)
  assert np.abs(lstm.states[0].numpy()).sum() == 0


def test_reseed_makes_an_epochs_draws_depend_on_seed_and_epoch_only():
  keras.backend.experimental.enable_tf_random_generator()
  model = _stateful_lstm()
  layer = model.get_layer("drop")
  dkp.compat.make_random_generator(layer)
  assert training_callbacks.random_generators(model)
  callback = training_callbacks.Reseed(seed=3)
  callback.set_model(model)
  ones = np.ones((1, 3, 2), np.float32)

  def draws(epoch):
    callback.on_epoch_begin(epoch)
    return layer(ones, training=True).numpy()

  first = draws(2)
  draws(0)  # other draws in between
  np.testing.assert_array_equal(draws(2), first)
  assert not np.array_equal(draws(1), first)


def test_train_clock_sums_the_legs_of_a_resumed_run(tmp_path):
  path = tmp_path / "clock.json"
  clock = training_callbacks.TrainClock(str(path))
  clock.on_train_begin()
  clock.on_epoch_end(0, {"loss": 2.0})
  saved = json.loads(path.read_text())
  assert saved["epochs_done"] == 1 and saved["train_seconds"] >= 0
  path.write_text(json.dumps({**saved, "train_seconds": 100.0}))  # as a killed leg leaves it
  resumed = training_callbacks.TrainClock(str(path))
  resumed.on_train_begin()
  resumed.on_epoch_end(1, {"loss": 1.0})
  assert resumed.earlier_seconds == 100.0 and resumed.seconds() >= 100.0
  assert resumed.history() == {"loss": [2.0, 1.0]}
  reader = training_callbacks.TrainClock(str(path), write=False)  # another worker's
  reader.on_train_begin()
  reader.on_epoch_end(2, {"loss": 0.5})
  assert json.loads(path.read_text())["epochs_done"] == 2


def test_an_unreadable_run_file_is_named(tmp_path):
  (tmp_path / "clock.json").write_text("{not json")
  with pytest.raises(ValueError, match="clock.json is not a readable run file"):
    training_callbacks.TrainClock(str(tmp_path / "clock.json")).on_train_begin()
