"""The reaches into tf_keras / tfmot internals: fail loudly, naming what changed."""

import tensorflow as tf
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import compat


def test_installed_versions_are_the_ones_compat_was_checked_against():
  mismatches = compat.version_mismatches()
  assert not mismatches, "\n".join(mismatches)


def test_version_mismatch_names_the_distribution_and_both_versions(monkeypatch):
  monkeypatch.setitem(compat.WRITTEN_AGAINST, "tf_keras", "2.99")
  (message,) = compat.version_mismatches()
  assert f"tf_keras {keras.__version__} is installed" in message and "2.99.x" in message


def test_every_reached_attribute_exists():
  missing = compat.missing_reaches()
  assert not missing, ("dkp_keras.compat reaches into internals these versions no longer "
                       "have:\n" + "\n".join(missing))


def test_a_missing_attribute_is_named(monkeypatch):
  monkeypatch.delattr(compat.ContextValueCache, "_get_recursive")
  assert compat.missing_reaches() == [
      "tf_keras.src.backend.ContextValueCache has no '_get_recursive'"]


def test_pruning_reaches_read_and_switch_a_wrappers_blocks():
  inputs = keras.Input((8,))
  model = keras.Model(inputs, dkp.DopedDense(8, compression=1.5, block_size=(2, 1))(inputs))
  annealed = dkp.prepare_for_annealing(model, end_step=4, early_block_size=(1, 1))
  (wrapper,) = dkp.traversal.pruning_wrappers(annealed)
  assert compat.pruning_block_size(wrapper) == (1, 1)
  assert compat.pruning_block_pooling(wrapper) == "AVG"
  assert compat.pruning_step(wrapper) == -1
  compat.set_pruning_block_size(wrapper, (2, 1))
  assert compat.pruning_block_size(wrapper) == (2, 1) and wrapper.block_size == (2, 1)


def test_random_generator_reaches_make_and_find_a_layers_generator():
  layer = dkp.DopedDense(4, compression=1.2, force_generator=True)
  layer.build((None, 8))
  assert compat.random_generator(layer) is None  # made lazily
  compat.make_random_generator(layer)
  assert isinstance(compat.random_generator(layer), tf.random.Generator)
  assert compat.random_uniform(layer, (3,)).shape == (3,)
  assert compat.stored_variables(layer) == layer.trainable_weights + layer.non_trainable_weights
