"""Inference graphs of Keras models with DKP layers, ready for the TFLite converter.

A model is lowered layer by layer into one `tf.function`:
- `DopedDense` / DKP matrices: the structure as reshape / FULLY_CONNECTED /
  TRANSPOSE ops on constant factors (never the reconstructed matrix), plus S
  with the chosen sparse kernel (`sparse_matmul`);
- `DKPLSTM` (and, in step mode or once magnitude pruning left its kernels
  sparse, Keras `LSTM`): the input projection of all time steps as one
  product, then the recurrence unrolled over the fixed sequence length
  (TFLite runs an unrolled loop faster than a WHILE op); a pruned plain
  kernel is stored as a sparse S alone, with the chosen sparse kernel;
- `Bidirectional` over those LSTMs (sequence mode) and `TimeDistributed`
  `DopedDense`: their inner layers lowered the same way;
- any other layer passes through unchanged (called with ``training=False``, so
  dropout and CMR are inactive).

Modes:
- ``sequence``: inputs (batch, seq_len, ...) -> the model's outputs; LSTM
  states start at zero.
- ``step``: one time step: inputs (batch, 1, ...) plus the hidden and cell
  state of every LSTM layer as explicit inputs; outputs the model's outputs
  and the new states: what a streaming on-device app calls.

Only models that are a chain of layers (Sequential, or functional without
branches) are supported.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow as tf
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import traversal
from dkp_keras import blocks
from dkp_keras.deployed_layout import FAST_BLOCK, is_pruned
from tflite_ops import sparse_matmul
from tflite_ops.lowering_options import MODES


class UnsupportedModelError(ValueError):
  """The model (or one of its layers) cannot be lowered; the message names it."""


@dataclasses.dataclass
class LoweredMatrix:
  """One weight matrix as TFLite ops: structure factors (or a dense kernel) plus S."""
  name: str
  structure: object | None        # a dkp_keras Structure, or None for a dense kernel
  values: dict                    # numpy factors, or {"kernel": [n, m]} when dense
  doping: np.ndarray | None       # S, Keras [n, m] layout
  doping_kernel: str = "none"

  def bind(self):
    """Creates the constants in the graph being traced: once, shared by all time steps."""
    self._constants = {k: tf.constant(v) for k, v in self.values.items()}
    self._sparse = None if self.doping is None else sparse_matmul.sparse_matmul_fn(
        self.doping, self.doping_kernel)

  def __call__(self, x):
    if self.structure is not None:
      y = self.structure.matmul(x, self._constants, ops=tf)
    elif "kernel" in self._constants:
      y = tf.matmul(x, self._constants["kernel"])
    else:  # a pruned plain kernel: all of it is S
      return self._sparse(x)
    if self._sparse is not None:
      y = y + self._sparse(x)
    return y

  def component_bytes(self):
    """Float32 bytes of the structure factors (or dense kernel) before conversion."""
    return sum(v.size for v in self.values.values()) * 4


def _lower_doped_matrix(name, matrix, choose):
  values = {k: np.asarray(v, np.float32) for k, v in matrix.structure_values().items()}
  doping = matrix.doping_values()
  method = "none"
  if doping is not None:
    doping = np.asarray(doping, np.float32)
    method = choose(doping)
    if not np.any(doping):
      method = "none"
  return LoweredMatrix(name, matrix.structure, values, doping, method)


def _plain_matrix(name, kernel, choose):
  """A plain layer's kernel: dense, or, once pruned, all of it stored as a sparse S."""
  kernel = np.asarray(kernel, np.float32)
  method = choose(kernel) if is_pruned(kernel) else "dense"
  if method in ("dense", "none"):
    return LoweredMatrix(name, None, {"kernel": kernel}, None)
  return LoweredMatrix(name, None, {}, kernel, method)


def _lowered_lstm(layer):
  """Whether an LSTM layer is lowered here (else the fused TFLite op runs it)."""
  return isinstance(layer, dkp.DKPLSTM) or (isinstance(layer, keras.layers.LSTM) and
                                            _has_pruned_kernels(layer))


def _has_pruned_kernels(layer):
  """A Keras LSTM whose kernels pruning left sparse: lowered here so they are stored sparse
  (the fused TFLite LSTM op would store them dense)."""
  return any(is_pruned(k.numpy()) for k in (layer.cell.kernel, layer.cell.recurrent_kernel))


class _LoweredDense:
  """`DopedDense` at inference: flatten, lowered matmul, bias, activation."""

  def __init__(self, layer, choose):
    self.layer = layer
    self.matrix = _lower_doped_matrix(layer.name, layer.matrix, choose)
    self.bias = None if layer.bias is None else np.asarray(layer.bias.numpy(), np.float32)

  def matrices(self):
    return [self.matrix]

  def __call__(self, x, states, new_states):
    n = self.matrix.doping.shape[0] if self.matrix.doping is not None else x.shape[-1]
    y = self.matrix(tf.reshape(x, (-1, n)))
    if self.bias is not None:
      y = y + self.bias
    y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [self.layer.units]], 0))
    return self.layer.activation(y)


def _fused_doping(name, input_matrix, recurrent_matrix):
  """One S over ``[x, h]`` in place of the input and the recurrent S (both keep their
  structure): ``vstack(S_in, S_rec)``, S_in's rows padded to whole (4, 1) blocks so that
  S_rec's blocks stay aligned. None unless both have S with one kernel."""
  kernel = input_matrix.doping_kernel
  if kernel == "none" or kernel != recurrent_matrix.doping_kernel or kernel == "gather":
    return None
  if input_matrix.structure is None or recurrent_matrix.structure is None:
    return None  # a pruned plain kernel is all S: nothing left to fuse away
  doping = np.concatenate([blocks.pad_to_blocks(input_matrix.doping, FAST_BLOCK),
                           recurrent_matrix.doping])
  input_matrix.doping = recurrent_matrix.doping = None
  input_matrix.doping_kernel = recurrent_matrix.doping_kernel = "none"
  return LoweredMatrix(f"{name}/fused_doping", None, {}, doping, kernel)


class _LoweredLSTM:
  """A DKPLSTM or Keras LSTM at inference, unrolled over time, states explicit.

  With ``fuse_doping`` (step mode), the input and recurrent S of a DKPLSTM run as one
  sparse FULLY_CONNECTED over the concatenated input and state (`_fused_doping`).
  """

  def __init__(self, layer, choose, fuse_doping=False):
    cell = layer.cell
    self.layer, self.units = layer, cell.units
    if isinstance(layer, dkp.DKPLSTM):
      self.input_matrix = _lower_doped_matrix(f"{layer.name}/input", cell.input_matrix,
                                              choose)
      self.recurrent_matrix = _lower_doped_matrix(f"{layer.name}/recurrent",
                                                  cell.recurrent_matrix, choose)
    else:
      self.input_matrix = _plain_matrix(f"{layer.name}/input", cell.kernel.numpy(), choose)
      self.recurrent_matrix = _plain_matrix(f"{layer.name}/recurrent",
                                            cell.recurrent_kernel.numpy(), choose)
    self.fused = _fused_doping(layer.name, self.input_matrix, self.recurrent_matrix) if (
        fuse_doping) else None
    self.bias = None if cell.bias is None else np.asarray(cell.bias.numpy(), np.float32)
    self.activation, self.recurrent_activation = cell.activation, cell.recurrent_activation

  def matrices(self):
    return [self.input_matrix, self.recurrent_matrix] + ([self.fused] if self.fused else [])

  @property
  def state_names(self):
    return (f"{self.layer.name}_h", f"{self.layer.name}_c")

  def __call__(self, x, states, new_states):
    batch, steps, features = tf.shape(x)[0], x.shape[1], x.shape[-1]
    projected = self.input_matrix(tf.reshape(x, (-1, features)))
    if self.bias is not None:
      projected = projected + self.bias
    projected = tf.reshape(projected, (batch, steps, 4 * self.units))
    h_name, c_name = self.state_names
    if h_name in states:
      h, c = states[h_name], states[c_name]
    else:
      h = c = tf.zeros((batch, self.units))
    per_step = tf.unstack(projected, axis=1)
    inputs_per_step = tf.unstack(x, axis=1) if self.fused else per_step
    if self.layer.go_backwards:
      per_step, inputs_per_step = per_step[::-1], inputs_per_step[::-1]
    in_pad = (-features) % FAST_BLOCK[0]  # S_in's rows were padded to whole blocks
    outputs = []
    for z, x_t in zip(per_step, inputs_per_step):
      z = z + self.recurrent_matrix(h)
      if self.fused:
        z = z + self.fused(tf.concat([tf.pad(x_t, [[0, 0], [0, in_pad]]), h], axis=-1))
      z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
      c = self.recurrent_activation(z_f) * c + self.recurrent_activation(z_i) * self.activation(
          z_c)
      h = self.recurrent_activation(z_o) * self.activation(c)
      outputs.append(h)
    new_states[h_name], new_states[c_name] = h, c
    return tf.stack(outputs, axis=1) if self.layer.return_sequences else h


# How `Bidirectional` joins its two directions (its merge_mode).
_MERGES = {"concat": lambda a, b: tf.concat([a, b], axis=-1), "sum": lambda a, b: a + b,
           "mul": lambda a, b: a * b, "ave": lambda a, b: (a + b) / 2}


class _LoweredBidirectional:
  """A `Bidirectional` DKPLSTM (or pruned LSTM), sequence mode: each direction lowered,
  the backward one's outputs put back in time order and merged as Keras does."""

  def __init__(self, layer, choose):
    if layer.merge_mode not in _MERGES:
      raise UnsupportedModelError(f"layer {layer.name!r}: merge_mode={layer.merge_mode!r} "
                                  f"is not supported by the lowering ({sorted(_MERGES)} are)")
    self.layer = layer
    self.forward = _LoweredLSTM(layer.forward_layer, choose)
    self.backward = _LoweredLSTM(layer.backward_layer, choose)

  def matrices(self):
    return self.forward.matrices() + self.backward.matrices()

  def __call__(self, x, states, new_states):
    forward, backward = self.forward(x, {}, {}), self.backward(x, {}, {})
    if self.layer.return_sequences:
      backward = tf.reverse(backward, axis=[1])
    return _MERGES[self.layer.merge_mode](forward, backward)


class _PassThrough:

  def __init__(self, layer):
    self.layer = layer

  def matrices(self):
    return []

  def __call__(self, x, states, new_states):
    return self.layer(x, training=False)


def model_chain(model):
  """The model's layers in order, checking it is a chain (no branches, one input/output)."""
  try:
    return traversal.chain_layers(model, "lowered")
  except traversal.NotAChainError as error:
    raise UnsupportedModelError(str(error)) from None


def _check_layer(layer, mode):
  if mode == "step" and isinstance(layer, keras.layers.Bidirectional):
    raise UnsupportedModelError(
        f"layer {layer.name!r} is Bidirectional: its backward direction reads the sequence "
        f"from its end, so the model cannot run one time step at a time; convert it in "
        f"sequence mode (--mode sequence)")
  if getattr(layer, "mask_zero", False) or isinstance(layer, keras.layers.Masking):
    raise UnsupportedModelError(f"layer {layer.name!r} produces a mask; masking is not "
                                f"supported by the TFLite lowering")
  if isinstance(layer, keras.layers.RNN) and not isinstance(
      layer, (dkp.DKPLSTM, keras.layers.LSTM)):
    raise UnsupportedModelError(
        f"layer {layer.name!r} ({type(layer).__name__}) is not supported: only LSTM and "
        f"DKPLSTM recurrent layers can be lowered")
  if isinstance(layer, keras.layers.RNN) and (layer.return_state or layer.time_major):
    raise UnsupportedModelError(f"layer {layer.name!r}: return_state / time_major are not "
                                f"supported by the lowering")


def fixed_seq_len(model):
  """The number of time steps the model's input fixes (its dim 1), or None when it fixes none."""
  inputs = getattr(model, "inputs", None) or []
  if len(inputs) != 1 or len(inputs[0].shape) < 2:
    return None  # `lower_model` names the problem
  return inputs[0].shape[1]


@dataclasses.dataclass
class LoweredModel:
  """A model's inference graph: the tf.function, its concrete function and what was lowered.

  ``seq_len`` is the sequence length asked for (or the model's fixed one); in
  step mode, where the graph takes one step, it may be None.
  """
  function: object
  concrete: object
  mode: str
  seq_len: int
  input_names: list
  output_names: list
  state_shapes: dict
  steps: list

  def matrices(self):
    return [m for step in self.steps for m in step.matrices()]


def lower_model(model, mode="sequence", seq_len=None, batch_size=1, sparse_kernel="auto",
                csr=True, fuse_doping=False):
  """Builds the TFLite-ready inference function of ``model`` (see the module doc).

  ``seq_len`` (the time steps of sequence mode) defaults to the model's fixed
  input length; a model without one needs it (`ValueError` otherwise). A
  sequence length is the caller's choice (its data's), not the lowering's.
  ``batch_size=None`` gives a dynamic batch. ``csr=False``
  keeps ``auto`` from choosing the CSR kernel (int8 weights have none).
  ``fuse_doping`` (step mode only) runs each DKPLSTM's input and recurrent S as
  one sparse product over ``[x, h]``: one op fewer per layer and step.
  """
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
  if fuse_doping and mode != "step":
    raise ValueError("fuse_doping is for step mode: in sequence mode the input S runs once "
                     "over all time steps, which fusing would move into the recurrence")
  if sparse_kernel not in sparse_matmul.KERNELS:
    raise ValueError(f"unknown sparse kernel {sparse_kernel!r}; choose one of "
                     f"{sparse_matmul.KERNELS}")
  if sparse_kernel == "auto":
    choose = functools.partial(sparse_matmul.choose_kernel, csr=csr)
  else:
    choose = lambda doping: sparse_kernel  # noqa: E731
  layers = model_chain(model)
  steps = []
  for layer in layers:
    _check_layer(layer, mode)
    if isinstance(layer, dkp.DopedDense):
      steps.append(_LoweredDense(layer, choose))
    elif (isinstance(layer, keras.layers.LSTM) and mode == "step") or _lowered_lstm(layer):
      steps.append(_LoweredLSTM(layer, choose, fuse_doping))
    elif isinstance(layer, keras.layers.Bidirectional) and _lowered_lstm(layer.forward_layer):
      steps.append(_LoweredBidirectional(layer, choose))
    elif isinstance(layer, keras.layers.TimeDistributed) and isinstance(layer.layer,
                                                                        dkp.DopedDense):
      steps.append(_LoweredDense(layer.layer, choose))
    else:
      steps.append(_PassThrough(layer))
  lstm_steps = [s for s in steps if isinstance(s, _LoweredLSTM)]
  if mode == "step" and not lstm_steps:
    raise UnsupportedModelError("step mode needs at least one LSTM / DKPLSTM layer")

  model_input = model.inputs[0]
  if len(model_input.shape) < 2:
    raise UnsupportedModelError("the model input must be (batch, time, ...) for the lowering")
  fixed_steps = fixed_seq_len(model)
  if seq_len is None:
    seq_len = fixed_steps
  if mode == "sequence" and seq_len is None:
    raise ValueError(f"model {model.name!r} takes sequences of any length (input shape "
                     f"{tuple(model_input.shape)}): pass seq_len, the number of time steps "
                     f"the converted model takes")
  if mode == "sequence" and fixed_steps is not None and fixed_steps != seq_len:
    raise UnsupportedModelError(f"the model's input has a fixed length of {fixed_steps} "
                                f"steps; convert with seq_len={fixed_steps}")
  time_steps = 1 if mode == "step" else seq_len
  shape = [batch_size, time_steps] + model_input.shape.as_list()[2:]
  specs = [tf.TensorSpec(shape, model_input.dtype, name="inputs")]
  state_shapes = {}
  if mode == "step":
    for step in lstm_steps:
      for name in step.state_names:
        state_shapes[name] = (batch_size, step.units)
        specs.append(tf.TensorSpec((batch_size, step.units), tf.float32, name=name))
  state_names = list(state_shapes)

  matrices = [m for step in steps for m in step.matrices()]

  def run(inputs, *state_values):
    for matrix in matrices:
      matrix.bind()
    states = dict(zip(state_names, state_values))
    new_states = {}
    x = inputs
    for step in steps:
      x = step(x, states, new_states)
    outputs = {"outputs": x}
    if mode == "step":
      outputs.update({name: new_states[name] for name in state_names})
    return outputs

  function = tf.function(run, input_signature=specs, autograph=False)
  concrete = function.get_concrete_function()
  return LoweredModel(function, concrete, mode, seq_len, ["inputs"] + state_names,
                      ["outputs"] + (state_names if mode == "step" else []), state_shapes,
                      steps)
