"""float16 weights that leave the sparse doping matrices alone.

The converter's own float16 mode turns every float weight into float16, the
sparse ones included, and LiteRT (ai-edge-litert 2.3) then computes NaN from a
sparse float16 weight. So we convert in float32 (S stored sparse) and rewrite
the file: each dense float32 constant becomes a float16 constant feeding a
DEQUANTIZE op (the converter's own float16 layout, which LiteRT evaluates once
at load), while sparse tensors stay float32.
"""

from __future__ import annotations

import collections

import numpy as np

from tflite_ops import describe


def float16_weights(flatbuffer, min_elements=1024):
  """Returns the model with dense float32 weights of >= min_elements stored as float16.

  Sparse weights (S), variables and buffers shared by several tensors keep
  float32. The float16 copies are dequantized by DEQUANTIZE ops placed first.
  """
  flatbuffer_utils, schema = describe._flatbuffer_modules()  # pylint: disable=protected-access
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
  dequantize = None
  users = collections.Counter(t.buffer for g in model.subgraphs for t in g.tensors)
  for subgraph in model.subgraphs:
    dequantize_ops = []
    for index, tensor in enumerate(list(subgraph.tensors)):
      buffer = model.buffers[tensor.buffer]
      if (tensor.type != schema.TensorType.FLOAT32 or tensor.sparsity is not None
          or tensor.isVariable or users[tensor.buffer] != 1 or buffer.data is None
          or len(buffer.data) < 4 * min_elements):
        continue
      values = np.frombuffer(bytes(buffer.data), dtype="<f4")
      half = schema.BufferT()
      half.data = np.frombuffer(values.astype("<f2").tobytes(), dtype=np.uint8)
      model.buffers.append(half)
      buffer.data = None  # the float32 tensor is now computed by DEQUANTIZE
      copy = schema.TensorT()
      copy.shape, copy.type = tensor.shape, schema.TensorType.FLOAT16
      copy.buffer = len(model.buffers) - 1
      copy.name = (tensor.name or b"") + b"_float16"
      subgraph.tensors.append(copy)
      if dequantize is None:
        # DEQUANTIZE version 3 is the one that reads float16.
        dequantize = describe.opcode_index(model, schema,
                                                 schema.BuiltinOperator.DEQUANTIZE, 3)
      op = schema.OperatorT()
      op.opcodeIndex = dequantize
      op.inputs = np.array([len(subgraph.tensors) - 1], dtype=np.int32)
      op.outputs = np.array([index], dtype=np.int32)
      dequantize_ops.append(op)
    subgraph.operators = dequantize_ops + list(subgraph.operators or [])
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
