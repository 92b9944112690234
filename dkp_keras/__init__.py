"""dkp-keras: doped Kronecker product (DKP) compression for tf_keras models.

>>> import dkp_keras as dkp
>>> layer = dkp.DopedDense(64, compression=10)   # instead of Dense(64)

The Keras 3 front end is `dkp_keras.keras3`. Nothing here imports TensorFlow
eagerly: the tf_keras names below load on first use, so that importing
`dkp_keras.keras3` leaves Keras 3 (and ``TF_USE_LEGACY_KERAS``) alone.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

# Submodules that never import tf_keras: the Keras 3 front end and the pure numpy modules
# it shares. Importing any other submodule first sets TF_USE_LEGACY_KERAS.
_KERAS_NEUTRAL = frozenset({"keras3", "blocks", "cmr", "compression_counts", "deployed_layout",
                            "doped_layer_base", "doping_budget", "kronecker", "preconditioning",
                            "sparse_storage", "structures", "verify"})


def _use_legacy_keras():
  # tfmot needs Keras 2: make `tf.keras` resolve to tf_keras everywhere, before
  # TensorFlow is first imported.
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


class _LegacyKerasFirst(importlib.abc.MetaPathFinder):
  """Sets TF_USE_LEGACY_KERAS before a tf_keras submodule (``dkp_keras.annealing``...) loads.

  A finder, not a line in each module: `import dkp_keras.keras3` runs this package's
  ``__init__`` too, so the setting cannot live here unconditionally. It finds nothing
  itself; the regular finders load the module.
  """

  def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
    parts = fullname.split(".")
    if parts[0] == __name__ and len(parts) > 1 and parts[1] not in _KERAS_NEUTRAL:
      _use_legacy_keras()
    return None


if not any(isinstance(finder, _LegacyKerasFirst) for finder in sys.meta_path):
  sys.meta_path.insert(0, _LegacyKerasFirst())

# Public name -> the tf_keras module that defines it, imported on first access.
_LAZY_NAMES = {
    "SparsityAnnealing": "callbacks", "finalize": "annealing",
    "prepare_for_annealing": "annealing", "CoMatrixDropout": "callbacks",
    "compression_report": "compression", "DopedDense": "layers", "load_model": "loading",
    "DKPLSTM": "lstm", "DKPLSTMCell": "lstm",
}

__all__ = ["DopedDense", "DKPLSTM", "DKPLSTMCell", "prepare_for_annealing", "SparsityAnnealing",
           "CoMatrixDropout", "finalize", "compression_report", "load_model"]
__version__ = "0.1.0"


def __getattr__(name):
  if name in _LAZY_NAMES:
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
  elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
    # `dkp.traversal.chain_layers(...)` after a bare `import dkp_keras as dkp`, as when the
    # package imported its submodules eagerly.
    value = importlib.import_module(f"{__name__}.{name}")
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
