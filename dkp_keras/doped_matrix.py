"""The variables of structured + doped matrices, and the mixin the DKP layers share.

`DopedMatrix` owns nothing but references to a layer's variables: the
structure's factors and the doping matrix S (Keras [in, out] layout, so tfmot's
``block_size=(4, 1)`` gives TFLite's fast 1x4 blocks). `DopedLayerMixin` holds
what `DopedDense` and `DKPLSTMCell` have in common: the compression options,
planning, CMR rate, the tfmot `PrunableLayer` contract (only S is pruned), and
the `.keras` storage that keeps an annealed S sparse. The parts free of
TensorFlow live in `dkp_keras.doped_layer_base`, shared with the Keras 3 layers.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.sparsity.keras import PrunableLayer

from dkp_keras import cmr
from dkp_keras import compat
from dkp_keras import preconditioning
from dkp_keras.doped_layer_base import DopedLayerBase, DopedMatrixBase


class DopedMatrix(DopedMatrixBase):
  """An (m x n) weight matrix ``W = structure + S`` of tf_keras variables (see
  `DopedMatrixBase`), multiplied with TensorFlow ops."""

  keras = keras

  @staticmethod
  def to_numpy(variable):
    return keras.backend.get_value(variable)

  @staticmethod
  def constant_initializer(values):
    def initializer(shape, dtype=None, **unused):
      return tf.constant(values, dtype=dtype or tf.float32, shape=shape)
    return initializer

  def structure_weights(self):
    """The structure's weights as the forward pass uses them (gradients scaled if asked)."""
    if self.precondition_factors:
      return preconditioning.precondition(self.structure, self.weights, ops=tf)
    return self.weights

  def matmul(self, x, doping_kernel=None, weights=None):
    """``x @ Wᵀ`` for a 2-D ``x``; ``doping_kernel`` replaces S (e.g. CMR-masked),
    ``weights`` the structure's (e.g. formed once per sequence by `structure_weights`)."""
    weights = self.structure_weights() if weights is None else weights
    y = self.structure.matmul(x, weights, ops=tf)
    if self.doping is not None:
      y = y + tf.matmul(x, self.doping if doping_kernel is None else doping_kernel)
    return y


class DopedLayerMixin(DopedLayerBase, PrunableLayer):
  """Compression options, planning, CMR and pruning contract shared by DKP layers."""

  matrix_class = DopedMatrix

  def _doping_kernel(self, matrix, training):
    """S as the forward pass uses it: CMR-masked in training, as is otherwise."""
    if matrix.doping is None:
      return None
    if training is None:
      training = keras.backend.learning_phase()

    def dropped():
      mask = cmr.keep_mask(self.cmr_rate, matrix.doping.shape, self.cmr_granularity,
                           self.cmr_scaling, self._uniform, self.block_size, ops=tf)
      return matrix.doping * mask

    return compat.smart_cond(training, dropped, lambda: matrix.doping)

  def _uniform(self, shape):
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
      # The layer's generator breaks gradients across replicas (its state update
      # synchronizes the replica threads mid-layer): plain random ops there.
      return tf.random.uniform(shape)
    return compat.random_uniform(self, shape)

  def _stored_variables(self):
    return compat.stored_variables(self)

  def load_own_variables(self, store):
    compat.update_trackables(self)
    super().load_own_variables(store)
