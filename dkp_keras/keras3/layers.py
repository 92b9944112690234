"""`DopedDense` for Keras 3: a drop-in replacement for `keras.layers.Dense`."""

from __future__ import annotations

import keras
from keras import ops

from dkp_keras.doped_layer_base import DopedDenseBase, check_units
from dkp_keras.keras3.doped_matrix import DopedLayerMixin


@keras.saving.register_keras_serializable(package="dkp_keras")
class DopedDense(DopedLayerMixin, DopedDenseBase, keras.layers.Layer):
  """`Dense` whose kernel is a structured matrix plus a sparse doping matrix S.

  The Keras 3 twin of `dkp_keras.DopedDense`, on any backend: the same
  arguments, defaults and structures (``A ⊗ B + S`` by default,
  ``structure='lowrank'`` for ``U·V + S``, ``'hmd'`` for the hybrid matrix
  decomposition, ``doped=False`` without S), and the same variables in the
  same order, so weights move between the two with `get_weights` /
  `set_weights`. S starts dense; `dkp_keras.keras3.SparsityAnnealing` prunes it
  to the sparsity ``compression`` needs.

  Args:
    units, compression, structure, doped, structure_options, structure_fraction,
      block_size, cmr_granularity, cmr_scaling, precondition_factors,
      doping_initializer, activation, use_bias, kernel_initializer,
      bias_initializer, kernel_regularizer, bias_regularizer,
      activity_regularizer, kernel_constraint, bias_constraint: as for
      `dkp_keras.DopedDense` (one description for both front ends).
    seed: seed of the CMR masks (None: drawn).
    **kwargs: base layer arguments (``name``, ``dtype``, ...).

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
                      precondition_factors, seed=seed)
    self.use_bias = use_bias
    self._set_keras_objects(activation=activation, kernel_initializer=kernel_initializer,
                            bias_initializer=bias_initializer,
                            kernel_regularizer=kernel_regularizer,
                            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                            bias_constraint=bias_constraint)
    self.input_spec = keras.layers.InputSpec(min_ndim=2)
    self.supports_masking = True

  def build(self, input_shape):
    self._build_matrix(input_shape)

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
