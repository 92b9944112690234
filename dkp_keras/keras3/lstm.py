"""`DKPLSTMCell` and `DKPLSTM` for Keras 3: drop-in replacements for `LSTMCell` and `LSTM`.

The Keras 3 twins of `dkp_keras.DKPLSTMCell` / `dkp_keras.DKPLSTM`, with the
same variables in the same order: the input matrix (4·units x input_dim) and the
recurrent matrix (4·units x units), gates i, f, c, o (Keras order), each a
structure plus an optional S, then the bias. `DKPLSTM` projects the inputs of all
time steps at once, outside the recurrence, so only the recurrent matrix runs
per step. The operands of a sequence (the recurrent S CMR-masked, the factors
preconditioned) are formed once, before the loop, with Keras' dropout masks.
"""

from __future__ import annotations

import threading

import keras
from keras import ops
# Keras' own mixin: RNN draws its masks before the loop (stateless steps, as jax needs).
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from dkp_keras.doped_layer_base import (DOPING_ARGS, LSTM_CELL_ARGS, CellArgument, DKPLSTMBase,
                                        DKPLSTMCellBase, ProjectedInputs, check_units)
from dkp_keras.keras3.doped_matrix import DopedLayerMixin

@keras.saving.register_keras_serializable(package="dkp_keras")
class DKPLSTMCell(DopedLayerMixin, DKPLSTMCellBase, DropoutRNNCell, keras.layers.Layer):
  """`LSTMCell` whose input and recurrent matrices are structured + doped (Keras 3).

  Takes the `LSTMCell` arguments plus the compression arguments of
  `DopedDense` (``compression``, ``structure``, ``doped``,
  ``structure_options``, ``structure_fraction``, ``block_size``,
  ``doping_initializer``, ``cmr_granularity``, ``cmr_scaling``,
  ``precondition_factors``, ``seed``). The parameter budget of the cell (dense
  LSTM parameters / ``compression``, bias kept dense) is split between the
  input and recurrent matrices in proportion to their dense sizes.

  >>> tuple(keras.layers.RNN(DKPLSTMCell(32, compression=4))(keras.ops.ones((2, 5, 16))).shape)
  (2, 32)
  """

  def __init__(self, units, compression=10.0, structure="kronecker", doped=True,
               structure_options=None, structure_fraction=0.5, block_size=(4, 1),
               activation="tanh", recurrent_activation="sigmoid", use_bias=True,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", doping_initializer="zeros", unit_forget_bias=True,
               kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
               kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
               dropout=0.0, recurrent_dropout=0.0, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.units = check_units(units)
    self._init_doping(compression, structure, doped, structure_options, structure_fraction,
                      block_size, doping_initializer, cmr_granularity, cmr_scaling,
                      precondition_factors, seed=seed)
    self.use_bias, self.unit_forget_bias = use_bias, unit_forget_bias
    self._set_keras_objects(
        activation=activation, recurrent_activation=recurrent_activation,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint)
    self._init_dropout(dropout, recurrent_dropout)
    # This sequence's `operands`, formed before the loop: the RNN hands its steps only the
    # step's inputs and states, and the masked S must be one CMR draw for all steps, drawn
    # outside the loop (a jax scan body cannot advance a seed generator). Per thread:
    # tf.distribute's replicas trace in threads of their own.
    self._sequence = threading.local()

  @property
  def _sequence_operands(self):
    return getattr(self._sequence, "operands", None)

  def build(self, input_shape):
    self._build_matrices(input_shape)

  def _bias_init(self):
    if not self.unit_forget_bias:
      return self.bias_initializer

    def initializer(_, dtype=None):
      # Forget-gate bias starts at 1 (Jozefowicz et al.), as in Keras' LSTMCell.
      units = self.units
      return ops.concatenate([self.bias_initializer((units,), dtype=dtype),
                              ops.ones((units,), dtype=dtype),
                              self.bias_initializer((2 * units,), dtype=dtype)])
    return initializer

  def _operands(self, name, training):
    """(structure weights, S) of one matrix for this sequence: formed before the loop when
    the RNN drew its masks, else now."""
    matrix = self.doped_matrices[name]
    if self._sequence_operands is not None:
      weights, masked, plain = self._sequence_operands[name]
    else:
      weights = matrix.structure_weights()
      masked = plain = None if matrix.doping is None else matrix.doping.value
      if training:
        masked = self._doping_kernel(matrix, True)
    return weights, masked if training else plain

  def get_dropout_mask(self, step_input):
    # The RNN calls this once before its loop (and reset_dropout_mask after): the moment
    # to form this sequence's operands, one CMR draw shared by all steps.
    if self._sequence_operands is None and self.built:
      self._sequence.operands = {
          name: (matrix.structure_weights(), self._doping_kernel(matrix, True),
                 None if matrix.doping is None else matrix.doping.value)
          for name, matrix in self.doped_matrices.items()}
    return super().get_dropout_mask(step_input)

  def reset_dropout_mask(self):
    super().reset_dropout_mask()
    self._sequence.operands = None

  def _matmul(self, name, x, training):
    weights, doping = self._operands(name, training)
    return self.doped_matrices[name].matmul(x, doping, weights)

  def project_inputs(self, inputs, training=None, dropout_mask=None):
    """``inputs @ input_kernel + bias`` for inputs of any rank (..., input_dim)."""
    if dropout_mask is not None:
      inputs = inputs * dropout_mask
    leading = ops.shape(inputs)[:-1]
    flat = ops.reshape(inputs, (-1, self.input_matrix.structure.n))
    z = self._matmul("input", flat, training)
    if self.bias is not None:
      z = z + self.bias
    return ops.reshape(z, tuple(leading) + (4 * self.units,))

  def call(self, inputs, states, training=False):
    """One time step; ``inputs`` is this step's input, or its `ProjectedInputs`."""
    h_tm1, c_tm1 = states[0], states[1]
    if isinstance(inputs, ProjectedInputs):
      z = inputs.gates
    else:
      mask = self.get_dropout_mask(inputs) if training and self.dropout > 0 else None
      z = self.project_inputs(inputs, training, mask)
    if training and self.recurrent_dropout > 0:
      h_tm1 = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
    z = z + self._matmul("recurrent", h_tm1, training)
    h, c = self._state_update(z, c_tm1, ops)
    return h, [h, c]

  def get_initial_state(self, batch_size=None):
    return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]


@keras.saving.register_keras_serializable(package="dkp_keras")
class DKPLSTM(DKPLSTMBase, keras.layers.RNN):
  """`LSTM` with structured + doped weights (a `DKPLSTMCell` in an `RNN`), Keras 3.

  Keras 3 has no ``time_major``: inputs are (batch, time, features). The input
  projection of all time steps runs as one product before the loop. Masking
  works as for `LSTM`.

  Args:
    units: the number of hidden units.
    compression: factor >= 1 by which the layer is smaller than the `LSTM` it
      replaces (see `DKPLSTMCell`).
    return_sequences: return the output of every time step, not just the last.
    return_state: also return the last states (h, c).
    go_backwards: read the input sequence backwards.
    stateful: carry the last states of each batch into the next.
    unroll: unroll the recurrence (short sequences only).
    structure, doped, structure_options, structure_fraction, block_size,
      activation, recurrent_activation, use_bias, kernel_initializer,
      recurrent_initializer, bias_initializer, doping_initializer,
      unit_forget_bias, kernel_regularizer, recurrent_regularizer,
      bias_regularizer, kernel_constraint, recurrent_constraint,
      bias_constraint, dropout, recurrent_dropout, cmr_granularity,
      cmr_scaling, precondition_factors, seed: the `DKPLSTMCell` arguments
      (keyword only), also readable on the layer (``layer.dropout``).
    **kwargs: `RNN` / base layer arguments (``name``, ``dtype``,
      ``zero_output_for_mask``, ``activity_regularizer``, ...).

  >>> DKPLSTM(32, compression=4, return_sequences=True)(keras.Input((None, 16))).shape
  (None, None, 32)
  """

  cell_arguments = LSTM_CELL_ARGS + DOPING_ARGS + ("seed",)

  units = CellArgument()
  compression = CellArgument()
  structure = CellArgument()
  doped = CellArgument()
  structure_options = CellArgument()
  structure_fraction = CellArgument()
  block_size = CellArgument()
  activation = CellArgument()
  recurrent_activation = CellArgument()
  use_bias = CellArgument()
  kernel_initializer = CellArgument()
  recurrent_initializer = CellArgument()
  bias_initializer = CellArgument()
  doping_initializer = CellArgument()
  unit_forget_bias = CellArgument()
  kernel_regularizer = CellArgument()
  recurrent_regularizer = CellArgument()
  bias_regularizer = CellArgument()
  kernel_constraint = CellArgument()
  recurrent_constraint = CellArgument()
  bias_constraint = CellArgument()
  dropout = CellArgument()
  recurrent_dropout = CellArgument()
  cmr_granularity = CellArgument()
  cmr_scaling = CellArgument()
  precondition_factors = CellArgument()
  seed = CellArgument()

  def __init__(self, units, compression=10.0, return_sequences=False, return_state=False,
               go_backwards=False, stateful=False, unroll=False, *,
               structure="kronecker", doped=True, structure_options=None,
               structure_fraction=0.5, block_size=(4, 1), activation="tanh",
               recurrent_activation="sigmoid", use_bias=True,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", doping_initializer="zeros", unit_forget_bias=True,
               kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
               kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
               dropout=0.0, recurrent_dropout=0.0, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, seed=None, **kwargs):
    cell = DKPLSTMCell(
        units, compression=compression, structure=structure, doped=doped,
        structure_options=structure_options, structure_fraction=structure_fraction,
        block_size=block_size, activation=activation,
        recurrent_activation=recurrent_activation, use_bias=use_bias,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, doping_initializer=doping_initializer,
        unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout,
        cmr_granularity=cmr_granularity, cmr_scaling=cmr_scaling,
        precondition_factors=precondition_factors, seed=seed, dtype=kwargs.get("dtype"),
        trainable=kwargs.get("trainable", True), name="dkplstm_cell")
    super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, stateful=stateful, unroll=unroll, **kwargs)
    self.input_spec = keras.layers.InputSpec(ndim=3)

  def inner_loop(self, sequences, initial_state, mask, training=False):
    cell = self.cell
    # One input dropout mask per sequence (drawn by the RNN before the loop), all steps.
    dropout_mask = cell.get_dropout_mask(sequences[:, 0, :]) if training else None
    if dropout_mask is not None:
      dropout_mask = ops.expand_dims(dropout_mask, 1)
    projected = ProjectedInputs(cell.project_inputs(sequences, training, dropout_mask))
    return super().inner_loop(projected, initial_state, mask, training)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

