"""What the tf_keras and Keras 3 DKP layers share, free of either Keras.

`DopedMatrixBase` and `DopedLayerBase` hold the front-end-neutral half of
`DopedMatrix` and `DopedLayerMixin` (`dkp_keras.doped_matrix` for tf_keras,
`dkp_keras.keras3.doped_matrix` for Keras 3): the initial values, the options'
checks, planning, the layer config, Keras-object arguments and the `.keras`
storage that keeps an annealed S sparse. Each front end's subclass names its
Keras module (``keras``) and how to read a variable (``to_numpy``), and adds
the forward pass in its own ops. `DopedDenseBase`, `DKPLSTMCellBase` and
`DKPLSTMBase` likewise hold what the two `DopedDense`, `DKPLSTMCell` and
`DKPLSTM` share: building the matrices, the config, the LSTM state update, and
`CellArgument`, the read-only attributes through which a `DKPLSTM` shows its
cell's arguments.
"""

from __future__ import annotations

import collections

import numpy as np

from dkp_keras import cmr
from dkp_keras import sparse_storage
from dkp_keras import structures


def check_units(units):
  if isinstance(units, bool) or int(units) != units or units < 1:
    raise ValueError(f"units must be a positive integer, got {units!r}")
  return int(units)


def _keras_kind(keras, name):
  """The Keras module for argument ``name``: ``kernel_initializer`` -> ``keras.initializers``."""
  return getattr(keras, name.rsplit("_", 1)[-1] + "s")


def _fresh_initializer(keras, initializer):
  """A new instance of a Keras initializer: unseeded instances may repeat their draws."""
  initializer = keras.initializers.get(initializer)
  return type(initializer).from_config(initializer.get_config())


class DopedMatrixBase:
  """An (m x n) weight matrix ``W = structure + S`` whose variables a layer owns.

  ``matmul(x)`` (the front end's) computes ``x @ Wᵀ`` (Keras ``x @ kernel``)
  without forming the structure densely; `dense_kernel()` rebuilds the [n, m]
  kernel for checks. With ``precondition_factors`` the structure's factors get
  scaled gradients (`dkp_keras.preconditioning`), for plain SGD.
  """

  keras = None  # the front end's Keras module

  @staticmethod
  def to_numpy(variable):
    """A variable's (or tensor's) value as a numpy array."""
    raise NotImplementedError

  @staticmethod
  def constant_initializer(values):
    """A Keras initializer that gives ``values`` (numpy)."""
    raise NotImplementedError

  def __init__(self, layer, prefix, plan, initializer, doping_initializer, regularizer=None,
               constraint=None, precondition_factors=False):
    self.plan = plan
    self.precondition_factors = bool(precondition_factors)
    structure = plan.structure
    m, n = structure.m, structure.n

    def draw(shape):
      values = _fresh_initializer(self.keras, initializer)(shape)
      return np.asarray(self.to_numpy(values), dtype=np.float64)

    # Scale the factors so W starts at the size the dense layer's initializer would give.
    target_rms = float(np.sqrt(np.mean(draw((n, m)) ** 2)))
    values = structure.initial_values(draw, target_rms)
    self.weights = {
        name: layer.add_weight(name=f"{prefix}{name}", shape=shape,
                               initializer=self.constant_initializer(values[name]),
                               regularizer=regularizer, constraint=constraint)
        for name, shape in structure.weight_shapes.items()}
    self.doping = None
    if plan.doped:
      self.doping = layer.add_weight(name=f"{prefix}doping", shape=(n, m),
                                     initializer=doping_initializer, regularizer=regularizer,
                                     constraint=constraint)

  @property
  def structure(self):
    return self.plan.structure

  def structure_values(self):
    return {name: self.to_numpy(v) for name, v in self.weights.items()}

  def doping_values(self):
    return None if self.doping is None else self.to_numpy(self.doping)

  def dense_kernel(self):
    """The [n, m] Keras kernel ``(structure + S)ᵀ`` as numpy (forms W: for checks only)."""
    kernel = self.structure.dense_matrix(self.structure_values()).T
    if self.doping is not None:
      kernel = kernel + self.doping_values()
    return kernel.astype(np.float32)


class DopedLayerBase:
  """Compression options, planning, the config and S's storage shared by DKP layers.

  A front end's mixin sets ``matrix_class`` (its `DopedMatrixBase`) and
  defines ``_doping_kernel`` (S as the forward pass uses it) and
  ``_stored_variables`` (the variables in the order Keras saves them).
  """

  matrix_class = DopedMatrixBase

  def _init_doping(self, compression, structure, doped, structure_options, structure_fraction,
                   block_size, doping_initializer, cmr_granularity, cmr_scaling,
                   precondition_factors=False):
    self.compression = structures.check_compression(compression)
    structures.structure_class(structure)  # fail early on an unknown name
    self.structure = structure
    self.doped = bool(doped)
    self.structure_options = dict(structure_options or {})
    if not 0.0 < structure_fraction <= 1.0:
      raise ValueError(f"structure_fraction must be in (0, 1], got {structure_fraction}")
    self.structure_fraction = float(structure_fraction)
    self.block_size = structures.check_block_size(block_size)
    self.doping_initializer = self.matrix_class.keras.initializers.get(doping_initializer)
    cmr.check_cmr_options(cmr_granularity, cmr_scaling)
    self.cmr_granularity, self.cmr_scaling = cmr_granularity, cmr_scaling
    self.precondition_factors = bool(precondition_factors)
    self.doped_matrices = {}
    self.cmr_rate = None

  def _doping_config(self):
    return {
        "compression": self.compression, "structure": self.structure, "doped": self.doped,
        "structure_options": self.structure_options,
        "structure_fraction": self.structure_fraction, "block_size": list(self.block_size),
        "doping_initializer":
            self.matrix_class.keras.initializers.serialize(self.doping_initializer),
        "cmr_granularity": self.cmr_granularity, "cmr_scaling": self.cmr_scaling,
        "precondition_factors": self.precondition_factors}

  def _input_dim(self, input_shape, what):
    """The last dimension of ``input_shape`` (``what`` it is, for the error), which must be
    known."""
    input_dim = input_shape[-1]
    if input_dim is None:
      raise ValueError(f"{self.name}: {what} must be known, got shape {input_shape}")
    return int(input_dim)

  def _set_keras_objects(self, **arguments):
    """Sets ``self.<name> = keras.<kind>s.get(value)``, the kind read off the name's end."""
    for name, value in arguments.items():
      setattr(self, name, _keras_kind(self.matrix_class.keras, name).get(value))

  def _keras_objects_config(self, names):
    """The config entries of attributes set with `_set_keras_objects`."""
    return {name: _keras_kind(self.matrix_class.keras, name).serialize(getattr(self, name))
            for name in names}

  def _add_doped_matrix(self, prefix, m, n, max_params, initializer, regularizer, constraint):
    plan = structures.plan_doped_matrix(
        m, n, max_params, structure=self.structure, doped=self.doped,
        structure_fraction=self.structure_fraction, block_size=self.block_size,
        structure_options=self.structure_options)
    matrix = self.matrix_class(self, prefix, plan, initializer, self.doping_initializer,
                               regularizer, constraint, self.precondition_factors)
    self.doped_matrices[prefix.rstrip("_") or "kernel"] = matrix
    if self.doped and self.cmr_rate is None:
      # Not trainable, set by the CoMatrixDropout callback; 0 means no CMR.
      self.cmr_rate = self.add_weight(name="cmr_rate", shape=(), trainable=False,
                                      initializer="zeros")
    return matrix

  def get_prunable_weights(self):
    """The doping matrices S: the only weights sparsity annealing prunes."""
    return [m.doping for m in self.doped_matrices.values() if m.doping is not None]

  def clear_negative_zeros(self):
    """Turns every ``-0.0`` of each S into ``+0.0``, leaving all other bits as they are.

    Annealing masks S by multiplication, so a pruned entry that was negative
    becomes ``-0.0``: the same number, but one `save_own_variables` must keep
    bit for bit, at the cost of a nonzero. Call this once S is final (after
    annealing) so that the pruned entries cost nothing in a `.keras` file.
    """
    for doping in self.get_prunable_weights():
      values = self.matrix_class.to_numpy(doping)
      negative_zero = (values == 0) & np.signbit(values)
      if negative_zero.any():
        doping.assign(np.where(negative_zero, np.zeros((), values.dtype), values))

  def save_own_variables(self, store):
    """Writes the variables for a `.keras` / ``.weights.h5`` file, S sparse when that is smaller.

    Each S is stored in sparse blocks (`dkp_keras.sparse_storage`; single
    entries or ``block_size`` blocks, whichever is smaller) when that holds
    fewer bytes than the dense array, so an annealed S costs its kept entries
    only; every other variable, and an S not sparse enough, is stored dense as
    Keras stores it. Entries are zero only when all their bits are: a ``-0.0``
    (left by masking S by multiplication) is kept like a nonzero, see
    `clear_negative_zeros`. tf_keras' legacy ``.h5`` files and SavedModels go
    through other paths and keep S dense.

    Args:
      store: the dict-like Keras' saving gives this layer.
    """
    doping = {id(v) for v in self.get_prunable_weights()}
    block_shapes = tuple(dict.fromkeys([(1, 1), tuple(self.block_size)]))
    variables = self._stored_variables()
    sparse_storage.write_arrays(store, [self.matrix_class.to_numpy(v) for v in variables],
                                [block_shapes if id(v) in doping else None for v in variables])

  def load_own_variables(self, store):
    """Reads what `save_own_variables` wrote, S sparse or dense (files saved before S
    was stored sparse hold it dense), into the variables bit for bit.

    Args:
      store: the dict-like Keras' loading gives this layer.
    """
    variables = self._stored_variables()
    arrays = sparse_storage.read_arrays(store, len(variables), self.name)
    for variable, array in zip(variables, arrays):
      if array.shape != tuple(variable.shape):
        raise ValueError(f"layer '{self.name}': the file holds {variable.name} with shape "
                         f"{array.shape}, the layer has {tuple(variable.shape)}; rebuild the "
                         f"model it was saved from")
      variable.assign(array)


class DopedDenseBase:
  """What the two front ends' `DopedDense` share (before their Keras `Layer` in the MRO)."""

  def _build_matrix(self, input_shape):
    input_dim = self._input_dim(input_shape, "the last dimension of the input")
    bias_params = self.units if self.use_bias else 0
    budget = structures.layer_weight_budget(input_dim * self.units, bias_params,
                                            self.compression)
    self.matrix = self._add_doped_matrix("", self.units, input_dim, budget,
                                         self.kernel_initializer, self.kernel_regularizer,
                                         self.kernel_constraint)
    self.bias = None
    if self.use_bias:
      self.bias = self.add_weight(name="bias", shape=(self.units,),
                                  initializer=self.bias_initializer,
                                  regularizer=self.bias_regularizer,
                                  constraint=self.bias_constraint)
    self.input_spec = self.matrix_class.keras.layers.InputSpec(min_ndim=2,
                                                               axes={-1: input_dim})

  def dense_kernel(self):
    """The equivalent `Dense` kernel [input_dim, units] as numpy (for checks)."""
    return self.matrix.dense_kernel()

  def get_config(self):
    config = super().get_config()
    config.update(self._doping_config())
    config.update(units=self.units, use_bias=self.use_bias)
    config.update(self._keras_objects_config(DENSE_KERAS_ARGS + ("activity_regularizer",)))
    return config


DENSE_KERAS_ARGS = ("activation", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                    "bias_regularizer", "kernel_constraint", "bias_constraint")
LSTM_KERAS_ARGS = ("activation", "recurrent_activation", "kernel_initializer",
                   "recurrent_initializer", "bias_initializer", "kernel_regularizer",
                   "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
                   "recurrent_constraint", "bias_constraint")
DOPING_ARGS = ("compression", "structure", "doped", "structure_options", "structure_fraction",
               "block_size", "doping_initializer", "cmr_granularity", "cmr_scaling",
               "precondition_factors")
# The `DKPLSTMCell` arguments a `DKPLSTM` takes and shows (beside the doping arguments).
LSTM_CELL_ARGS = ("units", "use_bias", "unit_forget_bias", "dropout", "recurrent_dropout"
                  ) + LSTM_KERAS_ARGS


class ProjectedInputs(collections.namedtuple("ProjectedInputs", ["gates"])):
  """What a `DKPLSTM` hands its RNN loop instead of the raw inputs: all time steps' input
  projections (``gates``), made at once before the recurrence.

  The RNN slices it per step like any nested input; `DKPLSTMCell.call` then adds only the
  recurrent part (given a plain tensor, the cell projects it itself).
  """

  __slots__ = ()

  @property
  def shape(self):
    """The shape of ``gates``: Keras 3's `RNN.inner_loop` reads the number of time steps from
    its sequences' shape."""
    return self.gates.shape


class DKPLSTMCellBase:
  """What the two front ends' `DKPLSTMCell` share (before their Keras `Layer` in the MRO)."""

  def _init_dropout(self, dropout, recurrent_dropout):
    for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
    self.state_size = [self.units, self.units]
    self.output_size = self.units

  def _build_matrices(self, input_shape):
    """The input and recurrent matrices, the cell's budget split in proportion to their
    dense sizes, and the bias (``self._bias_init()``)."""
    input_dim = self._input_dim(input_shape, "the input feature dimension")
    gates = 4 * self.units
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

  def _state_update(self, z, c_tm1, ops):
    """(h, c) of one step from the gates' pre-activations ``z`` (i, f, c, o)."""
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    i = self.recurrent_activation(z_i)
    f = self.recurrent_activation(z_f)
    c = f * c_tm1 + i * self.activation(z_c)
    o = self.recurrent_activation(z_o)
    return o * self.activation(c), c

  def dense_kernels(self):
    """``(kernel, recurrent_kernel, bias)`` of the equivalent `LSTMCell` (numpy)."""
    bias = None if self.bias is None else self.matrix_class.to_numpy(self.bias)
    return self.input_matrix.dense_kernel(), self.recurrent_matrix.dense_kernel(), bias

  def get_config(self):
    config = super().get_config()
    config.update(self._doping_config())
    config.update(units=self.units, use_bias=self.use_bias,
                  unit_forget_bias=self.unit_forget_bias, dropout=self.dropout,
                  recurrent_dropout=self.recurrent_dropout)
    config.update(self._keras_objects_config(LSTM_KERAS_ARGS))
    return config


class DKPLSTMBase:
  """What the two front ends' `DKPLSTM` share (before their `RNN` in the MRO).

  ``cell_arguments``: the cell's arguments the layer's config holds in place of the cell.
  """

  cell_arguments = LSTM_CELL_ARGS + DOPING_ARGS

  def get_prunable_weights(self):
    return self.cell.get_prunable_weights()

  def clear_negative_zeros(self):
    """The cell's `clear_negative_zeros`: every ``-0.0`` of S becomes ``+0.0``."""
    self.cell.clear_negative_zeros()

  def get_config(self):
    config = super().get_config()
    cell_config = config.pop("cell")["config"]
    for key in self.cell_arguments:
      config[key] = cell_config[key]
    return config


class CellArgument:
  """A `DKPLSTM` attribute that reads its cell's argument of the same name (read only), as
  `LSTM`'s properties read its `LSTMCell`'s."""

  def __set_name__(self, owner, name):
    self.name = name
    self.__doc__ = f"The cell's ``{name}`` (read only)."

  def __get__(self, layer, owner=None):
    return self if layer is None else getattr(layer.cell, self.name)

  def __set__(self, layer, value):
    raise AttributeError(f"{type(layer).__name__}.{self.name} is its cell's argument and "
                         f"read only; build a new layer to change it")


def doped_owners(layers):
  """The built DKP layers or cells with doping among ``layers`` (a flattened model)."""
  return [layer for layer in layers
          if isinstance(layer, DopedLayerBase) and layer.doped and layer.cmr_rate is not None]
