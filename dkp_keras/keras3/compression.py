"""Compression accounting for Keras 3 models (see `dkp_keras.compression`).

The same rows and columns as the tf_keras report, counted the same way: dense
weights, structure factors, and each S as the float32 file of
`pipelines.convert` stores it (`dkp_keras.deployed_layout`).
"""

from __future__ import annotations

import keras

from dkp_keras import compression_counts
from dkp_keras.keras3.doped_matrix import DopedLayerMixin, all_layers, to_numpy


def _lstm_kernel_ids(layer):
  """The weights of a plain LSTM the lowering stores sparse when pruned."""
  if isinstance(layer, keras.layers.LSTM):
    return {id(layer.cell.kernel), id(layer.cell.recurrent_kernel)}
  return set()


def _layer_row(layer):
  owners = [sub for sub in all_layers(layer) if isinstance(sub, DopedLayerMixin)]
  return compression_counts.layer_row(layer, owners, to_numpy, _lstm_kernel_ids(layer))


def compression_report(model):
  """Per-layer and whole-model compression of a Keras 3 ``model`` as a pandas DataFrame.

  The columns of `dkp_keras.compression_report` (``layer``, ``type``,
  ``structure``, ``doped``, ``dense_params``, ``params``, ``nnz_doping``,
  ``doping_density``, ``bytes``, ``dense_bytes``, ``target_compression``,
  ``meets_target``, ``compression``, ``byte_compression``), one row per layer
  with weights and a final ``total`` row.

  Raises:
    ValueError: for anything but a built Keras 3 model.
  """
  return compression_counts.compression_report(model, keras.Model, "Keras 3", _layer_row)
