"""`DopedDense`: a drop-in replacement for `Dense` with a compressed kernel."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from dkp_keras import compat
from dkp_keras.doped_layer_base import DopedDenseBase, check_units
from dkp_keras.doped_matrix import DopedLayerMixin


@keras.utils.register_keras_serializable(package="dkp_keras")
class DopedDense(DopedLayerMixin, DopedDenseBase, compat.BaseRandomLayer):
  """`Dense` whose kernel is a structured matrix plus a sparse doping matrix S.

  The kernel ``W`` (units x input_dim) is ``A ⊗ B + S`` by default (doped
  Kronecker product); ``structure='lowrank'`` gives ``U·V + S`` and
  ``structure='hmd'`` the hybrid matrix decomposition. ``compression`` is the
  factor by which the whole layer (weights and bias) is smaller than the
  `Dense` it replaces once S is annealed to its target sparsity (see
  `prepare_for_annealing`); until then S is dense. ``doped=False`` drops S.

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
    block_size: the tfmot block of S's [in, out] kernel; (4, 1) = 4
      consecutive inputs of one output, TFLite's fast 1x4 sparse layout.
    cmr_granularity: 'row' (default), 'matrix' or 'block': what co-matrix
      dropout drops (single output rows of S, as the method's authors describe
      it; all of S; or single ``block_size`` blocks).
    cmr_scaling: 'none' or 'inverted' (see `dkp_keras.cmr`).
    precondition_factors: scale the structure's factor gradients so that plain
      SGD trains them (`dkp_keras.preconditioning`); the forward pass is the same.
    activation, use_bias, kernel_initializer, bias_initializer,
    kernel_regularizer, bias_regularizer, activity_regularizer,
    kernel_constraint, bias_constraint: as for `Dense`. The kernel
    initializer sets the scale of the structure's product (the factors are
    scaled so that W starts with the RMS the dense kernel would have).
    doping_initializer: initializer of S (default zeros).

  >>> y = DopedDense(64, compression=8)(tf.ones((2, 32)))
  >>> y.shape
  TensorShape([2, 64])
  """

  def __init__(self, units, compression=10.0, structure="kronecker", doped=True,
               structure_options=None, structure_fraction=0.5, block_size=(4, 1),
               activation=None, use_bias=True, kernel_initializer="glorot_uniform",
               bias_initializer="zeros", doping_initializer="zeros", kernel_regularizer=None,
               bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
               bias_constraint=None, cmr_granularity="row", cmr_scaling="none",
               precondition_factors=False, **kwargs):
    super().__init__(activity_regularizer=activity_regularizer, **kwargs)
    self.units = check_units(units)
    self._init_doping(compression, structure, doped, structure_options, structure_fraction,
                      block_size, doping_initializer, cmr_granularity, cmr_scaling,
                      precondition_factors)
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
    self.built = True

  def call(self, inputs, training=None):
    inputs = tf.convert_to_tensor(inputs)
    if inputs.dtype != self.compute_dtype:
      inputs = tf.cast(inputs, self.compute_dtype)
    flat = tf.reshape(inputs, (-1, self.matrix.structure.n))
    outputs = self.matrix.matmul(flat, self._doping_kernel(self.matrix, training))
    if self.bias is not None:
      outputs = tf.nn.bias_add(outputs, self.bias)
    outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
    if inputs.shape.rank is not None:
      outputs.set_shape(inputs.shape[:-1].concatenate([self.units]))
    return self.activation(outputs) if self.activation is not None else outputs

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])
