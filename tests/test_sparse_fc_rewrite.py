"""tflite_ops.sparse_fc_rewrite: unstructured S as a CSR FULLY_CONNECTED weight LiteRT runs."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from hypothesis import given, settings, strategies as st

from tflite_ops import describe
from tflite_ops import sparse_fc_rewrite


def random_sparse_kernel(n, m, density, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, m)) * (rng.random((n, m)) < density)).astype(np.float32)


@settings(max_examples=25)
@given(out=st.integers(1, 9), width=st.integers(1, 9), density=st.floats(0, 1),
       seed=st.integers(0, 99))
def test_csr_decode_inverts_encode(out, width, density, seed):
  weight = random_sparse_kernel(out, width, density, seed)
  values, segments, indices = sparse_fc_rewrite.csr_encode(weight)
  assert len(values) == np.count_nonzero(weight) and len(segments) == out + 1
  np.testing.assert_array_equal(sparse_fc_rewrite.csr_decode(values, segments, indices, weight.shape),
                                weight)


def test_csr_decode_rejects_inconsistent_encodings():
  with pytest.raises(ValueError, match="inconsistent CSR"):
    sparse_fc_rewrite.csr_decode([1.0], [0, 1], [5], (1, 3))  # index past the width
  with pytest.raises(ValueError, match="inconsistent CSR"):
    sparse_fc_rewrite.csr_decode([1.0], [0, 2], [0], (1, 3))  # segments count 2 values
  with pytest.raises(ValueError, match="2-D"):
    sparse_fc_rewrite.csr_encode(np.ones(3))


def convert(fn, n, sparsity_flag=False):
  spec = tf.TensorSpec([2, n], tf.float32)
  concrete = tf.function(fn, input_signature=[spec]).get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
  if sparsity_flag:
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  return converter.convert()


def run(flatbuffer, x, xnnpack):
  kwargs = {} if xnnpack else {
      "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
  interpreter = Interpreter(model_content=flatbuffer, **kwargs)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def fc_versions(flatbuffer):
  flatbuffer_utils, schema = describe._flatbuffer_modules()  # pylint: disable=protected-access
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
  return [model.operatorCodes[op.opcodeIndex].version for op in model.subgraphs[0].operators
          if model.operatorCodes[op.opcodeIndex].builtinCode
          == schema.BuiltinOperator.FULLY_CONNECTED]


@pytest.mark.parametrize("n, m, sparsity_flag", [
    (37, 64, False),    # the converter leaves S a dense constant; odd input size, uint8 indices
    (300, 100, True),   # 5% random: the converter stores it sparse plus a DENSIFY op
])
def test_s_is_stored_as_csr_and_runs_right_with_and_without_xnnpack(n, m, sparsity_flag):
  kernel = random_sparse_kernel(n, m, 0.05)
  weight = tf.constant(kernel)
  flatbuffer = convert(lambda x: tf.matmul(x, weight), n, sparsity_flag)
  assert ("DENSIFY" in describe.inspect_model(flatbuffer).op_counts) == sparsity_flag
  rewritten, stored = sparse_fc_rewrite.store_csr_weights(flatbuffer, [kernel.T])
  assert stored == 1
  info = describe.inspect_model(rewritten)
  assert "DENSIFY" not in info.op_counts
  [tensor] = info.sparse_tensors
  assert describe.is_csr_sparse(tensor)
  assert tensor.sparsity.density == pytest.approx(np.count_nonzero(kernel) / kernel.size)
  assert tensor.sparsity.index_types == (("uint8", "uint8") if n < 256 else ("uint16", "uint16"))
  assert info.file_bytes < kernel.nbytes / 3     # 5% of the values, at 5-6 bytes each
  # Sparse weights need FULLY_CONNECTED version 8: with a lower one XNNPack
  # delegates the op and reads the CSR values as a dense matrix.
  assert fc_versions(rewritten) == [8]
  x = np.random.default_rng(1).normal(size=(2, n)).astype(np.float32)
  bound = 1e-5 * (np.abs(x) @ np.abs(kernel)) + 1e-6
  for xnnpack in (True, False):
    assert np.all(np.abs(run(rewritten, x, xnnpack) - x @ kernel) <= bound)


def test_only_the_given_weights_are_rewritten_and_a_shared_one_once():
  s, other = random_sparse_kernel(40, 24, 0.1), random_sparse_kernel(40, 24, 0.1, seed=1)
  s_t, other_t = tf.constant(s), tf.constant(other)
  flatbuffer = convert(
      lambda x: tf.matmul(x, s_t) + tf.matmul(tf.tanh(x), s_t) + tf.matmul(x, other_t), 40)
  rewritten, stored = sparse_fc_rewrite.store_csr_weights(flatbuffer, [s.T])
  assert stored == 1
  info = describe.inspect_model(rewritten)
  assert len(info.sparse_tensors) == 1                                # `other` stays dense
  assert sorted(fc_versions(rewritten))[-2:] == [8, 8]                # both readers of S
  x = np.random.default_rng(2).normal(size=(2, 40)).astype(np.float32)
  expected = x @ s + np.tanh(x) @ s + x @ other
  np.testing.assert_allclose(run(rewritten, x, True), expected, atol=1e-4)
  _, none = sparse_fc_rewrite.store_csr_weights(flatbuffer, [np.ones((24, 40), np.float32)])
  assert none == 0


def test_sparse_int8_weights_are_marked_version_8_and_xnnpack_then_runs_them_right():
  """The converter gives int8 FULLY_CONNECTED ops version 12, sparse or not: XNNPack took
  the sparse ones and computed NaN (measured) until they were marked version 8."""
  rng = np.random.default_rng(3)
  keep = np.repeat(rng.random((64 // 16, 48)) < 0.1, 16, axis=0)  # 16 inputs: int8's 1x16
  kernel = (rng.normal(size=(64, 48)) * keep).astype(np.float32)
  weight, dense = tf.constant(kernel), tf.constant(rng.normal(size=(48, 8)).astype(np.float32))
  spec = tf.TensorSpec([1, 64], tf.float32)
  concrete = tf.function(lambda x: tf.matmul(tf.matmul(x, weight), dense),
                         input_signature=[spec]).get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
  converter.optimizations = [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  flatbuffer = converter.convert()
  assert len(describe.inspect_model(flatbuffer).sparse_tensors) == 1
  marked, count = sparse_fc_rewrite.mark_sparse_fully_connected(flatbuffer)
  assert count == 1
  assert 8 not in fc_versions(flatbuffer) and sorted(fc_versions(marked))[0] == 8
  x = rng.normal(size=(1, 64)).astype(np.float32)
  np.testing.assert_allclose(run(marked, x, True), run(marked, x, False), rtol=1e-4, atol=1e-4)
  assert sparse_fc_rewrite.mark_sparse_fully_connected(marked)[1] == 0


def test_dense_float_weights_beside_sparse_ones_leave_version_8_for_xnnpack():
  """In a float file with a sparse weight the converter puts every FULLY_CONNECTED at
  version 8, which XNNPack refuses: the dense ones move to a version it takes."""
  rng = np.random.default_rng(4)
  keep = np.repeat(rng.random((64 // 4, 48)) < 0.05, 4, axis=0)  # TFLite's 1x4 blocks
  sparse = tf.constant((rng.normal(size=(64, 48)) * keep).astype(np.float32))
  dense = tf.constant(rng.normal(size=(48, 8)).astype(np.float32))
  flatbuffer = convert(lambda x: tf.matmul(tf.matmul(x, sparse), dense), 64, sparsity_flag=True)
  assert fc_versions(flatbuffer) == [8, 8]
  marked, count = sparse_fc_rewrite.mark_sparse_fully_connected(flatbuffer)
  assert count == 1 and fc_versions(marked) == [8, sparse_fc_rewrite.DENSE_FC_VERSION]
  x = rng.normal(size=(2, 64)).astype(np.float32)
  np.testing.assert_allclose(run(marked, x, True), run(flatbuffer, x, False), rtol=1e-5, atol=1e-5)
