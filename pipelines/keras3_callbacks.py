"""The Keras 3 callbacks `pipelines.training.fit_lm` trains a Keras 3 language model with.

The tf_keras ones' work (`pipelines.callback_logic`) on Keras 3's ``Callback``,
whose ``model`` is current on every backend (on jax it first syncs the training
state into the variables). There is no `Reseed` (it reseeds tf_keras'
`tf.random.Generator`s): a resumed Keras 3 run continues from its checkpoint,
but its dropout and CMR draws need not be those of an uninterrupted run.
Importing this module imports Keras 3, never tf_keras.
"""

from __future__ import annotations

import keras

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


class TrainClock(callback_logic.TrainClock, keras.callbacks.Callback):
  """Training seconds and per-epoch logs summed over the invocations of a resumed run.

  Args:
    path: the JSON file that carries them across invocations (None: none).
    write: False where another worker keeps the file.
  """
