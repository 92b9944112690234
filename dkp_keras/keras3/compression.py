"""Compression accounting for Keras 3 models (see `dkp_keras.compression`).

The same rows and columns as the tf_keras report, counted the same way: dense
weights, structure factors, and each S as the float32 file of
`pipelines.convert` stores it (`dkp_keras.deployed_layout`).
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from dkp_keras.deployed_layout import FLOAT_BYTES, is_pruned, stored_bytes
from dkp_keras.keras3.doped_matrix import DopedLayerMixin, all_layers, to_numpy
from dkp_keras.keras3.pure_copies import doping_counts, target_compression

COLUMNS = ["layer", "type", "structure", "doped", "dense_params", "params", "nnz_doping",
           "doping_density", "bytes", "dense_bytes", "target_compression", "meets_target"]


def _plain_counts(layer):
  """Counts of a layer without doping; a matrix at least half zeros counts by its nonzeros,
  an LSTM's such kernels stored sparse as the lowering stores them."""
  lstm_kernels = set()
  if isinstance(layer, keras.layers.LSTM):
    lstm_kernels = {id(layer.cell.kernel), id(layer.cell.recurrent_kernel)}
  dense_params = params = nbytes = 0
  for weight in layer.weights:
    size = int(np.prod(weight.shape))
    dense_params += size
    values = to_numpy(weight) if len(weight.shape) >= 2 else None
    if values is not None and is_pruned(values.reshape(-1, values.shape[-1])):
      params += int(np.count_nonzero(values))
    else:
      params += size
    nbytes += stored_bytes(values) if id(weight) in lstm_kernels else size * FLOAT_BYTES
  return {"dense_params": dense_params, "params": params, "nnz_doping": 0,
          "doping_density": np.nan, "bytes": nbytes, "dense_bytes": dense_params * FLOAT_BYTES}


def _layer_row(layer):
  owners = [sub for sub in all_layers(layer) if isinstance(sub, DopedLayerMixin)]
  row = {"layer": layer.name, "type": type(layer).__name__, "structure": "dense",
         "doped": False, "target_compression": 1.0, "meets_target": True}
  if not owners:
    return {**row, **_plain_counts(layer)}
  structured = {id(w) for owner in owners for m in owner.doped_matrices.values()
                for w in list(m.weights.values()) + [m.doping]}
  dense_params = params = nbytes = 0
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      structure = matrix.structure
      dense_params += structure.m * structure.n
      params += structure.params
      nbytes += structure.params * FLOAT_BYTES
      if matrix.doping is not None:
        nbytes += stored_bytes(matrix.doping_values())
  nnz, max_nnz, size = doping_counts(owners)
  # Biases (any weight beside the structures, S and the CMR rate) are stored dense.
  skipped = structured | {id(owner.cmr_rate) for owner in owners}
  other = sum(int(np.prod(w.shape)) for w in layer.weights if id(w) not in skipped)
  return {**row, "structure": owners[0].structure, "doped": any(o.doped for o in owners),
          "target_compression": target_compression(owners), "meets_target": nnz <= max_nnz,
          "dense_params": dense_params + other, "params": params + nnz + other,
          "nnz_doping": nnz, "doping_density": nnz / size if size else np.nan,
          "bytes": nbytes + other * FLOAT_BYTES,
          "dense_bytes": (dense_params + other) * FLOAT_BYTES}


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
  if not isinstance(model, keras.Model):
    raise ValueError(f"compression_report expects a Keras 3 Model, got {type(model)}")
  if not model.built:
    raise ValueError("compression_report needs a built model: call it on data, or give its "
                     "first layer an input shape (keras.Input)")
  frame = pd.DataFrame([_layer_row(layer) for layer in model.layers if layer.weights],
                       columns=COLUMNS)
  total = {"layer": "total", "type": "", "structure": "", "doped": bool(frame["doped"].any()),
           "dense_params": frame["dense_params"].sum(), "params": frame["params"].sum(),
           "nnz_doping": frame["nnz_doping"].sum(), "doping_density": np.nan,
           "bytes": frame["bytes"].sum(), "dense_bytes": frame["dense_bytes"].sum(),
           "target_compression": np.nan, "meets_target": bool(frame["meets_target"].all())}
  frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
  frame["compression"] = frame["dense_params"] / frame["params"]
  frame["byte_compression"] = frame["dense_bytes"] / frame["bytes"]
  return frame
