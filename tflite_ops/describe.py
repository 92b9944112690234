"""Read a .tflite file and say what is in it: ops, tensor sizes, sparsity.

(Named ``describe``, not ``inspect``, so as not to shadow the standard library;
`tflite_ops.inspect` is the deprecated old name.)

>>> info = inspect_model("dkp.tflite")                         # doctest: +SKIP
>>> info.op_counts                                            # doctest: +SKIP
{'RESHAPE': 2, 'FULLY_CONNECTED': 3, 'TRANSPOSE': 1, 'ADD': 1}
>>> [is_fast_block_sparse(t) for t in info.sparse_tensors]    # doctest: +SKIP
[True]
>>> print(format_model_info(info))                            # doctest: +SKIP

Command line (exit code 2 for a missing, foreign or truncated file)::

  python -m tflite_ops.describe model.tflite [--json out.json]

What TFLite runs fast (TensorFlow sources, tensorflow/lite/kernels/fully_connected.cc,
float `EvalFloat`, optimized kernels): a sparse FULLY_CONNECTED weight must be
[out, in] with dim 0 dense and dim 1 sparse CSR (`SupportedSparsityFormat`).
With 2 dim metadata (unstructured) it runs `FullyConnectedSparseWeight`, a
plain CSR loop; with 3 (one block dim) only `dense_size == 4` is accepted and
runs `FullyConnectedSparseWeight1x4`, the fast kernel: blocks of 4 consecutive
*inputs* of one output. Any other float block is "Unsupported sparse
fully-connected weight format". Int8 weights accept only 1x16 blocks
(`FullyConnectedSparseWeight1x16`); the reference kernel densifies first.
The converter (compiler/mlir/lite/transforms/dense_to_sparse.cc) compresses a
2-D/4-D constant when >= 30% of it is zero, tries the op's block shapes (1x4
for a float FC), and keeps a block shape when its
block sparsity is > 0.9x the element sparsity. Otherwise it stores the weight
unstructured *and* inserts a DENSIFY op, so the FC runs dense: this is why
4 consecutive *outputs* (tfmot `block_size=(1, 4)` on a Keras kernel) and
random sparsity above ~3.5% density gain nothing (0.965**4 / 0.965 = 0.9),
while random sparsity below it is stored in 1x4 blocks padded with zeros
(each kept block stores its zeros too). The unstructured layout the kernel
runs is written by `tflite_ops.sparse_fc_rewrite`. How fast each layout runs:
docs/results.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import math
import os
import sys
from typing import NamedTuple

from tflite_ops import files
from tflite_ops import quiet_tensorflow

# Bytes 4..8 of every TFLite flatbuffer (schema.fbs `file_identifier "TFL3"`).
TFLITE_IDENTIFIER = b"TFL3"

# Element widths of TensorType names (schema.fbs); int4 / uint4 pack two per byte.
_ITEM_BYTES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1,
    "int16": 2, "complex64": 8, "int8": 1, "float64": 8, "complex128": 16,
    "uint64": 8, "uint32": 4, "uint16": 2, "int4": 0.5, "bfloat16": 2,
    "uint4": 0.5, "int2": 0.25,
}
# SparseIndexVector union tags -> (name, element width).
_INDEX_VECTORS = {1: ("int32", 4), 2: ("uint16", 2), 3: ("uint8", 1)}
_DIM_FORMATS = {0: "dense", 1: "sparse_csr"}


class TFLiteFormatError(ValueError):
  """The bytes are not a (complete) TFLite flatbuffer."""


@functools.lru_cache(maxsize=None)
def _flatbuffer_modules(backend="auto"):
  """(flatbuffer_utils, schema_py_generated), LiteRT's copy when installed.

  Both are generated from the same schema.fbs; LiteRT's loads without
  importing TensorFlow, which keeps the command line quick to start.
  """
  if backend in ("auto", "litert"):
    try:
      # pylint: disable=import-outside-toplevel
      from ai_edge_litert import schema_py_generated as schema
      from ai_edge_litert.tools import flatbuffer_utils
      return flatbuffer_utils, schema
    except ImportError:
      if backend == "litert":
        raise
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  # pylint: disable=import-outside-toplevel
  from tensorflow.lite.python import schema_py_generated as schema
  from tensorflow.lite.tools import flatbuffer_utils
  return flatbuffer_utils, schema


def _enum_names(enum_class, lower=False):
  """Reverse map {int: NAME} of a flatbuffers-generated enum class."""
  names = {}
  for name, value in vars(enum_class).items():
    if not name.startswith("_") and isinstance(value, int):
      names.setdefault(value, name.lower() if lower else name)
  return names


class OpInfo(NamedTuple):
  """One operator: ``(subgraph, index, name, inputs, outputs)``; custom ops by custom code."""
  subgraph: int
  index: int
  name: str
  inputs: tuple
  outputs: tuple


class IOInfo(NamedTuple):
  """A model input or output of subgraph 0; shape uses -1 for dynamic dims."""
  name: str
  shape: tuple
  dtype: str


@dataclasses.dataclass(frozen=True)
class SparsityInfo:
  """How one constant is stored sparse (TFLite `SparsityParameters`).

  >>> s = inspect_model("m.tflite").sparse_tensors[0].sparsity  # doctest: +SKIP
  >>> s.block_shape, s.dim_formats, s.index_types               # doctest: +SKIP
  ((1, 4), ('dense', 'sparse_csr', 'dense'), ('uint16', 'uint16'))

  ``dim_formats`` follow ``traversal_order`` (original dims, then block dims);
  ``block_shape`` has one entry per original dim (1 where not blocked);
  ``index_types`` are the segments and indices types of each sparse dim, in
  that order; ``density`` counts stored values (explicit zeros inside a kept
  block included) over the dense size.
  """
  traversal_order: tuple
  block_map: tuple
  block_shape: tuple
  dim_formats: tuple
  index_types: tuple
  num_blocks: int
  values_bytes: int
  indices_bytes: int
  dense_shape: tuple
  density: float

  @property
  def total_bytes(self):
    return self.values_bytes + self.indices_bytes

  def describe(self):
    """Short text, e.g. 'sparse 1x4 blocks, uint16/uint16 index'."""
    if any(b > 1 for b in self.block_shape):
      layout = "x".join(map(str, self.block_shape)) + " blocks"
    else:
      layout = "CSR, no blocks"
    return f"sparse {layout}, {'/'.join(self.index_types)} index"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One tensor of one subgraph; ``consumers`` are the ops that read it."""
  subgraph: int
  index: int
  name: str
  shape: tuple
  dtype: str
  buffer: int
  buffer_bytes: int
  is_constant: bool
  sparsity: SparsityInfo | None = None
  consumers: tuple = ()


@dataclasses.dataclass
class ModelInfo:
  """What a .tflite file holds. Build it with `inspect_model`.

  >>> info = inspect_model("m.tflite")                           # doctest: +SKIP
  >>> info.op_counts, info.weights_bytes, info.uses_flex         # doctest: +SKIP
  ({'FULLY_CONNECTED': 1}, 1632, False)
  """
  file_bytes: int
  ops: list
  op_counts: dict
  tensors: list
  inputs: list
  outputs: list
  custom_ops: list
  num_subgraphs: int

  @property
  def uses_flex(self):
    """True when the model needs the Flex (Select TF ops) delegate."""
    return any(code.startswith("Flex") for code in self.custom_ops)

  @property
  def sparse_tensors(self):
    return [t for t in self.tensors if t.sparsity is not None]

  @property
  def constant_tensors(self):
    return [t for t in self.tensors if t.is_constant]

  @property
  def weights_bytes(self):
    """Bytes of constant data; a buffer shared by several tensors counts once."""
    return sum({t.buffer: t.buffer_bytes for t in self.constant_tensors}.values())

  def summary(self):
    """A JSON-ready dict of everything above."""
    return {
        "file_bytes": self.file_bytes,
        "weights_bytes": self.weights_bytes,
        "num_subgraphs": self.num_subgraphs,
        "op_counts": dict(self.op_counts),
        "ops": [[op.subgraph, op.name] for op in self.ops],
        "inputs": [io._asdict() for io in self.inputs],
        "outputs": [io._asdict() for io in self.outputs],
        "custom_ops": list(self.custom_ops),
        "uses_flex": self.uses_flex,
        "sparse_tensors": [{"subgraph": t.subgraph, "index": t.index, "name": t.name,
                            "fast_block_sparse": is_fast_block_sparse(t),
                            "csr_sparse": is_csr_sparse(t),
                            **dataclasses.asdict(t.sparsity)} for t in self.sparse_tensors],
        "tensors": [{k: v for k, v in dataclasses.asdict(t).items() if k != "sparsity"}
                    for t in self.tensors],
    }


def _float_fc_sparsity(sparsity):
  """The `SparsityInfo` to check; None for a `TensorInfo` that is not a float32 FC weight."""
  if isinstance(sparsity, TensorInfo):
    tensor, sparsity = sparsity, sparsity.sparsity
    if tensor.dtype != "float32" or "FULLY_CONNECTED" not in tensor.consumers:
      return None
  return sparsity


def is_fast_block_sparse(sparsity):
  """True for the weight layout TFLite's fast sparse FULLY_CONNECTED kernel runs.

  That is a 2-D [out, in] weight, dim 0 dense, dim 1 sparse CSR, in blocks of
  1x4 (4 consecutive inputs of one output): `FullyConnectedSparseWeight1x4`.
  Blocks on the output axis (4x1) or no blocks at all give False. Pass a
  `TensorInfo` to also require a float32 tensor read by a FULLY_CONNECTED op
  (not by DENSIFY, which means it runs dense).

  >>> [is_fast_block_sparse(t) for t in info.sparse_tensors]   # doctest: +SKIP
  [True]
  """
  sparsity = _float_fc_sparsity(sparsity)
  if sparsity is None:
    return False
  # The kernel itself only checks dims 0/1 and dim_metadata[2].dense_size == 4;
  # traversal order and block map pin the block to the input axis.
  return (len(sparsity.dense_shape) == 2
          and tuple(sparsity.traversal_order) == (0, 1, 2)
          and tuple(sparsity.block_map) == (1,)
          and tuple(sparsity.dim_formats) == ("dense", "sparse_csr", "dense")
          and tuple(sparsity.block_shape) == (1, 4))


def is_csr_sparse(sparsity):
  """True for an unstructured [out, in] weight, dim 0 dense and dim 1 sparse CSR, no blocks.

  TFLite's FULLY_CONNECTED runs it with `FullyConnectedSparseWeight` (what
  `tflite_ops.sparse_fc_rewrite` writes). Pass a `TensorInfo` to also require a
  float32 tensor read by a FULLY_CONNECTED op.
  """
  sparsity = _float_fc_sparsity(sparsity)
  if sparsity is None:
    return False
  return (len(sparsity.dense_shape) == 2 and tuple(sparsity.traversal_order) == (0, 1)
          and tuple(sparsity.dim_formats) == ("dense", "sparse_csr"))


def _index_vector(vector, vector_type, what, label):
  """(number of entries, type name, width) of a sparse index vector."""
  if vector_type not in _INDEX_VECTORS:
    raise TFLiteFormatError(f"{label}: sparse tensor has no {what} vector (type {vector_type})")
  name, width = _INDEX_VECTORS[vector_type]
  values = getattr(vector, "values", None)
  return (0 if values is None else len(values)), name, width


def _sparsity_info(params, shape, values_bytes, label):
  """`SparsityInfo` of a `SparsityParametersT` on a tensor of dense ``shape``."""
  rank = len(shape)
  order, block_map = _ints(params.traversalOrder), _ints(params.blockMap)
  dims = list(params.dimMetadata or ())
  if len(dims) != len(order) or len(order) != rank + len(block_map):
    raise TFLiteFormatError(f"{label}: inconsistent sparsity metadata (traversal order "
                            f"{order}, block map {block_map}, {len(dims)} dims, rank {rank})")
  block_shape = [1] * rank
  for position, dim in enumerate(order):
    if dim >= rank:  # a block dim: its dense size is the block's extent on block_map[...]
      block_shape[block_map[dim - rank]] = int(dims[position].denseSize)
  formats, index_types, indices_bytes, num_blocks = [], [], 0, None
  stored = 1  # values stored below the current traversal level
  for dim in dims:
    formats.append(_DIM_FORMATS.get(dim.format, f"format_{dim.format}"))
    if dim.format == 0:
      stored *= int(dim.denseSize)
    else:
      n_seg, seg_type, seg_width = _index_vector(dim.arraySegments, dim.arraySegmentsType,
                                                 "segments", label)
      n_idx, idx_type, idx_width = _index_vector(dim.arrayIndices, dim.arrayIndicesType,
                                                 "indices", label)
      index_types += [seg_type, idx_type]
      indices_bytes += n_seg * seg_width + n_idx * idx_width
      stored = n_idx  # CSR: one entry per stored element of this level, over all parents
      num_blocks = n_idx
  if num_blocks is None:  # all dims dense: a sparse tensor stored in full
    num_blocks = stored // max(1, math.prod(block_shape))
  dense_size = math.prod(shape)
  return SparsityInfo(
      traversal_order=order, block_map=block_map, block_shape=tuple(block_shape),
      dim_formats=tuple(formats), index_types=tuple(index_types), num_blocks=int(num_blocks),
      values_bytes=int(values_bytes), indices_bytes=int(indices_bytes), dense_shape=tuple(shape),
      density=stored / dense_size if dense_size else 0.0)


def _read(path_or_bytes):
  """(bytes, label for messages)."""
  if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
    return bytes(path_or_bytes), "<bytes>"
  label = os.fspath(path_or_bytes)
  with open(label, "rb") as f:
    return f.read(), label


def inspect_model(path_or_bytes):
  """Parse a .tflite file (path or its bytes) into a `ModelInfo`.

  Raises `FileNotFoundError` for a missing path and `TFLiteFormatError` for
  bytes that are not a TFLite flatbuffer or are truncated.

  >>> info = inspect_model("model.tflite")                      # doctest: +SKIP
  >>> info.op_counts["FULLY_CONNECTED"], len(info.sparse_tensors)  # doctest: +SKIP
  (1, 1)
  """
  data, label = _read(path_or_bytes)
  if len(data) < 8:
    raise TFLiteFormatError(f"{label} is not a TFLite model: {len(data)} bytes is too short")
  if data[4:8] != TFLITE_IDENTIFIER:
    raise TFLiteFormatError(f"{label} is not a TFLite model (no 'TFL3' identifier at bytes "
                            f"4..8, found {bytes(data[4:8])!r})")
  fbu, schema = _flatbuffer_modules()
  try:
    # The object API reads every table and vector eagerly, so data cut short
    # fails here (struct.error / ValueError / IndexError from the reader).
    model = fbu.convert_bytearray_to_object(bytearray(data))
    if sys.byteorder == "big":
      fbu.byte_swap_tflite_model_obj(model, "little", "big")
  except Exception as e:  # pylint: disable=broad-except
    raise TFLiteFormatError(f"{label} has a TFLite header but cannot be parsed: the file is "
                            f"truncated or corrupt ({type(e).__name__}: {e})") from None
  try:
    return _model_info(model, schema, len(data), label)
  except TFLiteFormatError:
    raise
  except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
    raise TFLiteFormatError(f"{label} is a malformed TFLite model: the file is truncated or "
                            f"corrupt ({type(e).__name__}: {e})") from None


def _buffer_sizes(model, file_bytes, label):
  sizes = []
  for b, buf in enumerate(model.buffers or ()):
    # Models over 2 GB keep data after the flatbuffer at `offset` (1 = unset).
    if buf.offset and buf.offset > 1:
      if buf.offset + buf.size > file_bytes:
        raise TFLiteFormatError(f"{label} is truncated: buffer {b} ends at byte "
                                f"{buf.offset + buf.size}, the file has {file_bytes}")
      sizes.append(int(buf.size))
    else:
      sizes.append(0 if buf.data is None else len(buf.data))
  return sizes


def builtin_code(code):
  """The builtin operator of an `OperatorCodeT`.

  Codes >= 127 live in `builtinCode` only; older files fill the deprecated byte.
  """
  return max(code.deprecatedBuiltinCode, code.builtinCode)


def opcode_index(model, schema, builtin, version):
  """Index of the model's operator code for ``builtin`` at exactly ``version`` (added if missing).

  For the rewrites of a converted file (`tflite_ops.quantize`, `tflite_ops.sparse_fc_rewrite`).
  """
  for index, code in enumerate(model.operatorCodes):
    if builtin_code(code) == builtin and code.version == version:
      return index
  code = schema.OperatorCodeT()
  code.builtinCode = builtin
  code.deprecatedBuiltinCode = min(builtin, 127)
  code.version = version
  model.operatorCodes.append(code)
  return len(model.operatorCodes) - 1


def _op_names(model, schema):
  builtin = _enum_names(schema.BuiltinOperator)
  custom_code = getattr(schema.BuiltinOperator, "CUSTOM", 32)
  names = []
  for code in model.operatorCodes or ():
    value = builtin_code(code)
    if value == custom_code or code.customCode:
      custom = code.customCode
      names.append((custom.decode("utf-8", "replace") if isinstance(custom, bytes)
                    else str(custom or "CUSTOM"), True))
    else:
      names.append((builtin.get(value, f"BUILTIN_{value}"), False))
  return names


def _ints(values):
  """A tuple of Python ints from a flatbuffers vector (numpy array, list or None)."""
  return () if values is None else tuple(int(v) for v in values)


def _text(value):
  if value is None:
    return ""
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _model_info(model, schema, file_bytes, label):
  dtypes = _enum_names(schema.TensorType, lower=True)
  buffer_sizes = _buffer_sizes(model, file_bytes, label)
  op_names = _op_names(model, schema)
  ops, custom_ops, tensors = [], [], []
  for s, sg in enumerate(model.subgraphs or ()):
    consumers = collections.defaultdict(list)
    for k, op in enumerate(sg.operators or ()):
      name, is_custom = op_names[op.opcodeIndex]
      if is_custom and name not in custom_ops:
        custom_ops.append(name)
      inputs, outputs = _ints(op.inputs), _ints(op.outputs)
      ops.append(OpInfo(s, k, name, inputs, outputs))
      for i in inputs:
        if i >= 0:  # -1: an optional input left out
          consumers[i].append(name)
    for j, t in enumerate(sg.tensors or ()):
      shape = _ints(t.shape)
      dtype = dtypes.get(t.type, f"type_{t.type}")
      nbytes = buffer_sizes[t.buffer] if 0 <= t.buffer < len(buffer_sizes) else 0
      is_constant = nbytes > 0 and not t.isVariable
      sparsity = None
      if t.sparsity is not None:
        sparsity = _sparsity_info(t.sparsity, shape, nbytes, f"{label}: tensor {_text(t.name)}")
      tensors.append(TensorInfo(
          subgraph=s, index=j, name=_text(t.name), shape=shape, dtype=dtype,
          buffer=int(t.buffer), buffer_bytes=nbytes, is_constant=is_constant,
          sparsity=sparsity, consumers=tuple(consumers.get(j, ()))))
  io = {"inputs": [], "outputs": []}
  if model.subgraphs:
    sg = model.subgraphs[0]
    for key, indices in (("inputs", sg.inputs), ("outputs", sg.outputs)):
      for i in (indices if indices is not None else ()):
        t = sg.tensors[i]
        # shape_signature keeps -1 for dynamic dims (batch); shape has 1 there.
        shape = _ints(t.shapeSignature) or _ints(t.shape)
        io[key].append(IOInfo(_text(t.name), shape, dtypes.get(t.type, f"type_{t.type}")))
  return ModelInfo(file_bytes=file_bytes, ops=ops,
                   op_counts=dict(collections.Counter(op.name for op in ops)),
                   tensors=tensors, inputs=io["inputs"], outputs=io["outputs"],
                   custom_ops=custom_ops, num_subgraphs=len(model.subgraphs or ()))


def _storage(t):
  """The 'format' column of `format_model_info`."""
  if t.sparsity is None:
    return "dense"
  text = t.sparsity.describe()
  if is_fast_block_sparse(t):
    text += " (fast sparse FC)"
  elif is_csr_sparse(t):
    text += " (CSR sparse FC)"
  elif "DENSIFY" in t.consumers:
    text += " -> DENSIFY (runs dense)"
  return text


def format_model_info(info):
  """A human-readable table of a `ModelInfo`: ops, constants by size, totals.

  >>> print(format_model_info(inspect_model("m.tflite")))      # doctest: +SKIP
  """
  def io_text(items):
    return ", ".join(f"{x.name} {list(x.shape)} {x.dtype}" for x in items) or "-"

  lines = [f"file: {info.file_bytes:,} bytes, {info.num_subgraphs} subgraph(s)",
           f"inputs:  {io_text(info.inputs)}", f"outputs: {io_text(info.outputs)}", "",
           f"ops ({len(info.ops)}):"]
  width = max((len(name) for name in info.op_counts), default=0)
  lines += [f"  {name:<{width}}  {count:>5}" for name, count in info.op_counts.items()]
  if info.num_subgraphs > 1:  # WHILE / IF bodies: say where the ops run
    per = collections.Counter(op.subgraph for op in info.ops)
    lines.append("  by subgraph: " + ", ".join(f"{s}: {per[s]}" for s in range(info.num_subgraphs)))
  if info.custom_ops:
    lines.append(f"  custom ops: {', '.join(info.custom_ops)}"
                 + ("  (Flex* ops need the Flex delegate)" if info.uses_flex else ""))
  constants = sorted(info.constant_tensors, key=lambda t: (-t.buffer_bytes, t.subgraph, t.index))
  rows = [(f"{t.buffer_bytes:,}", str(list(t.shape)), t.dtype, _storage(t), t.name)
          for t in constants]
  header = ("bytes", "shape", "dtype", "format", "name")
  widths = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
  lines += ["", f"constant tensors ({len(constants)}, largest first):",
            "  " + "  ".join(h.rjust(w) if c == 0 else h.ljust(w)
                             for c, (h, w) in enumerate(zip(header, widths + [0])))]
  for r in rows:
    lines.append("  " + "  ".join(v.rjust(w) if c == 0 else v.ljust(w)
                                  for c, (v, w) in enumerate(zip(r, widths + [0]))).rstrip())
  for t in info.sparse_tensors:
    s = t.sparsity
    lines.append(f"  sparse {t.name}: {s.num_blocks:,} blocks of "
                 f"{'x'.join(map(str, s.block_shape))}, density {s.density:.2%}, "
                 f"values {s.values_bytes:,} B + index {s.indices_bytes:,} B "
                 f"(dense {math.prod(s.dense_shape) * _ITEM_BYTES.get(t.dtype, 4):,.0f} B)")
  sparse_bytes = sum(t.sparsity.total_bytes for t in info.sparse_tensors)
  lines += ["", f"totals: {info.weights_bytes:,} B of constant data in a "
                f"{info.file_bytes:,} B file; {len(info.sparse_tensors)} sparse tensor(s), "
                f"{sparse_bytes:,} B with their index"]
  return "\n".join(lines)


def main(argv=None):
  """Command line: print the table of a .tflite file, optionally write JSON.

  >>> main(["model.tflite", "--json", "model.json"])            # doctest: +SKIP
  0
  """
  parser = argparse.ArgumentParser(
      prog="python -m tflite_ops.describe",
      description="Show the ops, constant tensors and sparsity of a .tflite file.")
  parser.add_argument("model", help="path of the .tflite file")
  parser.add_argument("--json", metavar="OUT", help="also write the summary as JSON here")
  parser.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's start-up log (TensorFlow reads the file only "
                           "where LiteRT is not installed)")
  args = parser.parse_args(argv)
  # Load the flatbuffer reader first: TensorFlow's prints its start-up log as it loads.
  with contextlib.nullcontext() if args.verbose else quiet_tensorflow.stderr_hidden():
    _flatbuffer_modules()
  try:
    info = inspect_model(args.model)
  except FileNotFoundError:
    parser.exit(2, f"error: model file not found: {args.model}\n")
  except IsADirectoryError:
    parser.exit(2, f"error: {args.model} is a directory, not a .tflite file\n")
  except TFLiteFormatError as e:
    parser.exit(2, f"error: {e}\n")
  except OSError as e:
    parser.exit(2, f"error: cannot read {args.model}: {e.strerror or e}\n")
  print(format_model_info(info))
  if args.json:
    try:
      files.write_json_atomic(args.json, info.summary())
    except OSError as e:
      parser.exit(1, f"error: cannot write {args.json}: {e.strerror or e}\n")
    print(f"\nwrote {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
