"""Keras 3 DopedDense: the tf_keras layer's twin (weights, outputs), `.keras` round trips, and
an import that leaves tf_keras, tfmot and TF_USE_LEGACY_KERAS alone."""

import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import dkp_keras as dkp
from dkp_keras import keras3 as k3
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping

STRUCTURES = ["kronecker", "lowrank", "hmd"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def weight_layout(layer):
  """(name, shape) of each weight, in `weights` order, without tf_keras' scope and ':0'."""
  return [(w.name.split("/")[-1].split(":")[0], tuple(w.shape)) for w in layer.weights]


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("doped", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
def test_tf_keras_weights_give_the_same_outputs(structure, doped, use_bias):
  arguments = dict(units=30, compression=3, structure=structure, doped=doped,
                   use_bias=use_bias, bias_initializer="random_normal", activation="tanh")
  legacy = dkp.DopedDense(**arguments)
  legacy.build((None, 20))
  if doped:
    randomize_doping(legacy)
  twin = k3.DopedDense(**arguments)
  twin.build((None, 20))
  assert weight_layout(twin) == weight_layout(legacy)
  twin.set_weights(legacy.get_weights())
  x = np.random.default_rng(1).normal(size=(3, 5, 20)).astype(np.float32)
  assert_normwise_close(keras.ops.convert_to_numpy(twin(x)), legacy(x).numpy())
  np.testing.assert_allclose(twin.dense_kernel(), legacy.dense_kernel(), rtol=1e-6, atol=1e-7)


def test_preconditioned_and_padded_factors_match_tf_keras():
  # 23 outputs factor badly: the Kronecker factors are padded; preconditioning keeps the forward.
  arguments = dict(units=23, compression=2, precondition_factors=True)
  legacy, twin = dkp.DopedDense(**arguments), k3.DopedDense(**arguments)
  legacy.build((None, 17))
  twin.build((None, 17))
  assert weight_layout(twin) == weight_layout(legacy)
  randomize_doping(legacy)
  twin.set_weights(legacy.get_weights())
  x = np.random.default_rng(2).normal(size=(4, 17)).astype(np.float32)
  assert_normwise_close(keras.ops.convert_to_numpy(twin(x)), legacy(x).numpy())


@pytest.mark.parametrize("structure", STRUCTURES)
def test_preconditioned_gradients_match_tf_keras(structure):
  # TensorFlow backend: both layers' gradients through one GradientTape.
  arguments = dict(units=16, compression=2, structure=structure, precondition_factors=True)
  legacy, twin = dkp.DopedDense(**arguments), k3.DopedDense(**arguments)
  legacy.build((None, 12))
  twin.build((None, 12))
  randomize_doping(legacy)
  twin.set_weights(legacy.get_weights())
  x = tf.constant(np.random.default_rng(3).normal(size=(4, 12)).astype(np.float32))
  gradients = []
  for layer in (legacy, twin):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(layer(x)))
    variables = layer.trainable_weights
    gradients.append(tape.gradient(loss, [getattr(v, "value", v) for v in variables]
                                   if layer is twin else variables))
  for theirs, ours in zip(*gradients):
    assert_normwise_close(np.asarray(ours), theirs.numpy(), tol=1e-5)


@settings(max_examples=15)
@given(units=st.integers(1, 16), input_dim=st.integers(1, 16),
       structure=st.sampled_from(STRUCTURES), doped=st.booleans(),
       compression=st.floats(1.0, 3.0))
def test_matches_dense_reconstruction(units, input_dim, structure, doped, compression):
  layer = k3.DopedDense(units, compression=compression, structure=structure, doped=doped,
                        bias_initializer="random_normal")
  try:
    layer.build((None, input_dim))
  except ValueError as error:  # tiny layers may not fit some structures: must say so
    assert "compression" in str(error)
    return
  randomize_doping(layer)
  x = np.random.default_rng(1).normal(size=(2, input_dim)).astype(np.float32)
  reference = x @ layer.dense_kernel() + keras.ops.convert_to_numpy(layer.bias)
  assert_normwise_close(keras.ops.convert_to_numpy(layer(x)), reference)


def test_cmr_drops_rows_of_s_in_training_only():
  layer = k3.DopedDense(8, compression=2, structure="lowrank", seed=3)
  layer.build((None, 16))
  randomize_doping(layer, scale=1.0)
  x = np.ones((2, 16), np.float32)
  structure_only = x @ layer.matrix.structure.dense_matrix(layer.matrix.structure_values()).T
  structure_only = structure_only + keras.ops.convert_to_numpy(layer.bias)
  layer.cmr_rate.assign(0.999999)
  assert_normwise_close(keras.ops.convert_to_numpy(layer(x, training=True)), structure_only)
  full = keras.ops.convert_to_numpy(layer(x, training=False))
  assert_normwise_close(full, x @ layer.dense_kernel())
  assert np.abs(full - structure_only).max() > 0.1


def test_config_round_trip():
  layer = k3.DopedDense(12, compression=4, structure="hmd", block_size=(2, 1),
                        structure_options={"rank": 1}, activation="relu",
                        kernel_regularizer="l2", cmr_granularity="block", seed=5)
  config = layer.get_config()
  assert k3.DopedDense.from_config(config).get_config() == config


def _model(doped_units=16):
  inputs = keras.Input((10,))
  hidden = k3.DopedDense(doped_units, compression=3, activation="relu")(inputs)
  outputs = k3.DopedDense(6, compression=2, structure="lowrank")(hidden)
  return keras.Model(inputs, outputs)


@pytest.mark.parametrize("sparse", [False, True])
def test_keras_file_round_trip_is_exact(tmp_path, sparse):
  model = _model()
  for layer in model.layers[1:]:
    randomize_doping(layer)
    if sparse:  # an annealed S: most blocks zero, a -0.0 kept as is
      doping = layer.matrix.doping
      values = keras.ops.convert_to_numpy(doping)
      values[4:] = 0.0
      values[0, 0] = -0.0
      doping.assign(values)
  path = tmp_path / "model.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  for before, after in zip(model.weights, loaded.weights):
    before, after = (keras.ops.convert_to_numpy(w) for w in (before, after))
    assert before.tobytes() == after.tobytes()
  x = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
  np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
  with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
    keys = []
    h5py.File(weights, "r").visit(keys.append)
  assert any("bsr_values" in key for key in keys) == sparse


@pytest.mark.parametrize("arguments, message", [
    ({"units": 0}, "units must be a positive integer"),
    ({"units": 4, "compression": 0.5}, "compression must be a finite number >= 1"),
    ({"units": 4, "structure": "tucker"}, "unknown structure 'tucker'"),
    ({"units": 4, "block_size": (4,)}, "block_size must be two positive integers"),
    ({"units": 4, "cmr_granularity": "entry"}, "unknown CMR granularity 'entry'"),
])
def test_bad_arguments_say_what_is_wrong(arguments, message):
  with pytest.raises(ValueError, match=message):
    k3.DopedDense(**arguments)


def _run_clean(code, **env):
  environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  environment.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", **env)
  result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_keras3_import_leaves_legacy_keras_alone():
  out = _run_clean(
      "import os, sys\n"
      "import dkp_keras as dkp\n"
      "assert 'tensorflow' not in sys.modules, 'import dkp_keras loaded TensorFlow'\n"
      "assert dir(dkp) == sorted(set(dir(dkp))) and set(dkp.__all__) <= set(dir(dkp))\n"
      "from dkp_keras import keras3 as k3\n"
      "import numpy as np\n"
      "k3.DopedDense(8, compression=2)(np.ones((1, 16), 'float32'))\n"
      "legacy = ('tf_keras', 'tensorflow_model_optimization')\n"
      "print(os.environ.get('TF_USE_LEGACY_KERAS'), sorted(set(legacy) & set(sys.modules)))\n")
  assert out.split() == ["None", "[]"]


def test_modules_both_front_ends_share_import_no_tensorflow():
  # _KERAS_NEUTRAL lists what dkp_keras.keras3 may import: none of it may load TensorFlow.
  out = _run_clean(
      "import importlib, os, sys\n"
      "import dkp_keras\n"
      "pure = sorted(dkp_keras._KERAS_NEUTRAL - {'keras3'})\n"
      "for name in pure:\n"
      "  importlib.import_module('dkp_keras.' + name)\n"
      "heavy = ('tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'keras')\n"
      "loaded = sorted(set(heavy) & set(sys.modules))\n"
      "print(len(pure), os.environ.get('TF_USE_LEGACY_KERAS'), loaded)\n")
  count, legacy, loaded = out.split(maxsplit=2)
  assert int(count) >= 10 and legacy == "None" and loaded.strip() == "[]", out


@pytest.mark.parametrize("statement", ["from dkp_keras import annealing",
                                       "import dkp_keras.doped_matrix",
                                       "import dkp_keras as dkp; dkp.DopedDense",
                                       # a submodule as an attribute of the lazy package
                                       "import dkp_keras as dkp; dkp.traversal.chain_layers"])
def test_tf_keras_front_end_still_loads_legacy_keras_first(statement):
  # Every path into the tf_keras front end sets TF_USE_LEGACY_KERAS before TensorFlow loads
  # (tfmot sets it too, but only once TensorFlow is loaded).
  out = _run_clean(
      "import importlib.abc, os, sys\n"
      "seen = []\n"
      "class Spy(importlib.abc.MetaPathFinder):\n"
      "  def find_spec(self, name, path=None, target=None):\n"
      "    if name == 'tensorflow':\n"
      "      seen.append(os.environ.get('TF_USE_LEGACY_KERAS'))\n"
      "sys.meta_path.insert(0, Spy())\n"
      f"{statement}\n"
      "import tensorflow as tf\n"
      "print(seen[0], tf.keras.layers.Dense.__module__.split('.')[0])\n")
  assert out.split() == ["1", "tf_keras"], out
