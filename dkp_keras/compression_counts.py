"""The rows of `compression_report`: parameters and bytes per layer, counted from values.

Pure numpy and pandas, so that both front ends (tf_keras's
`dkp_keras.compression_report` and `dkp_keras.keras3.compression_report`)
count the same way: dense weights, structure factors, and each S (and each
LSTM kernel that magnitude pruning left at least half zeros) as the float32
file of `pipelines.convert` stores it (`dkp_keras.deployed_layout`). A front
end gives each layer's DKP layers or cells and how to read a variable's values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dkp_keras import doping_budget
from dkp_keras.deployed_layout import FLOAT_BYTES, is_pruned, stored_bytes

COLUMNS = ["layer", "type", "structure", "doped", "dense_params", "params", "nnz_doping",
           "doping_density", "bytes", "dense_bytes", "target_compression", "meets_target"]


def _plain_counts(layer, values_of, sparse_ids):
  """Counts of a layer without doping; a pruned matrix (mostly zeros) counts as sparse.

  A matrix at least half zeros (what magnitude pruning leaves) is counted by
  its nonzeros; the weights whose ids are in ``sparse_ids`` (an LSTM's
  kernels) are stored as the lowering stores them (sparse when pruned), every
  other weight dense.
  """
  dense_params = params = nbytes = 0
  for weight in layer.weights:
    size = int(np.prod(weight.shape))
    dense_params += size
    values = values_of(weight) if len(weight.shape) >= 2 else None
    if values is not None and is_pruned(values.reshape(-1, values.shape[-1])):
      params += int(np.count_nonzero(values))
    else:
      params += size
    nbytes += stored_bytes(values) if id(weight) in sparse_ids else size * FLOAT_BYTES
  return {"dense_params": dense_params, "params": params, "nnz_doping": 0,
          "doping_density": np.nan, "bytes": nbytes, "dense_bytes": dense_params * FLOAT_BYTES}


def _doped_counts(layer, owners):
  """Counts of a layer holding the DKP layers or cells ``owners``: structures, S, the rest."""
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
  nnz, max_nnz, size = doping_budget.doping_counts(owners)
  # Biases (any weight beside the structures, S and the CMR rate) are stored dense.
  skipped = structured | {id(owner.cmr_rate) for owner in owners}
  other = sum(int(np.prod(w.shape)) for w in layer.weights if id(w) not in skipped)
  return {"structure": owners[0].structure, "doped": any(o.doped for o in owners),
          "target_compression": doping_budget.target_compression(owners),
          "meets_target": nnz <= max_nnz,
          "dense_params": dense_params + other, "params": params + nnz + other,
          "nnz_doping": nnz, "doping_density": nnz / size if size else np.nan,
          "bytes": nbytes + other * FLOAT_BYTES,
          "dense_bytes": (dense_params + other) * FLOAT_BYTES}


def layer_row(layer, owners, values_of, sparse_ids=frozenset()):
  """The report row of one model layer.

  Args:
    layer: the layer (unwrapped from any annealing wrapper).
    owners: the DKP layers or cells inside it (itself, an RNN's cell, a wrapper's); none
      for a plain layer.
    values_of: ``values_of(variable)``, its value as a numpy array.
    sparse_ids: ids of a plain layer's weights the lowering stores sparse when pruned.
  """
  row = {"layer": layer.name, "type": type(layer).__name__, "structure": "dense",
         "doped": False, "target_compression": 1.0, "meets_target": True}
  if not owners:
    return {**row, **_plain_counts(layer, values_of, sparse_ids)}
  return {**row, **_doped_counts(layer, owners)}


def compression_report(model, model_class, front_end, layer_row_of):
  """The report of ``model``: a row per layer with weights (``layer_row_of(layer)``), a
  ``total`` row, the compression ratios.

  Raises:
    ValueError: unless ``model`` is a built ``model_class``, the `Model` of the
      ``front_end`` (``"tf_keras"``, ``"Keras 3"``) the error names.
  """
  if not isinstance(model, model_class):
    raise ValueError(f"compression_report expects a {front_end} Model, got {type(model)}")
  if not model.built:
    raise ValueError("compression_report needs a built model: call it on data, or give its "
                     "first layer an input shape (keras.Input)")
  return _report_frame([layer_row_of(layer) for layer in model.layers if layer.weights])


def _report_frame(rows):
  """The report's DataFrame: the layers' ``rows``, a ``total`` row, the compression ratios."""
  frame = pd.DataFrame(rows, columns=COLUMNS)
  total = {"layer": "total", "type": "", "structure": "", "doped": bool(frame["doped"].any()),
           "dense_params": frame["dense_params"].sum(), "params": frame["params"].sum(),
           "nnz_doping": frame["nnz_doping"].sum(), "doping_density": np.nan,
           "bytes": frame["bytes"].sum(), "dense_bytes": frame["dense_bytes"].sum(),
           "target_compression": np.nan, "meets_target": bool(frame["meets_target"].all())}
  frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
  frame["compression"] = frame["dense_params"] / frame["params"]
  frame["byte_compression"] = frame["dense_bytes"] / frame["bytes"]
  return frame


def missed_target_warning(report):
  """A warning naming each layer of a `compression_report` whose S is denser than its
  target allows, or None when every layer meets its target."""
  rows = report[(report["layer"] != "total") & ~report["meets_target"].astype(bool)]
  if rows.empty:
    return None
  layers = "; ".join(
      f"{row.layer}: {row.compression:.1f}x of the {row.target_compression:g}x asked, S "
      f"{100 * row.doping_density:.2f}% dense" for row in rows.itertuples())
  return (f"S is denser than its target in {len(rows)} layer(s) ({layers}): the annealing "
          f"did not finish; dkp_keras.finalize brings S to its target")
