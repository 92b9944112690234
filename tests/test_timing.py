"""Timing helpers: repetitions interleave across variants; medians per variant."""

import numpy as np
import pytest
import tensorflow as tf

from tflite_ops import timing


def test_repetitions_interleave_across_variants():
  calls = []
  callables = {name: (lambda name=name: calls.append(name)) for name in ("dense", "dkp", "kp")}
  result = timing.interleaved_medians(callables, repeats=3, number=2, warmup=1)
  timed = calls[3:]                                     # after one warm-up call each
  blocks = [timed[i] for i in range(0, len(timed), 2)]  # first call of every block
  assert blocks == ["dense", "dkp", "kp"] * 3
  assert set(result) == {"dense", "dkp", "kp"}
  for stats in result.values():
    assert len(stats["samples_s"]) == 3
    assert stats["p10_s"] <= stats["median_s"] <= stats["p90_s"]


def test_bad_counts_are_rejected():
  with pytest.raises(ValueError, match="repeats"):
    timing.interleaved_medians({"a": lambda: None}, repeats=0)



def _float_and_token_model(directory):
  @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32),
                                tf.TensorSpec([1, 1], tf.int32)])
  def model(x, token):
    return x * 2.0 + tf.cast(token, tf.float32)

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [model.get_concrete_function()], model)
  path = directory / "two_inputs.tflite"
  path.write_bytes(converter.convert())
  return path


def _inputs(interpreter):
  return {detail["dtype"]: interpreter.get_tensor(detail["index"])
          for detail in interpreter.get_input_details()}


def test_timing_interpreter_sets_random_floats_and_zero_token_ids(tmp_path):
  """Zero floats would let dynamic-int8 kernels skip their matmuls (all-zero input vectors)."""
  path = _float_and_token_model(tmp_path)
  inputs = _inputs(timing.timing_interpreter(path))
  assert not np.any(inputs[np.int32])
  assert np.count_nonzero(inputs[np.float32]) == 8
  np.testing.assert_array_equal(inputs[np.float32],
                                _inputs(timing.timing_interpreter(path))[np.float32])
  assert not np.array_equal(inputs[np.float32],
                            _inputs(timing.timing_interpreter(path, seed=1))[np.float32])
