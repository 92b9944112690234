"""float16 rewrite: dense weights become float16 + DEQUANTIZE, sparse S stays float32."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tflite_ops import describe
from tflite_ops import quantize


@pytest.fixture(scope="module")
def dense_plus_sparse():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(64, 128)).astype(np.float32)
  s = ((rng.random((16, 128)) < 0.05).repeat(4, 0) * rng.normal(size=(64, 128))).astype(
      np.float32)

  @tf.function(input_signature=[tf.TensorSpec([2, 64], tf.float32, name="x")])
  def f(x):
    return {"y": tf.matmul(x, w) + tf.matmul(x, s)}

  converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
  converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  return converter.convert(), w, s


def test_dense_weights_become_float16_and_s_stays_sparse_float32(dense_plus_sparse):
  flatbuffer, w, s = dense_plus_sparse
  rewritten = quantize.float16_weights(flatbuffer)
  info = describe.inspect_model(rewritten)
  assert info.op_counts["DEQUANTIZE"] == 1
  assert [t.dtype for t in info.constant_tensors if t.shape == (128, 64) and t.sparsity is None
          ] == ["float16"]
  assert [t.dtype for t in info.sparse_tensors] == ["float32"]
  assert describe.is_fast_block_sparse(info.sparse_tensors[0])
  assert len(rewritten) < len(flatbuffer) - 64 * 128  # 2 of 4 bytes saved per dense weight
  x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
  interpreter = Interpreter(model_content=rewritten)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  reference = x @ w + x @ s
  assert np.max(np.abs(y - reference)) / np.max(np.abs(reference)) < 2e-3


def test_small_weights_are_left_alone(dense_plus_sparse):
  flatbuffer, _, _ = dense_plus_sparse
  rewritten = quantize.float16_weights(flatbuffer, min_elements=10 ** 6)
  assert "DEQUANTIZE" not in describe.inspect_model(rewritten).op_counts
