"""Structured + doped matrices for Keras 3 layers (see `dkp_keras.doped_matrix`).

`DopedMatrix` holds references to a layer's variables, the structure's factors
and the doping matrix S in Keras [in, out] layout, and multiplies with
`keras.ops` through the same `dkp_keras.structures` code the tf_keras layers
use. `DopedLayerMixin` holds what the Keras 3 `DopedDense` and `DKPLSTMCell`
share: the compression options, planning, CMR, and the `.keras` storage that
keeps an annealed S sparse (most of it in `dkp_keras.doped_layer_base`, shared
with the tf_keras layers). Variables are created in the tf_keras layers' order,
with their names and shapes, so weights move between the two as lists.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dkp_keras import cmr
from dkp_keras import preconditioning
from dkp_keras.doped_layer_base import DopedLayerBase, DopedMatrixBase, doped_owners


def to_numpy(variable):
  """A Keras 3 variable's (or tensor's) value as a numpy array, on any backend."""
  # Through a tensor: numpy's conversion of a tf.Variable warns under numpy 2.
  return np.asarray(ops.convert_to_numpy(ops.convert_to_tensor(variable)))


class DopedMatrix(DopedMatrixBase):
  """An (m x n) weight matrix ``W = structure + S`` of Keras 3 variables (see
  `DopedMatrixBase`), multiplied with `keras.ops`."""

  keras = keras
  to_numpy = staticmethod(to_numpy)

  @staticmethod
  def constant_initializer(values):
    def initializer(shape, dtype=None):
      return ops.convert_to_tensor(np.asarray(values).reshape(shape), dtype=dtype or "float32")
    return initializer

  def structure_weights(self):
    """The structure's weights as the forward pass uses them (gradients scaled if asked)."""
    weights = {name: v.value for name, v in self.weights.items()}
    if self.precondition_factors:
      return preconditioning.precondition(self.structure, weights, ops=ops)
    return weights

  def matmul(self, x, doping_kernel=None, weights=None):
    """``x @ Wᵀ`` for a 2-D ``x``; ``doping_kernel`` replaces S (e.g. CMR-masked),
    ``weights`` the structure's (e.g. formed once per sequence)."""
    weights = self.structure_weights() if weights is None else weights
    y = self.structure.matmul(x, weights, ops=ops)
    if self.doping is not None:
      y = y + ops.matmul(x, self.doping.value if doping_kernel is None else doping_kernel)
    return y


class DopedLayerMixin(DopedLayerBase):
  """Compression options, planning, CMR and sparse storage shared by Keras 3 DKP layers.

  Beside the tf_keras layers' options: ``seed``, of the CMR masks.
  """

  matrix_class = DopedMatrix

  def _init_doping(self, *options, seed=None):
    super()._init_doping(*options)
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def _doping_config(self):
    return {**super()._doping_config(), "seed": self.seed}

  def _doping_kernel(self, matrix, training):
    """S as the forward pass uses it: CMR-masked in training, as is otherwise."""
    if matrix.doping is None:
      return None
    doping = matrix.doping.value
    if not training:
      return doping
    mask = cmr.keep_mask(self.cmr_rate.value, tuple(matrix.doping.shape), self.cmr_granularity,
                         self.cmr_scaling, self._uniform, self.block_size, ops=ops)
    return doping * ops.cast(mask, doping.dtype)

  def _uniform(self, shape):
    return keras.random.uniform(shape, seed=self.seed_generator)

  def _stored_variables(self):
    # The list and order Keras' own `save_own_variables` uses: the file's indices.
    return self._trainable_variables + self._non_trainable_variables


def all_layers(model):
  """Every layer in ``model``, nested ones included (wrapped layers, RNN cells)."""
  return list(model._flatten_layers(include_self=True, recursive=True))  # pylint: disable=protected-access


def find_doped_owners(model):
  """Every built Keras 3 DKP layer or cell with doping in ``model``."""
  return doped_owners(all_layers(model))
