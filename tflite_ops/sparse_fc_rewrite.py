"""Rewrites of a converted file's sparse FULLY_CONNECTED ops: CSR weights and op versions.

`store_csr_weights` stores unstructured S as TFLite's random-sparse (CSR)
FULLY_CONNECTED weight; `mark_sparse_fully_connected` gives every
FULLY_CONNECTED the op version that keeps XNNPack off sparse weights.

TFLite's float FULLY_CONNECTED runs a weight stored as [out, in] with dim 0
dense and dim 1 sparse CSR (2 dim metadata, no block) through
`FullyConnectedSparseWeight`, a plain CSR loop. The converter never writes
that layout for a FULLY_CONNECTED: above ~3.5% density it stores unstructured
S sparse and then *densifies* it at load (see `tflite_ops.describe`), so it
runs at dense speed. This module writes the layout itself, after conversion:
each FULLY_CONNECTED weight equal to one of the given S weights (a dense
constant, or the sparse constant of a DENSIFY op) becomes a CSR tensor read
by the FULLY_CONNECTED directly.

How it compares with the dense and the 1x4 block kernels
(`python -m benchmarks.sparse_kernels`): docs/results.md.

Two details the runtime needs (both pinned by tests): the FULLY_CONNECTED must
be op version 8 (sparse weights), or XNNPack delegates it and reads the CSR
values as a dense matrix (NaN / garbage; `mark_sparse_fully_connected`); and
indices may be uint8 / uint16 (the interpreter widens them), which keeps the
file at 6 bytes per nonzero.

>>> flatbuffer, stored = store_csr_weights(flatbuffer, [w])  # doctest: +SKIP
"""

from __future__ import annotations

import collections

import numpy as np

from dkp_keras import blocks
from tflite_ops import describe

# FULLY_CONNECTED's op version for sparse weights (lite/tools/versioning/op_version.cc).
SPARSE_FC_VERSION = 8
# The version the converter gives this package's float FULLY_CONNECTED ops when
# no weight of the file is sparse (keep_num_dims needs 5); below 8, so XNNPack takes them.
DENSE_FC_VERSION = 5


def csr_encode(weight):
  """(values, segments, indices) of a 2-D [out, in] weight, row by row (CSR).

  >>> csr_encode(np.array([[0., 2.], [3., 0.]]))  # doctest: +NORMALIZE_WHITESPACE
  (array([2., 3.], dtype=float32), array([0, 1, 2]), array([1, 0]))
  """
  weight = np.asarray(weight, np.float32)
  if weight.ndim != 2:
    raise ValueError(f"a FULLY_CONNECTED weight is 2-D [out, in], got shape {weight.shape}")
  rows, cols = np.nonzero(weight)
  segments = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=weight.shape[0]))])
  return weight[rows, cols], segments.astype(np.int64), cols.astype(np.int64)


def csr_decode(values, segments, indices, shape):
  """The dense [out, in] float32 matrix of a CSR encoding (inverse of `csr_encode`)."""
  values, segments, indices = (np.asarray(a) for a in (values, segments, indices))
  out, width = shape
  if (len(segments) != out + 1 or segments[0] != 0 or np.any(np.diff(segments) < 0)
      or segments[-1] != len(values) or len(indices) != len(values)
      or (len(indices) and (indices.min() < 0 or indices.max() >= width))):
    raise ValueError(f"inconsistent CSR encoding for shape {tuple(shape)}: {len(segments)} "
                     f"segments, {len(indices)} indices, {len(values)} values")
  dense = np.zeros(shape, np.float32)
  rows = np.repeat(np.arange(out), np.diff(segments))
  dense[rows, indices] = values
  return dense


def _index_vector(schema, values):
  """The smallest SparseIndexVector holding ``values``: (union type, vector)."""
  top = int(values.max()) if len(values) else 0
  for kind, dtype, limit in (("Uint8Vector", np.uint8, 255), ("Uint16Vector", np.uint16, 65535),
                             ("Int32Vector", np.int32, 2**31 - 1)):
    if top <= limit:
      vector = getattr(schema, kind + "T")()
      vector.values = np.asarray(values, dtype)
      return getattr(schema.SparseIndexVector, kind), vector
  raise ValueError(f"a sparse index {top} does not fit int32")


def _vector_values(vector):
  return np.asarray(getattr(vector, "values", None) if vector is not None else [], np.int64)


def _csr_parameters(schema, out, segments, indices):
  dense = schema.DimensionMetadataT()
  dense.format, dense.denseSize = schema.DimensionType.DENSE, int(out)
  sparse = schema.DimensionMetadataT()
  sparse.format = schema.DimensionType.SPARSE_CSR
  sparse.arraySegmentsType, sparse.arraySegments = _index_vector(schema, segments)
  sparse.arrayIndicesType, sparse.arrayIndices = _index_vector(schema, indices)
  params = schema.SparsityParametersT()
  params.traversalOrder, params.blockMap, params.dimMetadata = [0, 1], [], [dense, sparse]
  return params


def _decode(values, params, shape):
  """The dense matrix of a 2-D sparse constant in a layout the converter writes, else None.

  Layouts: unstructured ([dense, CSR]) and blocks of k consecutive inputs
  ([dense, CSR, dense k], block map [1]: the converter's 1x4, chosen for S
  sparse enough even when it is not in blocks).
  """
  dims = list(params.dimMetadata or ())
  order, block_map = list(params.traversalOrder), list(params.blockMap or [])
  if len(shape) != 2 or len(dims) < 2 or dims[0].format != 0 or dims[1].format != 1:
    return None
  segments = _vector_values(dims[1].arraySegments)
  indices = _vector_values(dims[1].arrayIndices)
  if len(dims) == 2 and order == [0, 1]:
    return csr_decode(values, segments, indices, shape)
  if len(dims) == 3 and order == [0, 1, 2] and block_map == [1] and dims[2].format == 0:
    # Each stored block is `width` consecutive entries of its row: the same CSR per entry.
    width = int(dims[2].denseSize)
    out, inputs = shape
    entries = (indices[:, None] * width + np.arange(width)).ravel()
    padded = blocks.padded_shape(shape, (1, width))
    return csr_decode(values, segments * width, entries, padded)[:, :inputs]
  return None


def _constant_value(model, schema, tensor):
  """The dense float32 value of a constant tensor (dense or sparse stored), else None."""
  data = model.buffers[tensor.buffer].data
  if tensor.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
    return None
  values = np.frombuffer(bytes(data), "<f4")
  shape = tuple(int(d) for d in tensor.shape)
  if tensor.sparsity is None:
    return values.reshape(shape) if values.size == np.prod(shape) else None
  return _decode(values, tensor.sparsity, shape)


def _mark_sparse_fully_connected(model, schema):
  """Sparse-weight FULLY_CONNECTED ops to version 8, float dense-weight ones off it; a count."""
  fc = schema.BuiltinOperator.FULLY_CONNECTED
  marked = 0
  for subgraph in model.subgraphs:
    for op in subgraph.operators or []:
      code = model.operatorCodes[op.opcodeIndex]
      if describe.builtin_code(code) != fc or len(op.inputs) < 2 or op.inputs[1] < 0:
        continue
      weight = subgraph.tensors[op.inputs[1]]
      if weight.sparsity is not None and code.version != SPARSE_FC_VERSION:
        op.opcodeIndex = describe.opcode_index(model, schema, fc, SPARSE_FC_VERSION)
        marked += 1
      elif (weight.sparsity is None and code.version == SPARSE_FC_VERSION
            and weight.type == schema.TensorType.FLOAT32):
        op.opcodeIndex = describe.opcode_index(model, schema, fc, DENSE_FC_VERSION)
        marked += 1
  return marked


def mark_sparse_fully_connected(flatbuffer):
  """The model with FULLY_CONNECTED ops at version 8 exactly when they read a sparse weight.

  XNNPack refuses FULLY_CONNECTED version 8 (sparse weights) and delegates any
  other version, where it reads a sparse weight's values as a dense matrix.
  The converter gives all FULLY_CONNECTED ops of a file one shared version: 12
  with dynamic int8, so sparse int8 weights ran through XNNPack and computed
  NaN; 8 in float files with a sparse weight, so XNNPack took none
  of their dense FULLY_CONNECTED ops (the Kronecker factors) either. Sparse
  ones get version 8, float dense ones at 8 get `DENSE_FC_VERSION`. Returns
  (flatbuffer, ops changed).
  """
  flatbuffer_utils, schema = describe._flatbuffer_modules()  # pylint: disable=protected-access
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
  marked = _mark_sparse_fully_connected(model, schema)
  if not marked:
    return flatbuffer, 0
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), marked


def _key(weight):
  """A hashable identity of a weight's values (-0.0 and 0.0 alike: both are pruned zeros)."""
  weight = np.ascontiguousarray(weight, np.float32) + np.float32(0)
  return weight.shape, weight.tobytes()


def _fc_weight_constants(model, schema, ops):
  """(constant tensor, DENSIFY op index or None, reading FC op indices) of every tensor read
  only as the weight of FULLY_CONNECTED ops, directly or through a DENSIFY op."""
  kinds = [describe.builtin_code(model.operatorCodes[op.opcodeIndex]) for op in ops]
  readers = collections.defaultdict(list)  # tensor -> [(op index, input position)]
  producer = {}
  for i, op in enumerate(ops):
    for position, t in enumerate(op.inputs if op.inputs is not None else []):
      if t >= 0:
        readers[int(t)].append((i, position))
    for t in op.outputs if op.outputs is not None else []:
      producer[int(t)] = i
  for tensor, users in readers.items():
    if not all(kinds[i] == schema.BuiltinOperator.FULLY_CONNECTED and position == 1
               for i, position in users):
      continue
    densify = producer.get(tensor)
    if densify is None:
      yield tensor, None, [i for i, _ in users]
    elif kinds[densify] == schema.BuiltinOperator.DENSIFY:
      source = int(ops[densify].inputs[0])
      if len(readers[source]) == 1:  # the sparse constant is read by the DENSIFY alone
        yield source, densify, [i for i, _ in users]


def store_csr_weights(flatbuffer, weights):
  """Stores each FULLY_CONNECTED weight equal to one of ``weights`` ([out, in]) as CSR.

  A weight may be a dense constant or a sparse constant in a layout the
  converter writes, read directly or through a DENSIFY op (which is then
  removed; its output tensor is left unused). Weights read by anything but the
  weight input of FULLY_CONNECTED ops are left alone. The result is also
  `mark_sparse_fully_connected`'s (with no ``weights``, that alone, in one pass).
  Returns (new flatbuffer, number of ``weights`` found and stored); equal
  weights count once each.
  """
  flatbuffer_utils, schema = describe._flatbuffer_modules()  # pylint: disable=protected-access
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
  wanted = collections.Counter(_key(w) for w in weights)
  found = set()
  buffer_users = collections.Counter(t.buffer for g in model.subgraphs for t in g.tensors)
  shapes = {shape for shape, _ in wanted}  # decode only weights that may match
  for subgraph in model.subgraphs if wanted else ():
    ops = list(subgraph.operators or [])
    removed = set()
    for source, densify, fc_ops in list(_fc_weight_constants(model, schema, ops)):
      tensor = subgraph.tensors[source]
      if tuple(int(d) for d in tensor.shape) not in shapes:
        continue
      value = _constant_value(model, schema, tensor)
      key = None if value is None else _key(value)
      if key not in wanted:
        continue
      values, segments, indices = csr_encode(value)
      tensor.sparsity = _csr_parameters(schema, value.shape[0], segments, indices)
      if buffer_users[tensor.buffer] > 1:  # a buffer shared with another tensor: copy
        model.buffers.append(schema.BufferT())
        buffer_users[tensor.buffer] -= 1
        tensor.buffer = len(model.buffers) - 1
      model.buffers[tensor.buffer].data = np.frombuffer(values.astype("<f4").tobytes(), np.uint8)
      for i in fc_ops:
        ops[i].inputs[1] = source
      if densify is not None:
        removed.add(densify)
      found.add(key)
    subgraph.operators = [op for i, op in enumerate(ops) if i not in removed]
  if not _mark_sparse_fully_connected(model, schema) and not found:
    return flatbuffer, 0  # nothing changed: no need to write the model again
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), sum(wanted[k] for k in found)
