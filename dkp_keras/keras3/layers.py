"""`DopedDense` for Keras 3: a drop-in replacement for `keras.layers.Dense`."""

from __future__ import annotations

import keras
from keras import ops

from dkp_keras import structures
from dkp_keras.keras3.doped_matrix import (DopedLayerMixin, serialize_keras_objects,
                                           set_keras_objects)

_KERAS_ARGS = ("activation", "kernel_initializer", "bias_initializer", "kernel_regularizer",
               "bias_regularizer", "kernel_constraint", "bias_constraint")


def check_units(units):
  if isinstance(units, bool) or int(units) != units or units < 1:
    raise ValueError(f"units must be a positive integer, got {units!r}")
  return int(units)


@keras.saving.register_keras_serializable(package="dkp_keras")
class DopedDense(DopedLayerMixin, keras.layers.Layer):
  """`Dense` whose kernel is a structured matrix plus a sparse doping matrix S.

  The Keras 3 twin of `dkp_keras.DopedDense`, on any backend: the same
  arguments, defaults and structures (``A ⊗ B + S`` by default,
  ``structure='lowrank'`` for ``U·V + S``, ``'hmd'`` for the hybrid matrix
  decomposition, ``doped=False`` without S), and the same variables in the
  same order, so weights move between the two with `get_weights` /
  `set_weights`. S starts dense; `dkp_keras.keras3.SparsityAnnealing` prunes it
  to the sparsity ``compression`` needs.

  Args:
    units: output size.
    compression: factor >= 1 against the dense layer's parameter count.
    structure: 'kronecker' (alias 'kp'), 'lowrank' ('lmf') or 'hmd'.
    doped: whether to add the sparse co-matrix S.
    structure_options: overrides for the structure, e.g.
      ``{'factor_shapes': ((m1, n1), (m2, n2))}``, ``{'rank': r}`` or
      ``{'dense_rows': d, 'rank': r}``.
    structure_fraction: the share of the parameter budget the structure may
      use when doped (S gets the rest).
    block_size: the pruning block of S's [in, out] kernel; (4, 1) = 4
      consecutive inputs of one output, TFLite's fast 1x4 sparse layout.
    cmr_granularity: 'row' (default), 'matrix' or 'block': what co-matrix
      dropout drops.
    cmr_scaling: 'none' or 'inverted' (see `dkp_keras.cmr`).
    precondition_factors: scale the structure's factor gradients so that plain
      SGD trains them (`dkp_keras.preconditioning`).
    seed: seed of the CMR masks (None: drawn).
    activation, use_bias, kernel_initializer, bias_initializer,
    kernel_regularizer, bias_regularizer, activity_regularizer,
    kernel_constraint, bias_constraint: as for `Dense`. The kernel
    initializer sets the scale of the structure's product.
    doping_initializer: initializer of S (default zeros).

  >>> tuple(DopedDense(64, compression=8)(keras.ops.ones((2, 32))).shape)
  (2, 64)
  """

  def __init__(self, units, compression=10.0, structure="kronecker", doped=True,
               structure_options=None, structure_fraction=0.5, block_size=(4, 1),
               activation=None, use_bias=True, kernel_initializer="glorot_uniform",
               bias_initializer="zeros", doping_initializer="zeros", kernel_regularizer=None,
               bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
               bias_constraint=None, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, seed=None, **kwargs):
    super().__init__(activity_regularizer=activity_regularizer, **kwargs)
    self.units = check_units(units)
    self._init_doping(compression, structure, doped, structure_options, structure_fraction,
                      block_size, doping_initializer, cmr_granularity, cmr_scaling,
                      precondition_factors, seed)
    self.use_bias = use_bias
    set_keras_objects(self, activation=activation, kernel_initializer=kernel_initializer,
                      bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                      bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                      bias_constraint=bias_constraint)
    self.input_spec = keras.layers.InputSpec(min_ndim=2)
    self.supports_masking = True

  def build(self, input_shape):
    input_dim = input_shape[-1]
    if input_dim is None:
      raise ValueError(f"{self.name}: the last dimension of the input must be known, got "
                       f"shape {input_shape}")
    input_dim = int(input_dim)
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
    self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

  def call(self, inputs, training=None):
    inputs = ops.cast(inputs, self.compute_dtype)
    leading = ops.shape(inputs)[:-1]
    flat = ops.reshape(inputs, (-1, self.matrix.structure.n))
    outputs = self.matrix.matmul(flat, self._doping_kernel(self.matrix, training))
    if self.bias is not None:
      outputs = outputs + self.bias
    if len(leading) != 1:
      outputs = ops.reshape(outputs, tuple(leading) + (self.units,))
    return self.activation(outputs) if self.activation is not None else outputs

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)[:-1] + (self.units,)

  def dense_kernel(self):
    """The equivalent `Dense` kernel [input_dim, units] as numpy (for checks)."""
    return self.matrix.dense_kernel()

  def get_config(self):
    config = super().get_config()
    config.update(self._doping_config())
    config.update(units=self.units, use_bias=self.use_bias)
    config.update(serialize_keras_objects(self, _KERAS_ARGS + ("activity_regularizer",)))
    return config
