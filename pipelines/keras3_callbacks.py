"""The Keras 3 callbacks `pipelines.training.fit_lm` trains a Keras 3 language model with.

The tf_keras ones' work (`pipelines.callback_logic`) on Keras 3's ``Callback``,
whose ``model`` is current on every backend (on jax it first syncs the training
state into the variables, and reads them back after ``on_epoch_begin``).
Importing this module imports Keras 3, never tf_keras.
"""

from __future__ import annotations

import keras
import numpy as np

from dkp_keras.keras3.doped_matrix import all_layers as _all_layers
from pipelines import callback_logic


class ResetStates(callback_logic.ResetStates, keras.callbacks.Callback):
  """Starts every epoch from zero LSTM states (stateful training)."""

  rnn_class = keras.layers.RNN
  all_layers = staticmethod(_all_layers)


class Perplexity(callback_logic.Perplexity, keras.callbacks.Callback):
  """Adds ``perplexity`` (training) and ``val_perplexity`` to the epoch's logs.

  Args:
    evaluate: a function of the model returning its validation perplexity, or
      None for training perplexity only.
  """


def seed_generator_states(model):
  """The state variable of every `keras.random.SeedGenerator` of ``model`` (dropout, CMR), in
  layer order: Keras 3 lists them in ``model.variables`` beside the weights."""
  weights = {id(weight) for weight in model.weights}
  states, seen = [], set()
  for variable in model.variables:
    if id(variable) not in weights and id(variable) not in seen:
      seen.add(id(variable))
      states.append(variable)
  return states


class Reseed(callback_logic.Reseed, keras.callbacks.Callback):
  """Reseeds every `keras.random.SeedGenerator` of the model from (seed, layer, epoch), and
  on the torch backend torch's global generator too.

  Keras' dropout on torch draws from torch's global generator, not from its
  layer's `SeedGenerator`, where that generator was made without a seed (as
  `keras.layers.Dropout(rate)` makes it); no checkpoint holds that generator.

  Args:
    seed: the run's seed.
  """

  generators = staticmethod(seed_generator_states)

  @staticmethod
  def reset(generator, seed):
    generator.assign(np.array([seed, 0]).astype(generator.dtype))

  def on_epoch_begin(self, epoch, logs=None):
    super().on_epoch_begin(epoch, logs)
    if keras.backend.backend() == "torch":
      # Also seeds Python's, NumPy's (and TensorFlow's, where imported) global generators.
      keras.utils.set_random_seed(
          callback_logic.epoch_seed(self.seed, epoch, len(self.generators(self.model))))


class TrainClock(callback_logic.TrainClock, keras.callbacks.Callback):
  """Training seconds and per-epoch logs summed over the invocations of a resumed run.

  Args:
    path: the JSON file that carries them across invocations (None: none).
    write: False where another worker keeps the file.
  """
