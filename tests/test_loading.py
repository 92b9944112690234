"""dkp_keras.load_model: DKP files load in any case, and every failure says what to do."""

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import loading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dkp_model():
  inputs = keras.Input((3, 8))
  x = dkp.DKPLSTM(8, compression=1.5, return_sequences=True)(inputs)
  return keras.Model(inputs, dkp.DopedDense(4, compression=1.2)(x))


@pytest.fixture(scope="module", params=["keras", "h5", "savedmodel"])
def saved(request, dkp_model, tmp_path_factory):
  path = tmp_path_factory.mktemp("saved") / f"model.{request.param}"
  dkp_model.save(path, save_format="tf" if request.param == "savedmodel" else None)
  return path


def test_loads_every_format_with_the_same_outputs(saved, dkp_model):
  loaded = dkp.load_model(saved)
  x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
  np.testing.assert_array_equal(loaded(x), dkp_model(x))
  assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in dkp_model.layers]


def test_loads_where_plain_tf_keras_cannot_find_the_layers(saved, monkeypatch):
  """As in a process that never imported dkp_keras: plain tf_keras fails (the errors the
  docstring names), dkp_keras.load_model does not depend on the registry."""
  registry = keras.utils.get_custom_objects()
  for name in loading.CUSTOM_OBJECTS:
    monkeypatch.delitem(registry, name)
  with pytest.raises((TypeError, ValueError),
                     match="'str' object is not callable|Unknown layer: 'dkp_keras>|"
                           "Unable to restore custom object of class \"dkp_keras>"):
    keras.models.load_model(saved)
  assert isinstance(dkp.load_model(saved), keras.Model)


@keras.utils.register_keras_serializable(package="test_loading")
class Doubler(keras.layers.Layer):
  def call(self, inputs):
    return 2 * inputs


def test_an_unregistered_layer_class_says_to_import_its_module(tmp_path, monkeypatch):
  inputs = keras.Input((3,))
  keras.Model(inputs, Doubler()(inputs)).save(tmp_path / "doubler.keras")
  monkeypatch.delitem(keras.utils.get_custom_objects(), "test_loading>Doubler")
  with pytest.raises(loading.ModelFileError,
                     match="holds a layer class this process cannot build.*import the module "
                           "that defines and registers it.*dkp_keras.load_model"):
    dkp.load_model(tmp_path / "doubler.keras")


def test_a_keras_3_file_is_named_as_such(tmp_path):
  try:
    if not importlib.metadata.version("keras").startswith("3."):
      pytest.skip("Keras 3 is not installed")
  except importlib.metadata.PackageNotFoundError:
    pytest.skip("Keras 3 is not installed")
  script = ("import keras\ninputs = keras.Input((3, 4))\n"
            "keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(r'{}')\n")
  for name in ("k3.keras", "k3.h5"):
    subprocess.run([sys.executable, "-c", script.format(tmp_path / name)], check=True, cwd=REPO,
                   env={**os.environ, "TF_USE_LEGACY_KERAS": "0"}, capture_output=True)
    with pytest.raises(loading.ModelFileError,
                       match=r"was saved by Keras 3\.[0-9.]*; dkp_keras reads tf_keras \(Keras 2\) "
                             "files"):
      dkp.load_model(tmp_path / name)


@pytest.mark.parametrize("make, error, message", [
    (lambda d: d / "missing.keras", FileNotFoundError, "no such file or directory"),
    (lambda d: _write(d / "empty.keras", b""), loading.ModelFileError, "it is empty"),
    (lambda d: _write(d / "notes.keras", b"text"), loading.ModelFileError,
     "is not a readable Keras model file"),
    (lambda d: d, loading.ModelFileError, "is not a readable SavedModel directory"),
])
def test_bad_paths_are_refused_clearly(make, error, message, tmp_path):
  with pytest.raises(error, match=message):
    dkp.load_model(make(tmp_path))
  assert issubclass(loading.ModelFileError, ValueError)


def test_a_truncated_file_is_refused_clearly(saved, tmp_path):
  if saved.is_dir():
    pytest.skip("a SavedModel is a directory")
  cut = _write(tmp_path / f"cut{saved.suffix}", saved.read_bytes()[:len(saved.read_bytes()) // 2])
  with pytest.raises(loading.ModelFileError, match="is not a readable Keras model file"):
    dkp.load_model(cut)


def _write(path, data):
  path.write_bytes(data)
  return path
