"""Loading saved models that hold DKP layers, with errors that say what to do.

DKP models are tf_keras (Keras 2) files: ``.keras``, ``.h5`` or SavedModel
directories. `tf_keras.models.load_model` reads them once ``dkp_keras`` is
imported (importing it registers the layers); `load_model` does so in any case.
"""

from __future__ import annotations

import json
import os
import zipfile

import h5py
import tf_keras as keras

from dkp_keras.layers import DopedDense
from dkp_keras.lstm import DKPLSTM, DKPLSTMCell

# Passed explicitly, so loading does not depend on the global registry's state.
CUSTOM_OBJECTS = {f"dkp_keras>{cls.__name__}": cls for cls in (DopedDense, DKPLSTM, DKPLSTMCell)}

# How tf_keras and Keras 3 say that a class in the file cannot be built.
_UNKNOWN_CLASS_SIGNS = ("Unknown layer", "Could not locate class", "Could not deserialize class",
                        "Unable to restore custom object", "'str' object is not callable")


class ModelFileError(ValueError):
  """A path that holds no loadable Keras model; the message says why and what to do."""


def load_model(path):
  """Loads a tf_keras model (DKP layers or not) from a file or SavedModel directory.

  Loading a file with DKP layers elsewhere fails in ways that do not name the
  cause: plain `tf_keras.models.load_model` before ``import dkp_keras`` raises
  ``TypeError: 'str' object is not callable`` (``.keras``) or ``Unknown layer:
  'dkp_keras>DKPLSTM'`` (``.h5``); Keras 3's `keras.models.load_model` (or
  `tf.keras` without ``TF_USE_LEGACY_KERAS=1``) raises ``Could not locate class
  'Functional'``, because these are tf_keras (Keras 2) files. Use this function,
  or ``import dkp_keras`` before `tf_keras.models.load_model`.

  Args:
    path: a ``.keras`` / ``.h5`` file or a SavedModel directory.

  Returns:
    The `tf_keras.Model`, not compiled.

  Raises:
    FileNotFoundError: nothing at ``path``.
    ModelFileError: (a ValueError) the path holds no model this tf_keras can
      build: empty, truncated or foreign file, a Keras 3 file, or a layer class
      that is not registered; the message says which and what to do.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file or directory (expected a .keras / .h5 file "
                            "or a SavedModel directory)")
  kind = "SavedModel directory" if os.path.isdir(path) else "Keras model file"
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    raise ModelFileError(f"{path} is not a readable {kind}: it is empty (0 bytes)")
  try:
    model = keras.models.load_model(path, compile=False, custom_objects=CUSTOM_OBJECTS)
  except Exception as error:  # Keras raises many types for a bad file
    raise ModelFileError(_explain(path, kind, error)) from error
  if not isinstance(model, keras.Model):
    raise ModelFileError(f"{path} holds a {type(model).__name__}, not a Keras model")
  return model


def _explain(path, kind, error):
  """The message for a failed load: what the file is, why it failed, what to do."""
  first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
  cause = f"{type(error).__name__}: {first_line}"
  version = saved_keras_version(path)
  if version and not version.startswith("2."):
    return (f"{path} was saved by Keras {version}; dkp_keras reads tf_keras (Keras 2) files "
            "here. Load it with Keras 3 (import dkp_keras.keras3, which registers "
            "the Keras 3 DKP layers, then keras.saving.load_model), or as a tf_keras model with "
            "the same layers and weights: dkp_keras.keras2_twin.tf_keras_twin(dkp_keras."
            "keras2_twin.load_keras3_model(path)); python -m pipelines.convert and "
            "python -m pipelines.compress take Keras 3 files directly")
  if any(sign in str(error) for sign in _UNKNOWN_CLASS_SIGNS):
    return (f"{path} holds a layer class this process cannot build ({cause}); import the module "
            "that defines and registers it before loading. DKP layers need no import: "
            "dkp_keras.load_model builds them (with plain tf_keras, import dkp_keras first; "
            "Keras 3 cannot read these tf_keras (Keras 2) files)")
  return f"{path} is not a readable {kind} ({cause})"


def saved_keras_version(path):
  """The Keras version recorded in a ``.keras`` or ``.h5`` file, else None."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        return str(json.loads(archive.read("metadata.json"))["keras_version"])
    with h5py.File(path, "r") as handle:
      version = handle.attrs.get("keras_version")
      return version.decode() if isinstance(version, bytes) else version
  except Exception:  # pylint: disable=broad-except  (not such a file: no version)
    return None
