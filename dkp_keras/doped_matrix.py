"""The variables of structured + doped matrices, and the mixin the DKP layers share.

`DopedMatrix` owns nothing but references to a layer's variables: the
structure's factors and the doping matrix S (Keras [in, out] layout, so tfmot's
``block_size=(4, 1)`` gives TFLite's fast 1x4 blocks). `DopedLayerMixin` holds
what `DopedDense` and `DKPLSTMCell` have in common: the compression options,
planning, CMR rate, the tfmot `PrunableLayer` contract (only S is pruned), and
the `.keras` storage that keeps an annealed S sparse.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.sparsity.keras import PrunableLayer

from dkp_keras import cmr
from dkp_keras import compat
from dkp_keras import preconditioning
from dkp_keras import sparse_storage
from dkp_keras import structures


_KERAS_OBJECTS = {
    "activation": (keras.activations.get, keras.activations.serialize),
    "initializer": (keras.initializers.get, keras.initializers.serialize),
    "regularizer": (keras.regularizers.get, keras.regularizers.serialize),
    "constraint": (keras.constraints.get, keras.constraints.serialize),
}


def set_keras_objects(layer, **arguments):
  """Sets ``layer.<name> = keras.<kind>s.get(value)``, the kind read off the name's end."""
  for name, value in arguments.items():
    setattr(layer, name, _KERAS_OBJECTS[name.rsplit("_", 1)[-1]][0](value))


def serialize_keras_objects(layer, names):
  """The config entries of attributes set with `set_keras_objects`."""
  return {name: _KERAS_OBJECTS[name.rsplit("_", 1)[-1]][1](getattr(layer, name))
          for name in names}


def _fresh(initializer):
  """A new instance of a Keras initializer: unseeded instances repeat their draws."""
  initializer = keras.initializers.get(initializer)
  return type(initializer).from_config(initializer.get_config())


def _constant(values):
  def initializer(shape, dtype=None, **unused):
    return tf.constant(values, dtype=dtype or tf.float32, shape=shape)
  return initializer


class DopedMatrix:
  """An (m x n) weight matrix ``W = structure + S`` whose variables a layer owns.

  ``matmul(x)`` computes ``x @ Wᵀ`` (Keras ``x @ kernel``) without forming the
  structure densely; `dense_kernel()` rebuilds the [n, m] kernel for checks.
  With ``precondition_factors`` the structure's factors get scaled gradients
  (`dkp_keras.preconditioning`), for plain SGD.
  """

  def __init__(self, layer, prefix, plan, initializer, doping_initializer, regularizer=None,
               constraint=None, precondition_factors=False):
    self.plan = plan
    self.precondition_factors = bool(precondition_factors)
    structure = plan.structure
    m, n = structure.m, structure.n

    def draw(shape):
      return np.asarray(_fresh(initializer)(shape), dtype=np.float64)

    # Scale the factors so W starts at the size the dense layer's initializer would give.
    target_rms = float(np.sqrt(np.mean(draw((n, m)) ** 2)))
    values = structure.initial_values(draw, target_rms)
    self.weights = {
        name: layer.add_weight(name=f"{prefix}{name}", shape=shape,
                               initializer=_constant(values[name]), regularizer=regularizer,
                               constraint=constraint)
        for name, shape in structure.weight_shapes.items()}
    self.doping = None
    if plan.doped:
      self.doping = layer.add_weight(name=f"{prefix}doping", shape=(n, m),
                                     initializer=doping_initializer, regularizer=regularizer,
                                     constraint=constraint)

  @property
  def structure(self):
    return self.plan.structure

  def structure_weights(self):
    """The structure's weights as the forward pass uses them (gradients scaled if asked)."""
    if self.precondition_factors:
      return preconditioning.precondition(self.structure, self.weights)
    return self.weights

  def matmul(self, x, doping_kernel=None, weights=None):
    """``x @ Wᵀ`` for a 2-D ``x``; ``doping_kernel`` replaces S (e.g. CMR-masked),
    ``weights`` the structure's (e.g. formed once per sequence by `structure_weights`)."""
    weights = self.structure_weights() if weights is None else weights
    y = self.structure.matmul(x, weights, ops=tf)
    if self.doping is not None:
      y = y + tf.matmul(x, self.doping if doping_kernel is None else doping_kernel)
    return y

  def structure_values(self):
    return {name: keras.backend.get_value(v) for name, v in self.weights.items()}

  def doping_values(self):
    return None if self.doping is None else keras.backend.get_value(self.doping)

  def dense_kernel(self):
    """The [n, m] Keras kernel ``(structure + S)ᵀ`` as numpy (forms W: for checks only)."""
    kernel = self.structure.dense_matrix(self.structure_values()).T
    if self.doping is not None:
      kernel = kernel + self.doping_values()
    return kernel.astype(np.float32)


class DopedLayerMixin(PrunableLayer):
  """Compression options, planning, CMR and pruning contract shared by DKP layers."""

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
    self.doping_initializer = keras.initializers.get(doping_initializer)
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
        "doping_initializer": keras.initializers.serialize(self.doping_initializer),
        "cmr_granularity": self.cmr_granularity, "cmr_scaling": self.cmr_scaling,
        "precondition_factors": self.precondition_factors}

  def _add_doped_matrix(self, prefix, m, n, max_params, initializer, regularizer, constraint):
    plan = structures.plan_doped_matrix(
        m, n, max_params, structure=self.structure, doped=self.doped,
        structure_fraction=self.structure_fraction, block_size=self.block_size,
        structure_options=self.structure_options)
    matrix = DopedMatrix(self, prefix, plan, initializer, self.doping_initializer, regularizer,
                         constraint, self.precondition_factors)
    self.doped_matrices[prefix.rstrip("_") or "kernel"] = matrix
    if self.doped and self.cmr_rate is None:
      # Not trainable, set by the CoMatrixDropout callback; 0 means no CMR.
      self.cmr_rate = self.add_weight(name="cmr_rate", shape=(), trainable=False,
                                      initializer="zeros")
    return matrix

  def _doping_kernel(self, matrix, training):
    """S as the forward pass uses it: CMR-masked in training, as is otherwise."""
    if matrix.doping is None:
      return None
    if training is None:
      training = keras.backend.learning_phase()

    def dropped():
      mask = cmr.keep_mask(self.cmr_rate, matrix.doping.shape, self.cmr_granularity,
                           self.cmr_scaling, self._uniform, self.block_size)
      return matrix.doping * mask

    return compat.smart_cond(training, dropped, lambda: matrix.doping)

  def _uniform(self, shape):
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
      # The layer's generator breaks gradients across replicas (its state update
      # synchronizes the replica threads mid-layer): plain random ops there.
      return tf.random.uniform(shape)
    return compat.random_uniform(self, shape)

  def get_prunable_weights(self):
    """The doping matrices S: the only weights sparsity annealing prunes."""
    return [m.doping for m in self.doped_matrices.values() if m.doping is not None]

  def clear_negative_zeros(self):
    """Turns every ``-0.0`` of each S into ``+0.0``, leaving all other bits as they are.

    tfmot masks S by multiplication, so a pruned entry that was negative
    becomes ``-0.0``: the same number, but one `save_own_variables` must keep
    bit for bit, at the cost of a nonzero. Call this once S is final (after
    annealing) so that the pruned entries cost nothing in a `.keras` file.
    """
    for doping in self.get_prunable_weights():
      values = keras.backend.get_value(doping)
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
    `clear_negative_zeros`. Legacy ``.h5`` files and SavedModels go through
    other paths and keep S dense.

    Args:
      store: the dict-like Keras' saving gives this layer.
    """
    doping = {id(v) for v in self.get_prunable_weights()}
    block_shapes = tuple(dict.fromkeys([(1, 1), tuple(self.block_size)]))
    variables = compat.stored_variables(self)
    sparse_storage.write_arrays(store, [v.numpy() for v in variables],
                                [block_shapes if id(v) in doping else None for v in variables])

  def load_own_variables(self, store):
    """Reads what `save_own_variables` wrote, S sparse or dense (files saved before S
    was stored sparse hold it dense), into the variables bit for bit.

    Args:
      store: the dict-like Keras' loading gives this layer.
    """
    compat.update_trackables(self)
    variables = compat.stored_variables(self)
    arrays = sparse_storage.read_arrays(store, len(variables), self.name)
    for variable, array in zip(variables, arrays):
      if array.shape != tuple(variable.shape):
        raise ValueError(f"layer '{self.name}': the file holds {variable.name} with shape "
                         f"{array.shape}, the layer has {tuple(variable.shape)}; rebuild the "
                         f"model it was saved from")
      variable.assign(array)
