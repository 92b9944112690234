"""Compression accounting: parameters and bytes per layer against the dense model.

Counts what the float32 file `pipelines.convert` writes stores: dense weights,
structure factors, and each S (and each LSTM kernel that magnitude pruning
left at least half zeros) as the lowering's ``auto`` kernel stores it:
1x4 block-sparse, CSR or dense (`dkp_keras.deployed_layout`).
"""

from __future__ import annotations

import tf_keras as keras

from dkp_keras import compat
from dkp_keras import compression_counts
from dkp_keras.compression_counts import missed_target_warning  # noqa: F401  pylint: disable=unused-import
from dkp_keras.blocks import kept_blocks  # noqa: F401  pylint: disable=unused-import
from dkp_keras.deployed_layout import (  # noqa: F401  pylint: disable=unused-import
    FLOAT_BYTES, index_bytes, is_pruned, sparse_bytes, stored_bytes)
from dkp_keras.doped_matrix import DopedLayerMixin
from dkp_keras.traversal import all_layers


def _lstm_kernel_ids(layer):
  """The weights of a plain LSTM the lowering stores sparse when pruned."""
  if isinstance(layer, keras.layers.LSTM):
    return {id(layer.cell.kernel), id(layer.cell.recurrent_kernel)}
  return set()


def _layer_row(layer):
  inner = layer.layer if isinstance(layer, compat.PruneLowMagnitude) else layer
  # DKP layers or cells inside: the layer itself, an RNN's cell, a Bidirectional's two.
  owners = [sub for sub in all_layers(inner) if isinstance(sub, DopedLayerMixin)]
  return compression_counts.layer_row(inner, owners, keras.backend.get_value,
                                      _lstm_kernel_ids(inner))


def compression_report(model):
  """Per-layer and whole-model compression of ``model`` as a pandas DataFrame.

  One row per layer with weights (DKP layers, wrapped or not, and plain
  layers, counted dense unless a matrix is at least half zeros, as magnitude
  pruning leaves it: then by its nonzeros) and a final ``total`` row. Columns:
  ``layer``, ``type``, ``structure``, ``doped``, ``dense_params`` (the dense
  twin's count), ``params`` (structure + nonzeros of S + bias),
  ``nnz_doping``, ``doping_density``, ``bytes`` (as the float32 file of
  `pipelines.convert` stores them, S with its ``auto`` kernel),
  ``dense_bytes``, ``compression`` (dense_params / params), ``byte_compression``, ``target_compression`` (what the layer was asked
  for) and ``meets_target`` (whether its S holds no more nonzeros than that
  allows; the ``total`` row: whether every layer does). DKP layers inside
  Keras wrappers (`Bidirectional`, `TimeDistributed`) count as DKP layers.

  Raises:
    ValueError: for anything but a built tf_keras model.

  >>> import dkp_keras as dkp
  >>> inputs = keras.Input((32,))
  >>> layer = dkp.DopedDense(64, compression=8, doped=False, name="out")
  >>> report = compression_report(keras.Model(inputs, layer(inputs)))
  >>> list(report["layer"]), bool(report["compression"].iloc[-1] >= 8)
  (['out', 'total'], True)
  """
  return compression_counts.compression_report(model, keras.Model, "tf_keras", _layer_row)
