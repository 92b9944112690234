"""Every reach into tf_keras, tfmot and TensorFlow internals, in one place.

The DKP layers reuse Keras' RNN-cell and random-layer machinery and drive
tfmot's pruning wrappers from outside; some of that is not public API. Each
such reach is a name or a small function here, so a version upgrade has one
module to check, and `missing_reaches` (run by ``tests/test_compat.py``) says
which reach broke.

Written against (`WRITTEN_AGAINST`): tf_keras 2.21, tensorflow-model-optimization
0.8.x, TensorFlow 2.21. What each reach relies on:

- tf_keras private modules: `BaseRandomLayer` (a layer with its own random
  generator), `DropoutRNNCellMixin` (Keras' per-sequence dropout masks),
  ``rnn_utils.generate_zero_filled_state_for_cell`` and
  ``backend.ContextValueCache`` with its private ``_key`` / ``_get_recursive``
  (a value formed once per graph, looked up through parent graphs).
- tf_keras private layer attributes: ``Layer._flatten_layers`` (Keras' own
  walk over nested layers), ``_trainable_weights`` / ``_non_trainable_weights``
  / ``_update_trackables`` (the variable order of a `.keras` file) and
  ``BaseRandomLayer._random_generator`` (its ``random_uniform``, ``_generator``
  and lazy ``_maybe_init``).
- tfmot internals: the `PruneLowMagnitude` wrapper class (not exported), its
  ``pruning_obj`` (the `Pruning` object) with the private ``_block_size`` /
  ``_block_pooling_type`` (and ``_maybe_update_block_mask``, which a test
  calls), its ``weight_mask_op()``, the wrapper's
  ``pruning_step`` variable, and `UpdatePruningStep`'s ``prunable_layers``
  list (set in its ``on_train_begin``).
- TensorFlow's ``tf.__internal__``: ``smart_cond`` and
  ``tracking.no_automatic_dependency_tracking``.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude)
from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity
from tf_keras.src import backend as _keras_backend
# Re-exported: the base classes of the DKP layers.
from tf_keras.src.engine.base_layer import BaseRandomLayer  # noqa: F401  pylint: disable=unused-import
from tf_keras.src.layers.rnn import rnn_utils as _rnn_utils
from tf_keras.src.layers.rnn.dropout_rnn_cell_mixin import DropoutRNNCellMixin

# The (major, minor) versions this module was checked against, by distribution.
WRITTEN_AGAINST = {"tf_keras": "2.21", "tensorflow-model-optimization": "0.8",
                   "tensorflow": "2.21"}

ContextValueCache = _keras_backend.ContextValueCache
smart_cond = tf.__internal__.smart_cond.smart_cond
no_automatic_dependency_tracking = tf.__internal__.tracking.no_automatic_dependency_tracking


def installed_versions():
  """The installed version of each distribution in `WRITTEN_AGAINST`."""
  return {"tf_keras": keras.__version__, "tensorflow-model-optimization": tfmot.__version__,
          "tensorflow": tf.__version__}


def version_mismatches():
  """One line per installed version that is not the (major, minor) this module was checked
  against; empty when they all are."""
  installed = installed_versions()
  return [f"{name} {installed[name]} is installed; dkp_keras.compat was checked against "
          f"{name} {checked}.x: check every reach it lists, then update WRITTEN_AGAINST"
          for name, checked in WRITTEN_AGAINST.items()
          if installed[name].split(".")[:2] != checked.split(".")]


# --- tf_keras ---------------------------------------------------------------

def flatten_layers(model):
  """Every layer in ``model``, itself and nested ones included (wrapped layers, RNN cells)."""
  # Keras' own traversal: tf.Module.submodules trips over RNN cells' mask caches.
  return list(model._flatten_layers(  # pylint: disable=protected-access
      include_self=True, recursive=True))


def cached_value(cache):
  """The value a `ContextValueCache` holds for the current graph or one of its parents,
  else None (``setdefault`` looks at the current graph only)."""
  return cache._get_recursive(cache._key())  # pylint: disable=protected-access


def zero_state(cell, inputs, batch_size, dtype):
  """A cell's zero initial states, as Keras' own cells make them."""
  return _rnn_utils.generate_zero_filled_state_for_cell(cell, inputs, batch_size, dtype)


def stored_variables(layer):
  """The variables of ``layer`` in the order Keras' `save_own_variables` stores them."""
  return layer._trainable_weights + layer._non_trainable_weights  # pylint: disable=protected-access


def update_trackables(layer):
  """What Keras' `load_own_variables` does before it reads a layer's variables."""
  layer._update_trackables()  # pylint: disable=protected-access


def random_uniform(layer, shape):
  """U[0, 1) samples from a `BaseRandomLayer`'s own generator."""
  return layer._random_generator.random_uniform(shape)  # pylint: disable=protected-access


def random_generator(layer):
  """The `tf.random.Generator` a layer has made, else None."""
  return getattr(getattr(layer, "_random_generator", None), "_generator", None)


def make_random_generator(layer):
  """Makes a random layer's generator now (Keras makes it lazily, at first use)."""
  if hasattr(layer, "_random_generator"):
    layer._random_generator._maybe_init()  # pylint: disable=protected-access


# --- tfmot ------------------------------------------------------------------

def pruning_block_size(wrapper):
  """The blocks a pruning wrapper prunes in now."""
  return tuple(wrapper.pruning_obj._block_size)  # pylint: disable=protected-access


def set_pruning_block_size(wrapper, block_size):
  """Makes ``wrapper`` prune in ``block_size`` blocks from its next mask update (the
  train step must be retraced: tfmot reads the size when it is traced)."""
  wrapper.block_size = tuple(block_size)
  wrapper.pruning_obj._block_size = list(block_size)  # pylint: disable=protected-access


def pruning_block_pooling(wrapper):
  """How a pruning wrapper scores its blocks: ``"AVG"`` or ``"MAX"``."""
  return wrapper.pruning_obj._block_pooling_type  # pylint: disable=protected-access


def apply_pruning_masks(wrapper):
  """Multiplies the wrapper's weights by their current masks."""
  wrapper.pruning_obj.weight_mask_op()


def pruning_step(wrapper):
  """The wrapper's step counter (-1 before `UpdatePruningStep` first ran)."""
  return int(keras.backend.get_value(wrapper.pruning_step))


def update_step_wrappers(callback):
  """The pruning wrappers an `UpdatePruningStep` found in its ``on_train_begin``."""
  return callback.prunable_layers


def missing_reaches():
  """One line per reach of this module that the installed versions no longer offer.

  Builds a tiny pruned Dense layer and a Dropout layer and looks up every
  attribute the functions above use; empty when all are there.
  """
  missing = []

  def need(owner, description, names):
    missing.extend(f"{description} has no {name!r}" for name in names
                   if not hasattr(owner, name))

  need(ContextValueCache, "tf_keras.src.backend.ContextValueCache",
       ("_key", "_get_recursive", "setdefault", "clear"))
  need(keras.layers.Layer, "tf_keras Layer",
       ("_flatten_layers", "_update_trackables", "save_own_variables", "load_own_variables"))
  need(_rnn_utils, "tf_keras.src.layers.rnn.rnn_utils", ("generate_zero_filled_state_for_cell",))
  need(DropoutRNNCellMixin, "DropoutRNNCellMixin",
       ("get_dropout_mask_for_cell", "get_recurrent_dropout_mask_for_cell",
        "reset_dropout_mask", "reset_recurrent_dropout_mask"))
  dropout = keras.layers.Dropout(0.5)
  need(dropout, "a BaseRandomLayer (Dropout)", ("_random_generator",))
  generator = getattr(dropout, "_random_generator", None)
  need(generator, "BaseRandomLayer._random_generator", ("random_uniform", "_maybe_init"))
  if hasattr(generator, "_maybe_init"):
    generator._maybe_init()  # pylint: disable=protected-access
    need(generator, "BaseRandomLayer._random_generator after _maybe_init()", ("_generator",))
  wrapper = tfmot_sparsity.prune_low_magnitude(
      keras.layers.Dense(2), pruning_schedule=tfmot_sparsity.ConstantSparsity(0.5, 0),
      block_size=(1, 1))
  if not isinstance(wrapper, PruneLowMagnitude):
    missing.append(f"prune_low_magnitude returned a {type(wrapper).__name__}, not the "
                   f"PruneLowMagnitude of tfmot's pruning_wrapper module")
  inputs = keras.Input((3,))
  model = keras.Model(inputs, wrapper(inputs))
  need(wrapper, "tfmot's pruning wrapper", ("pruning_obj", "pruning_step", "block_size",
                                            "prunable_weights", "pruning_schedule", "layer"))
  need(wrapper, "a built layer", ("_trainable_weights", "_non_trainable_weights"))
  if getattr(wrapper, "pruning_obj", None) is not None:
    # _maybe_update_block_mask: tests/test_annealing.py asks it for a mask directly.
    need(wrapper.pruning_obj, "tfmot's Pruning object",
         ("_block_size", "_block_pooling_type", "weight_mask_op", "_maybe_update_block_mask"))
  callback = tfmot_sparsity.UpdatePruningStep()
  callback.set_model(model)
  callback.on_train_begin()
  need(callback, "tfmot's UpdatePruningStep after on_train_begin", ("prunable_layers",))
  return missing

