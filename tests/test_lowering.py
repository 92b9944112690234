"""Lowered inference graphs equal the Keras model before any conversion; bad models are named."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras.verify import assert_normwise_close
from helpers import randomize_doping
from tflite_ops import lowering

STRUCTURES = ["kronecker", "lowrank", "hmd"]


def lstm_stack(structure="kronecker", doped=True, features=7, steps=5, go_backwards=False):
  inputs = keras.Input((steps, features))
  x = dkp.DKPLSTM(12, compression=1.5, structure=structure, doped=doped, return_sequences=True,
                  go_backwards=go_backwards)(inputs)
  x = keras.layers.LSTM(6, return_sequences=True)(x)
  x = keras.layers.Dropout(0.5)(x)
  outputs = dkp.DopedDense(5, compression=1.5, structure=structure, doped=doped)(x)
  model = keras.Model(inputs, outputs)
  for layer in model.layers:
    if hasattr(getattr(layer, "cell", layer), "doped_matrices"):
      randomize_doping(getattr(layer, "cell", layer))
  return model


def run_steps(lowered, x):
  states = {name: tf.zeros(shape) for name, shape in lowered.state_shapes.items()}
  outputs = []
  for t in range(x.shape[1]):
    result = lowered.function(tf.constant(x[:, t:t + 1]), *states.values())
    outputs.append(result["outputs"].numpy())
    states = {name: result[name] for name in states}
  return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("doped", [True, False])
def test_both_modes_equal_keras(structure, doped):
  model = lstm_stack(structure, doped)
  x = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32)
  reference = model(x).numpy()
  sequence = lowering.lower_model(model, "sequence", seq_len=5, batch_size=2)
  assert_normwise_close(sequence.function(tf.constant(x))["outputs"].numpy(), reference)
  step = lowering.lower_model(model, "step", batch_size=2)
  assert set(step.state_shapes) == {"dkplstm_h", "dkplstm_c", "lstm_h", "lstm_c"}
  assert_normwise_close(run_steps(step, x), reference)


@pytest.mark.parametrize("kernel", ["block", "csr", "dense"])
def test_fused_doping_equals_keras_in_step_mode(kernel):
  """One S over [x, h] per DKPLSTM (features 7: S_in's rows padded to whole blocks)."""
  model = lstm_stack()
  x = np.random.default_rng(2).normal(size=(2, 5, 7)).astype(np.float32)
  step = lowering.lower_model(model, "step", batch_size=2, sparse_kernel=kernel,
                              fuse_doping=True)
  fused = [m for m in step.matrices() if m.name.endswith("fused_doping")]
  assert len(fused) == 1 and fused[0].doping.shape == (8 + 12, 48)
  assert fused[0].doping_kernel == kernel
  assert all(m.doping is None for m in step.steps[0].matrices()[:2])
  assert_normwise_close(run_steps(step, x), model(x).numpy())
  with pytest.raises(ValueError, match="step mode"):
    lowering.lower_model(model, "sequence", seq_len=5, fuse_doping=True)


def test_go_backwards_and_dynamic_batch():
  model = lstm_stack(go_backwards=True)
  x = np.random.default_rng(1).normal(size=(3, 5, 7)).astype(np.float32)
  lowered = lowering.lower_model(model, "sequence", seq_len=5, batch_size=None)
  assert_normwise_close(lowered.function(tf.constant(x))["outputs"].numpy(), model(x).numpy())


def test_kernels_are_chosen_per_matrix():
  model = lstm_stack()
  chosen = {m.name: m.doping_kernel for m in lowering.lower_model(model).matrices()}
  assert chosen["dkplstm/input"] == "dense"          # random dense-ish S: stays dense
  forced = lowering.lower_model(model, sparse_kernel="gather").matrices()
  assert {m.doping_kernel for m in forced if m.doping is not None} == {"gather"}


def test_branching_model_is_rejected_with_the_layer_named():
  inputs = keras.Input((4, 3))
  a = keras.layers.Dense(3, name="left")(inputs)
  outputs = keras.layers.Add(name="join")([a, inputs])
  with pytest.raises(lowering.UnsupportedModelError, match="join"):
    lowering.lower_model(keras.Model(inputs, outputs))


@pytest.mark.parametrize("layer, message", [
    (keras.layers.GRU(4, name="my_gru"), "my_gru"),
    (keras.layers.Masking(name="masker"), "masker"),
    (dkp.DKPLSTM(4, compression=1.5, return_state=True, name="stateful_out"), "stateful_out"),
])
def test_unsupported_layers_are_named(layer, message):
  inputs = keras.Input((3, 4))
  outputs = layer(inputs)
  model = keras.Model(inputs, outputs[0] if isinstance(outputs, list) else outputs)
  with pytest.raises(lowering.UnsupportedModelError, match=message):
    lowering.lower_model(model)


def test_step_mode_needs_an_lstm_and_modes_are_checked():
  inputs = keras.Input((3, 4))
  model = keras.Model(inputs, dkp.DopedDense(8, compression=1.2)(inputs))
  with pytest.raises(lowering.UnsupportedModelError, match="step mode"):
    lowering.lower_model(model, "step")
  with pytest.raises(ValueError, match="unknown mode"):
    lowering.lower_model(model, "batch")
  with pytest.raises(ValueError, match="unknown sparse kernel"):
    lowering.lower_model(model, sparse_kernel="sparse")


def test_sequence_length_comes_from_the_caller_or_the_model():
  """The lowering has no sequence length of its own: a model of any length needs seq_len."""
  inputs = keras.Input((None, 4), name="any_length")
  model = keras.Model(inputs, dkp.DKPLSTM(6, compression=1.5, return_sequences=True)(inputs))
  assert lowering.fixed_seq_len(model) is None
  assert lowering.fixed_seq_len(lstm_stack(steps=5)) == 5
  with pytest.raises(ValueError, match="any length.*pass seq_len"):
    lowering.lower_model(model)
  x = np.random.default_rng(0).normal(size=(1, 3, 4)).astype(np.float32)
  lowered = lowering.lower_model(model, seq_len=3)
  assert lowered.seq_len == 3
  assert_normwise_close(lowered.function(tf.constant(x))["outputs"].numpy(), model(x).numpy())
  assert lowering.lower_model(model, "step").seq_len is None  # one step: no length needed
  assert lowering.lower_model(lstm_stack(steps=5)).seq_len == 5


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave"])
def test_bidirectional_lowers_in_sequence_mode_and_says_why_not_in_step_mode(merge_mode):
  inputs = keras.Input((5, 7))
  x = keras.layers.Bidirectional(dkp.DKPLSTM(6, compression=1.5, return_sequences=True),
                                 merge_mode=merge_mode, name="both_ways")(inputs)
  x = keras.layers.LSTM(4, return_sequences=True)(x)
  model = keras.Model(inputs, keras.layers.TimeDistributed(
      dkp.DopedDense(8, compression=1.2, name="per_step"))(x))
  for owner in dkp.traversal.find_doped_owners(model):
    randomize_doping(owner)
  x = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32)
  lowered = lowering.lower_model(model, "sequence", batch_size=2)
  # Both directions and the wrapped DopedDense are lowered: their S get sparse kernels.
  names = {m.name for m in lowered.matrices() if m.doping is not None}
  assert {"per_step"} < names and len([n for n in names if "/recurrent" in n]) == 2
  assert_normwise_close(lowered.function(tf.constant(x))["outputs"].numpy(),
                        model(x).numpy(), 1e-5)
  with pytest.raises(lowering.UnsupportedModelError, match="both_ways.*Bidirectional.*sequence"):
    lowering.lower_model(model, "step")


def test_pruned_keras_lstm_is_lowered_sparse_in_both_modes():
  inputs = keras.Input((5, 8))
  x = keras.layers.LSTM(16, return_sequences=True, name="pruned")(inputs)
  model = keras.Model(inputs, keras.layers.LSTM(4, return_sequences=True, name="kept")(x))
  rng = np.random.default_rng(0)
  cell = model.get_layer("pruned").cell
  for kernel in (cell.kernel, cell.recurrent_kernel):  # 1x1 magnitude pruning to 5%
    values = kernel.numpy()
    kernel.assign(np.where(rng.random(values.shape) < 0.05, values, 0.0))
  x = rng.normal(size=(2, 5, 8)).astype(np.float32)
  for mode in lowering.MODES:
    lowered = lowering.lower_model(model, mode, batch_size=2)
    kernels = {m.name: m.doping_kernel for m in lowered.matrices()}
    assert kernels["pruned/input"] == kernels["pruned/recurrent"] == "csr"
    if mode == "step":
      assert kernels["kept/input"] == "none"  # dense: not pruned, no S
      assert_normwise_close(run_steps(lowered, x), model(x).numpy(), 1e-5)
    else:
      assert "kept/input" not in kernels  # an unpruned Keras LSTM passes through (fused op)
      assert_normwise_close(lowered.function(tf.constant(x))["outputs"].numpy(),
                            model(x).numpy(), 1e-5)
