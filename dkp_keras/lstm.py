"""`DKPLSTMCell` and `DKPLSTM`: drop-in replacements for `LSTMCell` and `LSTM`.

The cell owns the weights: the input matrix (4·units x input_dim) and the
recurrent matrix (4·units x units), all four gates (i, f, c, o, Keras order)
together, each a structure plus an optional doping matrix S. `DKPLSTM` is a
thin `RNN` that projects the inputs of all time steps at once, outside the
recurrence (as Keras' own LSTM does), so only the recurrent matrix runs per step.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from dkp_keras import compat
from dkp_keras.doped_layer_base import (CellArgument, DKPLSTMBase, DKPLSTMCellBase,
                                        ProjectedInputs, check_units)
from dkp_keras.doped_matrix import DopedLayerMixin


def _replica_id():
  """This replica's index under a tf.distribute strategy (0 outside one)."""
  context = tf.distribute.get_replica_context()
  replica_id = None if context is None else tf.get_static_value(
      context.replica_id_in_sync_group)
  return 0 if replica_id is None else int(replica_id)


@keras.utils.register_keras_serializable(package="dkp_keras")
class DKPLSTMCell(DopedLayerMixin, DKPLSTMCellBase, compat.DropoutRNNCellMixin,
                  compat.BaseRandomLayer):
  """`LSTMCell` whose input and recurrent matrices are structured + doped.

  Takes the `LSTMCell` arguments plus the compression arguments of
  `DopedDense`. The parameter budget of the cell (dense LSTM parameters /
  ``compression``, bias kept dense) is split between the input and recurrent
  matrices in proportion to their dense sizes.

  Args:
    units: the number of hidden units (the size of h and c).
    compression: factor >= 1 by which the whole cell (both matrices and the
      bias) is smaller than the `LSTMCell` it replaces, once S is annealed.
    structure: 'kronecker' (alias 'kp'), 'lowrank' ('lmf') or 'hmd'.
    doped: whether each matrix gets the sparse co-matrix S.
    structure_options: overrides for the structure (see `DopedDense`).
    structure_fraction: the share of each matrix's budget the structure may
      use when doped (S gets the rest).
    block_size: the tfmot block of each S's [in, out] kernel; (4, 1) = 4
      consecutive inputs of one output, TFLite's fast 1x4 sparse layout.
    activation: of the cell input and output (default tanh).
    recurrent_activation: of the gates (default sigmoid).
    use_bias: whether the cell has a bias (kept dense).
    kernel_initializer: sets the scale of the input matrix (the factors are
      scaled so the matrix starts with the RMS a dense kernel would have).
    recurrent_initializer: likewise for the recurrent matrix.
    bias_initializer: initializer of the bias.
    doping_initializer: initializer of each S (default zeros).
    unit_forget_bias: add 1 to the forget gate's bias at initialization.
    kernel_regularizer, recurrent_regularizer, bias_regularizer: regularizers
      of the input matrix's, the recurrent matrix's weights and the bias.
    kernel_constraint, recurrent_constraint, bias_constraint: constraints of
      the same.
    dropout: fraction of the inputs dropped (one mask per sequence).
    recurrent_dropout: fraction of the recurrent state dropped (likewise).
    cmr_granularity: 'row' (default), 'matrix' or 'block': what co-matrix
      dropout drops (see `dkp_keras.cmr`).
    cmr_scaling: 'none' or 'inverted' (see `dkp_keras.cmr`).
    precondition_factors: scale the structure's factor gradients so that plain
      SGD trains them (`dkp_keras.preconditioning`).
    **kwargs: base layer arguments (``name``, ``dtype``, ...).


  >>> rnn = keras.layers.RNN(DKPLSTMCell(32, compression=4))
  >>> rnn(tf.ones((2, 5, 16))).shape
  TensorShape([2, 32])
  """

  def __init__(self, units, compression=10.0, structure="kronecker", doped=True,
               structure_options=None, structure_fraction=0.5, block_size=(4, 1),
               activation="tanh", recurrent_activation="sigmoid", use_bias=True,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", doping_initializer="zeros", unit_forget_bias=True,
               kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
               kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
               dropout=0.0, recurrent_dropout=0.0, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, **kwargs):
    super().__init__(**kwargs)
    self.units = check_units(units)
    self._init_doping(compression, structure, doped, structure_options, structure_fraction,
                      block_size, doping_initializer, cmr_granularity, cmr_scaling,
                      precondition_factors)
    self.use_bias, self.unit_forget_bias = use_bias, unit_forget_bias
    self._set_keras_objects(
        activation=activation, recurrent_activation=recurrent_activation,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
        recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
        kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
        bias_constraint=bias_constraint)
    self._init_dropout(dropout, recurrent_dropout)
    self._create_operand_cache()

  @compat.no_automatic_dependency_tracking
  def _create_operand_cache(self):
    # Like Keras' dropout masks: one CMR draw per sequence, shared by all steps,
    # and the preconditioned factors formed once per sequence, not per step.
    # One cache per (matrix, replica): under MirroredStrategy the replicas trace
    # into one graph, and a replica must mask its own copy of S, or its S gets
    # no gradient.
    self._operand_caches = {}

  def _operand_cache(self, name):
    key = (name, _replica_id())
    if key not in self._operand_caches:
      matrix = self.doped_matrices[name]
      self._operand_caches[key] = compat.ContextValueCache(
          lambda training: (matrix.structure_weights(), self._doping_kernel(matrix, training)))
    return self._operand_caches[key]

  def reset_dropout_mask(self):
    super().reset_dropout_mask()
    replica = _replica_id()
    for (_, cache_replica), cache in self._operand_caches.items():
      if cache_replica == replica:
        cache.clear()

  def _matmul(self, name, x, training):
    """``x @ W(name)ᵀ`` with the operands this sequence uses, formed once per sequence.

    The operands are the structure's weights (preconditioned when asked) and S
    (CMR-masked in training). Without either there is nothing to form and the
    variables are used directly. The lookup goes through parent graphs: RNN runs
    time step 0 outside its while loop, and the loop body must reuse that draw,
    not make its own (`ContextValueCache.setdefault` alone looks at the current
    graph only).
    """
    matrix = self.doped_matrices[name]
    if matrix.doping is None and not matrix.precondition_factors:
      return matrix.matmul(x)
    cache = self._operand_cache(name)
    operands = compat.cached_value(cache)
    if operands is None:
      operands = cache.setdefault(kwargs={"training": training})
    weights, doping_kernel = operands
    return matrix.matmul(x, doping_kernel, weights)

  def build(self, input_shape):
    self._build_matrices(input_shape)
    self.built = True

  def _bias_init(self):
    if not self.unit_forget_bias:
      return self.bias_initializer

    def initializer(_, *args, **kwargs):
      # Forget-gate bias starts at 1 (Jozefowicz et al.), as in Keras' LSTMCell.
      units = self.units
      return tf.concat([self.bias_initializer((units,), *args, **kwargs),
                        tf.ones((units,), *args, **kwargs),
                        self.bias_initializer((2 * units,), *args, **kwargs)], 0)
    return initializer

  def project_inputs(self, inputs, training=None, dropout_mask=None):
    """``inputs @ input_kernel + bias`` for inputs of any rank (..., input_dim)."""
    if dropout_mask is not None:
      inputs = inputs * dropout_mask
    flat = tf.reshape(inputs, (-1, self.input_matrix.structure.n))
    z = self._matmul("input", flat, training)
    if self.bias is not None:
      z = tf.nn.bias_add(z, self.bias)
    z = tf.reshape(z, tf.concat([tf.shape(inputs)[:-1], [4 * self.units]], 0))
    # Keep the static batch size: a stateful RNN needs it.
    z.set_shape(inputs.shape[:-1].concatenate([4 * self.units]))
    return z

  def call(self, inputs, states, training=None):
    """One time step; ``inputs`` is this step's input, or its `ProjectedInputs`."""
    h_tm1, c_tm1 = states[0], states[1]
    if isinstance(inputs, ProjectedInputs):
      z = inputs.gates
    else:
      mask = self.get_dropout_mask_for_cell(inputs, training, count=1)
      z = self.project_inputs(inputs, training, mask)
    rec_mask = self.get_recurrent_dropout_mask_for_cell(h_tm1, training, count=1)
    if rec_mask is not None:
      h_tm1 = h_tm1 * rec_mask
    z = z + self._matmul("recurrent", h_tm1, training)
    h, c = self._state_update(z, c_tm1, tf)
    return h, [h, c]

  def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
    return list(compat.zero_state(self, inputs, batch_size, dtype))


@keras.utils.register_keras_serializable(package="dkp_keras")
class DKPLSTM(DKPLSTMBase, keras.layers.RNN):
  """`LSTM` with structured + doped weights (a `DKPLSTMCell` in an `RNN`).

  The input projection of all time steps runs as one batched product before
  the recurrence. Masking works as for `LSTM`; ragged inputs are not supported.

  Args:
    units: the number of hidden units.
    compression: factor >= 1 by which the layer is smaller than the `LSTM` it
      replaces (see `DKPLSTMCell`).
    return_sequences: return the output of every time step, not just the last.
    return_state: also return the last states (h, c).
    go_backwards: read the input sequence backwards.
    stateful: carry the last states of each batch into the next.
    unroll: unroll the recurrence (short sequences only).
    time_major: inputs and outputs are [time, batch, ...].
    structure, doped, structure_options, structure_fraction, block_size,
      activation, recurrent_activation, use_bias, kernel_initializer,
      recurrent_initializer, bias_initializer, doping_initializer,
      unit_forget_bias, kernel_regularizer, recurrent_regularizer,
      bias_regularizer, kernel_constraint, recurrent_constraint,
      bias_constraint, dropout, recurrent_dropout, cmr_granularity,
      cmr_scaling, precondition_factors: the `DKPLSTMCell` arguments (keyword
      only), also readable on the layer (``layer.dropout``).
    **kwargs: `RNN` / base layer arguments (``name``, ``dtype``,
      ``activity_regularizer``, ...).

  >>> x = keras.Input((None, 16))
  >>> y = DKPLSTM(32, compression=4, return_sequences=True)(x)
  >>> y.shape
  TensorShape([None, None, 32])
  """

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

  def __init__(self, units, compression=10.0, return_sequences=False, return_state=False,
               go_backwards=False, stateful=False, unroll=False, time_major=False, *,
               structure="kronecker", doped=True, structure_options=None,
               structure_fraction=0.5, block_size=(4, 1), activation="tanh",
               recurrent_activation="sigmoid", use_bias=True,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", doping_initializer="zeros", unit_forget_bias=True,
               kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
               kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
               dropout=0.0, recurrent_dropout=0.0, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, **kwargs):
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
        precondition_factors=precondition_factors, dtype=kwargs.get("dtype"),
        trainable=kwargs.get("trainable", True), name="dkplstm_cell")
    super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                     time_major=time_major, **kwargs)
    self.input_spec = [keras.layers.InputSpec(ndim=3)]

  def call(self, inputs, mask=None, training=None, initial_state=None):
    if isinstance(inputs, tf.RaggedTensor):
      raise ValueError(f"{self.name} does not support ragged inputs; pad them and pass a mask")
    cell = self.cell
    # Fresh masks for this sequence (the cached ones belong to the previous call).
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    dropout_mask = None
    if training is None:
      training = keras.backend.learning_phase()
    if cell.dropout > 0.0:
      # One mask per sequence, shared by all time steps, as LSTMCell does.
      first_step = inputs[0] if self.time_major else inputs[:, 0]
      dropout_mask = tf.expand_dims(cell.get_dropout_mask_for_cell(first_step, training),
                                    0 if self.time_major else 1)
    projected = ProjectedInputs(cell.project_inputs(inputs, training, dropout_mask))
    return super().call(projected, mask=mask, training=training, initial_state=initial_state)

  @classmethod
  def from_config(cls, config):
    return cls(**config)

