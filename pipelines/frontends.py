"""The two Kerases a language model is built and trained with: the seam between them.

`pipelines.models` builds the language model and `pipelines.training` trains it
once, for either Keras; what differs between tf_keras (Keras 2, the default:
tfmot annealing, tf.distribute) and Keras 3 (any backend, ``KERAS_BACKEND``:
the annealing callback owns S's masks, `dkp_keras.keras3`) is a `Frontend`.
Importing this module imports no Keras: a front end imports its own Keras (and
only its own) on first use, so a Keras 3 run never imports tf_keras or tfmot
nor sets ``TF_USE_LEGACY_KERAS``.

>>> get_frontend("3").name
'Keras 3'
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

from pipelines import callback_logic
from pipelines import choices


class Frontend:
  """One Keras, its DKP layers and the training pieces that differ between the two.

  ``keras`` is the Keras module (`tf_keras` or `keras`), ``dkp`` the DKP front
  end for it (`dkp_keras` or `dkp_keras.keras3`: the same names, `DKPLSTM`,
  `DopedDense`, `SparsityAnnealing`, `CoMatrixDropout`, `finalize`,
  `compression_report`), ``callbacks`` the module of `ResetStates`,
  `Perplexity` and `TrainClock`. Each is imported on first use.
  """

  version = ""
  name = ""
  _modules = {}  # attribute -> module name
  # Methods (`pipelines.models.METHODS`) this Keras cannot train -> why.
  unsupported_methods = {}

  def __getattr__(self, attribute):
    if attribute not in self._modules:
      raise AttributeError(attribute)
    module = importlib.import_module(self._modules[attribute])
    setattr(self, attribute, module)
    return module

  def owns(self, model):
    """Whether ``model`` is a model of this Keras (a Keras not yet imported owns none)."""
    module = sys.modules.get(self._modules["keras"])
    return module is not None and isinstance(model, module.Model)

  def make_strategy(self, name="default"):
    """The distribution strategy called ``name`` (`choices.STRATEGIES`)."""
    raise NotImplementedError

  def seed(self, seed):
    """Seeds the weights and the dropout / CMR draws."""
    self.keras.utils.set_random_seed(seed)

  def annealing(self, model, end_step, frequency, block_switch_step, block_pooling,
                start_at_target):
    """(model to train, callback) that anneal every doped S of ``model`` from step 0."""
    raise NotImplementedError

  def make_random_generators(self, model):
    """Creates the random layers' generators now, where this Keras makes them lazily."""

  def epoch_callbacks(self, seed, carry_state):
    """The callbacks every epoch of a run needs (reseeding, state resets)."""
    return [self.callbacks.Reseed(seed)] + (
        [self.callbacks.ResetStates()] if carry_state else [])

  def strip(self, model):
    """``model`` without training-only wrappers (for evaluation)."""
    return model

  def carries_rnn_state(self):
    """Whether a stateful RNN keeps its states from one batch to the next here."""
    return True

  def reset_states(self, model):
    """Zeroes the states of every stateful RNN in ``model``."""
    callback_logic.reset_stateful_rnns(model, self.keras.layers.RNN,
                                       self.callbacks.ResetStates.all_layers)

  def recurrent_layers(self, model):
    return [layer for layer in model.layers if isinstance(layer, self.keras.layers.RNN)]


class TfKeras(Frontend):
  """tf_keras (Keras 2): tfmot wraps each doped layer; every method and strategy."""

  version, name = "2", "tf_keras"
  _modules = {"keras": "tf_keras", "dkp": "dkp_keras",
              "callbacks": "pipelines.training_callbacks",
              "tfmot": "tensorflow_model_optimization.sparsity.keras",
              "compat": "dkp_keras.compat", "traversal": "dkp_keras.traversal"}

  def make_strategy(self, name="default"):
    """The `tf.distribute` strategy called ``name`` (multiworker reads ``TF_CONFIG``)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if name == "default":
      return tf.distribute.get_strategy()
    if name == "mirrored":
      # Reduce through one device: with collective all-reduce, tfmot's per-layer
      # mask-update reductions and the gradient reduction can pair up out of order
      # between replicas ("Shape mismatch in the collective instance").
      return tf.distribute.MirroredStrategy(
          cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
      return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {choices.STRATEGIES}")

  def seed(self, seed):
    # Generator-backed random layers: their state is checkpointed, so dropout and
    # CMR draws continue exactly after --resume.
    self.keras.backend.experimental.enable_tf_random_generator()
    super().seed(seed)

  def annealing(self, model, end_step, frequency, block_switch_step, block_pooling,
                start_at_target):
    model = self.dkp.prepare_for_annealing(
        model, 0, end_step, frequency, start_at_target=start_at_target,
        early_block_size=None if block_switch_step is None else (1, 1),
        block_pooling_type=block_pooling)
    return model, self.dkp.SparsityAnnealing(block_switch_step=block_switch_step)

  def make_random_generators(self, model):
    """Keras makes layers' generators lazily; `Reseed` needs them now."""
    for layer in self.traversal.all_layers(model):
      self.compat.make_random_generator(layer)

  def strip(self, model):
    return self.tfmot.strip_pruning(model)


class Keras3(Frontend):
  """Keras 3 on the backend ``KERAS_BACKEND`` names: the callback owns S's masks."""

  version, name = "3", "Keras 3"
  _modules = {"keras": "keras", "dkp": "dkp_keras.keras3",
              "callbacks": "pipelines.keras3_callbacks"}
  unsupported_methods = {"prune": "it prunes with tfmot, which has no Keras 3 support",
                         "int8": "it quantizes a trained tf_keras model",
                         "int4": "it quantizes a trained tf_keras model"}

  def make_strategy(self, name="default"):
    """One device: Keras 3 runs here use no tf.distribute strategy."""
    if name != "default":
      raise ValueError(f"--strategy {name} is a tf.distribute strategy of the tf_keras "
                       f"path; --keras 3 trains on one device (drop --strategy, or use "
                       f"--keras 2)")
    return OneDevice()

  def carries_rnn_state(self):
    # Keras 3's jax backend runs its train / test / predict steps without writing a stateful
    # RNN's states back (Keras' own LSTM alike): every batch starts from zeros.
    return self.keras.backend.backend() != "jax"

  def annealing(self, model, end_step, frequency, block_switch_step, block_pooling,
                start_at_target):
    callback = self.dkp.SparsityAnnealing(
        0, end_step, frequency, block_pooling_type=block_pooling,
        start_at_target=start_at_target,
        early_block_size=None if block_switch_step is None else (1, 1),
        block_switch_step=block_switch_step)
    return model, callback


class OneDevice:
  """What training asks of a strategy, for one device and no tf.distribute."""

  num_replicas_in_sync = 1
  extended = types.SimpleNamespace(should_checkpoint=True)

  def scope(self):
    return contextlib.nullcontext()


FRONTENDS = {front.version: front for front in (TfKeras(), Keras3())}


def get_frontend(version="2"):
  """The front end of Keras ``version`` ("2": tf_keras, "3": Keras 3); a clear error otherwise.

  >>> get_frontend("4")
  Traceback (most recent call last):
  ValueError: unknown --keras 4; choose one of ['2', '3']
  """
  version = str(version)
  if version not in FRONTENDS:
    raise ValueError(f"unknown --keras {version}; choose one of {list(FRONTENDS)}")
  return FRONTENDS[version]


def of_model(model):
  """The front end whose Keras ``model`` belongs to (tf_keras unless it is a Keras 3 model)."""
  return FRONTENDS["3"] if FRONTENDS["3"].owns(model) else FRONTENDS["2"]
