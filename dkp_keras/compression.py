"""Compression accounting: parameters and bytes per layer against the dense model.

Counts what the float32 file `pipelines.convert` writes stores: dense weights,
structure factors, and each S (and each LSTM kernel that magnitude pruning
left at least half zeros) as the lowering's ``auto`` kernel stores it:
1x4 block-sparse, CSR or dense (`dkp_keras.deployed_layout`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tf_keras as keras

from dkp_keras import compat
from dkp_keras.blocks import kept_blocks  # noqa: F401  pylint: disable=unused-import
from dkp_keras.deployed_layout import (  # noqa: F401  pylint: disable=unused-import
    FLOAT_BYTES, index_bytes, is_pruned, sparse_bytes, stored_bytes)
from dkp_keras.doped_matrix import DopedLayerMixin
from dkp_keras.traversal import all_layers


def doping_counts(owners):
  """(nonzeros, budgeted nonzeros, entries) over every S of the DKP layers or cells ``owners``.

  The budget is what the layers' compression factors allow (their plans);
  an S with more nonzeros misses its target.
  """
  nnz = max_nnz = size = 0
  for owner in owners:
    for matrix in owner.doped_matrices.values():
      values = matrix.doping_values()
      if values is not None:
        nnz += int(np.count_nonzero(values))
        max_nnz += matrix.plan.doping_max_nnz
        size += values.size
  return nnz, max_nnz, size


def format_density(nnz, size):
  """``"12.5% dense (1000 of 8000 entries)"``: how a doping matrix's fill is reported."""
  return f"{100.0 * nnz / size:.2f}% dense ({nnz} of {size} entries)" if size else "empty"


def _plain_counts(layer):
  """Counts of a layer without doping; a pruned matrix (mostly zeros) counts as sparse.

  A matrix at least half zeros (what magnitude pruning leaves) is counted by
  its nonzeros; an LSTM's such kernels are stored as the lowering stores them
  (sparse), every other weight dense.
  """
  lstm_kernels = set()
  if isinstance(layer, keras.layers.LSTM):
    lstm_kernels = {id(layer.cell.kernel), id(layer.cell.recurrent_kernel)}
  dense_params = params = nbytes = 0
  for weight in layer.weights:
    size = int(np.prod(weight.shape))
    dense_params += size
    values = keras.backend.get_value(weight) if len(weight.shape) >= 2 else None
    if values is not None and is_pruned(values.reshape(-1, values.shape[-1])):
      params += int(np.count_nonzero(values))
    else:
      params += size
    if id(weight) in lstm_kernels:
      nbytes += stored_bytes(values)
    else:
      nbytes += size * FLOAT_BYTES
  return {"dense_params": dense_params, "params": params, "nnz_doping": 0,
          "doping_density": np.nan, "bytes": nbytes, "dense_bytes": dense_params * FLOAT_BYTES}


def _layer_row(layer):
  inner = layer.layer if isinstance(layer, compat.PruneLowMagnitude) else layer
  # DKP layers or cells inside: the layer itself, an RNN's cell, a Bidirectional's two.
  owners = [sub for sub in all_layers(inner) if isinstance(sub, DopedLayerMixin)]
  row = {"layer": inner.name, "type": type(inner).__name__, "structure": "dense",
         "doped": False, "target_compression": 1.0, "meets_target": True}
  if not owners:
    return {**row, **_plain_counts(inner)}
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
  other = sum(int(np.prod(w.shape)) for w in inner.weights if id(w) not in skipped)
  return {**row, "structure": owners[0].structure, "doped": any(o.doped for o in owners),
          "target_compression": _target_compression(owners), "meets_target": nnz <= max_nnz,
          "dense_params": dense_params + other, "params": params + nnz + other,
          "nnz_doping": nnz, "doping_density": nnz / size if size else np.nan,
          "bytes": nbytes + other * FLOAT_BYTES,
          "dense_bytes": (dense_params + other) * FLOAT_BYTES}


def _target_compression(owners):
  """The compression the DKP layers or cells ``owners`` were asked for, together."""
  targets = {owner.compression for owner in owners}
  if len(targets) == 1:
    return targets.pop()
  dense = [sum(m.structure.m * m.structure.n for m in owner.doped_matrices.values())
           for owner in owners]
  return sum(dense) / sum(d / owner.compression for d, owner in zip(dense, owners))


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
  if not isinstance(model, keras.Model):
    raise ValueError(f"compression_report expects a tf_keras Model, got {type(model)}")
  if not model.built:
    raise ValueError("compression_report needs a built model: call it on data, or give its "
                     "first layer an input shape (keras.Input)")
  rows = [_layer_row(layer) for layer in model.layers if layer.weights]
  frame = pd.DataFrame(rows, columns=[
      "layer", "type", "structure", "doped", "dense_params", "params", "nnz_doping",
      "doping_density", "bytes", "dense_bytes", "target_compression", "meets_target"])
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
