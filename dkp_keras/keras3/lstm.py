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

from dkp_keras import structures
from dkp_keras.keras3.doped_matrix import (DopedLayerMixin, serialize_keras_objects,
                                           set_keras_objects, to_numpy)
from dkp_keras.keras3.layers import check_units

_KERAS_ARGS = ("activation", "recurrent_activation", "kernel_initializer",
               "recurrent_initializer", "bias_initializer", "kernel_regularizer",
               "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
               "recurrent_constraint", "bias_constraint")
_DOPING_ARGS = ("compression", "structure", "doped", "structure_options", "structure_fraction",
                "block_size", "doping_initializer", "cmr_granularity", "cmr_scaling",
                "precondition_factors", "seed")


@keras.saving.register_keras_serializable(package="dkp_keras")
class DKPLSTMCell(DopedLayerMixin, DropoutRNNCell, keras.layers.Layer):
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
                      precondition_factors, seed)
    self.use_bias, self.unit_forget_bias = use_bias, unit_forget_bias
    set_keras_objects(
        self, activation=activation, recurrent_activation=recurrent_activation,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint)
    for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
    self.state_size = [self.units, self.units]
    self.output_size = self.units
    # Per thread, untracked: `projected` (set by DKPLSTM while its loop runs: inputs arrive
    # already projected) and `operands` (this sequence's, formed before the loop).
    self._sequence = threading.local()

  @property
  def _inputs_projected(self):
    return getattr(self._sequence, "projected", False)

  @property
  def _sequence_operands(self):
    return getattr(self._sequence, "operands", None)

  def build(self, input_shape):
    input_dim = input_shape[-1]
    if input_dim is None:
      raise ValueError(f"{self.name}: the input feature dimension must be known, got "
                       f"shape {input_shape}")
    input_dim, gates = int(input_dim), 4 * self.units
    bias_params = gates if self.use_bias else 0
    budget = structures.layer_weight_budget(gates * (input_dim + self.units), bias_params,
                                            self.compression)
    share = input_dim / (input_dim + self.units)
    self.input_matrix = self._add_doped_matrix(
        "input_", gates, input_dim, budget * share, self.kernel_initializer,
        self.kernel_regularizer, self.kernel_constraint)
    self.recurrent_matrix = self._add_doped_matrix(
        "recurrent_", gates, self.units, budget * (1.0 - share), self.recurrent_initializer,
        self.recurrent_regularizer, self.recurrent_constraint)
    self.bias = None
    if self.use_bias:
      self.bias = self.add_weight(name="bias", shape=(gates,), initializer=self._bias_init(),
                                  regularizer=self.bias_regularizer,
                                  constraint=self.bias_constraint)

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
    h_tm1, c_tm1 = states[0], states[1]
    if self._inputs_projected:
      z = inputs
    else:
      mask = self.get_dropout_mask(inputs) if training and self.dropout > 0 else None
      z = self.project_inputs(inputs, training, mask)
    if training and self.recurrent_dropout > 0:
      h_tm1 = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
    z = z + self._matmul("recurrent", h_tm1, training)
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    i = self.recurrent_activation(z_i)
    f = self.recurrent_activation(z_f)
    c = f * c_tm1 + i * self.activation(z_c)
    o = self.recurrent_activation(z_o)
    h = o * self.activation(c)
    return h, [h, c]

  def get_initial_state(self, batch_size=None):
    return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]

  def dense_kernels(self):
    """``(kernel, recurrent_kernel, bias)`` of the equivalent `LSTMCell` (numpy)."""
    bias = None if self.bias is None else to_numpy(self.bias)
    return self.input_matrix.dense_kernel(), self.recurrent_matrix.dense_kernel(), bias

  def get_config(self):
    config = super().get_config()
    config.update(self._doping_config())
    config.update(units=self.units, use_bias=self.use_bias,
                  unit_forget_bias=self.unit_forget_bias, dropout=self.dropout,
                  recurrent_dropout=self.recurrent_dropout)
    config.update(serialize_keras_objects(self, _KERAS_ARGS))
    return config


_CELL_ARGS = ("units", "use_bias", "unit_forget_bias", "dropout", "recurrent_dropout"
              ) + _KERAS_ARGS + _DOPING_ARGS


@keras.saving.register_keras_serializable(package="dkp_keras")
class DKPLSTM(keras.layers.RNN):
  """`LSTM` with structured + doped weights (a `DKPLSTMCell` in an `RNN`), Keras 3.

  Takes the Keras 3 `LSTM` arguments (``return_sequences``, ``return_state``,
  ``go_backwards``, ``stateful``, ``unroll``, ``zero_output_for_mask``,
  ``dropout``, ``recurrent_dropout``, masking) and the compression arguments of
  `DopedDense`. Keras 3 has no ``time_major``: inputs are (batch, time, features).
  The input projection of all time steps runs as one product before the loop.

  >>> DKPLSTM(32, compression=4, return_sequences=True)(keras.Input((None, 16))).shape
  (None, None, 32)
  """

  def __init__(self, units, compression=10.0, return_sequences=False, return_state=False,
               go_backwards=False, stateful=False, unroll=False, **kwargs):
    cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _CELL_ARGS}
    cell = DKPLSTMCell(units, compression=compression, dtype=kwargs.get("dtype"),
                       trainable=kwargs.get("trainable", True), name="dkplstm_cell",
                       **cell_kwargs)
    super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, stateful=stateful, unroll=unroll, **kwargs)
    self.input_spec = keras.layers.InputSpec(ndim=3)

  def inner_loop(self, sequences, initial_state, mask, training=False):
    cell = self.cell
    # One input dropout mask per sequence (drawn by the RNN before the loop), all steps.
    dropout_mask = cell.get_dropout_mask(sequences[:, 0, :]) if training else None
    if dropout_mask is not None:
      dropout_mask = ops.expand_dims(dropout_mask, 1)
    projected = cell.project_inputs(sequences, training, dropout_mask)
    cell._sequence.projected = True  # pylint: disable=protected-access
    try:
      return super().inner_loop(projected, initial_state, mask, training)
    finally:
      cell._sequence.projected = False  # pylint: disable=protected-access

  def get_prunable_weights(self):
    return self.cell.get_prunable_weights()

  def clear_negative_zeros(self):
    """The cell's `clear_negative_zeros`: every ``-0.0`` of S becomes ``+0.0``."""
    self.cell.clear_negative_zeros()

  def get_config(self):
    config = super().get_config()
    cell_config = config.pop("cell")["config"]
    for key in _CELL_ARGS:
      config[key] = cell_config[key]
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


# Expose the cell's arguments (units, compression, dropout...) on the layer, as LSTM does.
for _name in _CELL_ARGS:
  setattr(DKPLSTM, _name, property(lambda self, _name=_name: getattr(self.cell, _name)))
