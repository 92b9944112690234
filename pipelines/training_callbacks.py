"""The tf_keras callbacks `pipelines.training.fit_lm` trains a language model with.

* `ResetStates`: every epoch starts from zero LSTM states (stateful training);
* `Perplexity`: ``perplexity`` and ``val_perplexity`` in the epoch's logs;
* `Reseed`: dropout and CMR draws depend on (seed, layer, epoch) only, so a
  resumed run draws what an uninterrupted one would;
* `TrainClock`: training seconds and per-epoch logs summed over the
  invocations of a resumed run, saved beside each epoch's checkpoint.

What they compute is `pipelines.callback_logic`'s (shared with the Keras 3
callbacks, `pipelines.keras3_callbacks`); these classes give it tf_keras.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from dkp_keras import compat
from dkp_keras import traversal
from pipelines import callback_logic


class ResetStates(callback_logic.ResetStates, keras.callbacks.Callback):
  """Starts every epoch from zero LSTM states (stateful training)."""

  rnn_class = keras.layers.RNN
  all_layers = staticmethod(traversal.all_layers)


class Perplexity(callback_logic.Perplexity, keras.callbacks.Callback):
  """Adds ``perplexity`` (training) and ``val_perplexity`` to the epoch's logs.

  Args:
    evaluate: a function of the model returning its validation perplexity
      (e.g. `pipelines.training.evaluate_perplexity` on the validation split), or
      None for training perplexity only.
  """

  def single_replica(self):
    return tf.distribute.get_strategy().num_replicas_in_sync == 1


def random_generators(model):
  """The `tf.random.Generator` of every layer that has made one (in layer order)."""
  generators = []
  for layer in traversal.all_layers(model):
    generator = compat.random_generator(layer)
    if generator is not None:
      generators.append(generator)
  return generators


class Reseed(callback_logic.Reseed, keras.callbacks.Callback):
  """Reseeds every layer's `tf.random.Generator` (dropout, CMR) from (seed, layer, epoch).

  The layers' generators must exist when training begins (Keras makes them
  lazily).

  Args:
    seed: the run's seed.
  """

  generators = staticmethod(random_generators)

  @staticmethod
  def reset(generator, seed):
    generator.reset_from_seed(seed)


class TrainClock(callback_logic.TrainClock, keras.callbacks.Callback):
  """Training seconds and per-epoch logs summed over the invocations of a resumed run.

  Args:
    path: the JSON file that carries them across invocations (None: none).
    write: False where another worker (the chief) keeps the file.
  """
