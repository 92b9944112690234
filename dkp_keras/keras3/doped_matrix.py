"""Structured + doped matrices for Keras 3 layers (see `dkp_keras.doped_matrix`).

`DopedMatrix` holds references to a layer's variables, the structure's factors
and the doping matrix S in Keras [in, out] layout, and multiplies with
`keras.ops` through the same `dkp_keras.structures` code the tf_keras layers
use. `DopedLayerMixin` holds what the Keras 3 `DopedDense` and `DKPLSTMCell`
share: the compression options, planning, CMR, and the `.keras` storage that
keeps an annealed S sparse. Variables are created in the tf_keras layers'
order, with their names and shapes, so weights move between the two as lists.
"""

from __future__ import annotations

import types

import keras
import numpy as np
from keras import ops

from dkp_keras import sparse_storage
from dkp_keras import structures
from dkp_keras.keras3 import cmr
from dkp_keras.keras3 import preconditioning
from dkp_keras.keras3.pure_copies import check_cmr_options

# The array namespace `dkp_keras.structures` multiplies with (it calls `concat`).
KERAS_OPS = types.SimpleNamespace(matmul=ops.matmul, reshape=ops.reshape,
                                  transpose=ops.transpose, pad=ops.pad,
                                  concat=ops.concatenate)

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


def to_numpy(variable):
  """A Keras 3 variable's (or tensor's) value as a numpy array, on any backend."""
  # Through a tensor: numpy's conversion of a tf.Variable warns under numpy 2.
  return np.asarray(ops.convert_to_numpy(ops.convert_to_tensor(variable)))


def _fresh(initializer):
  """A new instance of a Keras initializer: unseeded instances may repeat their draws."""
  initializer = keras.initializers.get(initializer)
  return type(initializer).from_config(initializer.get_config())


def _constant(values):
  def initializer(shape, dtype=None):
    return ops.convert_to_tensor(np.asarray(values).reshape(shape), dtype=dtype or "float32")
  return initializer


class DopedMatrix:
  """An (m x n) weight matrix ``W = structure + S`` whose variables a layer owns.

  ``matmul(x)`` computes ``x @ Wᵀ`` (Keras ``x @ kernel``) without forming the
  structure densely; `dense_kernel()` rebuilds the [n, m] kernel for checks.
  """

  def __init__(self, layer, prefix, plan, initializer, doping_initializer, regularizer=None,
               constraint=None, precondition_factors=False):
    self.plan = plan
    self.precondition_factors = bool(precondition_factors)
    structure = plan.structure
    m, n = structure.m, structure.n

    def draw(shape):
      return np.asarray(ops.convert_to_numpy(_fresh(initializer)(shape)), dtype=np.float64)

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
    weights = {name: v.value for name, v in self.weights.items()}
    if self.precondition_factors:
      return preconditioning.precondition(self.structure, weights)
    return weights

  def matmul(self, x, doping_kernel=None, weights=None):
    """``x @ Wᵀ`` for a 2-D ``x``; ``doping_kernel`` replaces S (e.g. CMR-masked),
    ``weights`` the structure's (e.g. formed once per sequence)."""
    weights = self.structure_weights() if weights is None else weights
    y = self.structure.matmul(x, weights, ops=KERAS_OPS)
    if self.doping is not None:
      y = y + ops.matmul(x, self.doping.value if doping_kernel is None else doping_kernel)
    return y

  def structure_values(self):
    return {name: to_numpy(v) for name, v in self.weights.items()}

  def doping_values(self):
    return None if self.doping is None else to_numpy(self.doping)

  def dense_kernel(self):
    """The [n, m] Keras kernel ``(structure + S)ᵀ`` as numpy (forms W: for checks only)."""
    kernel = self.structure.dense_matrix(self.structure_values()).T
    if self.doping is not None:
      kernel = kernel + self.doping_values()
    return kernel.astype(np.float32)


class DopedLayerMixin:
  """Compression options, planning, CMR and sparse storage shared by Keras 3 DKP layers."""

  def _init_doping(self, compression, structure, doped, structure_options, structure_fraction,
                   block_size, doping_initializer, cmr_granularity, cmr_scaling,
                   precondition_factors, seed):
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
    check_cmr_options(cmr_granularity, cmr_scaling)
    self.cmr_granularity, self.cmr_scaling = cmr_granularity, cmr_scaling
    self.precondition_factors = bool(precondition_factors)
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)
    self.doped_matrices = {}
    self.cmr_rate = None

  def _doping_config(self):
    return {
        "compression": self.compression, "structure": self.structure, "doped": self.doped,
        "structure_options": self.structure_options,
        "structure_fraction": self.structure_fraction, "block_size": list(self.block_size),
        "doping_initializer": keras.initializers.serialize(self.doping_initializer),
        "cmr_granularity": self.cmr_granularity, "cmr_scaling": self.cmr_scaling,
        "precondition_factors": self.precondition_factors, "seed": self.seed}

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
    doping = matrix.doping.value
    if not training:
      return doping
    mask = cmr.keep_mask(self.cmr_rate.value, tuple(matrix.doping.shape), self.cmr_granularity,
                         self.cmr_scaling, self.seed_generator, self.block_size)
    return doping * ops.cast(mask, doping.dtype)

  def get_prunable_weights(self):
    """The doping matrices S: the only weights sparsity annealing prunes."""
    return [m.doping for m in self.doped_matrices.values() if m.doping is not None]

  def clear_negative_zeros(self):
    """Turns every ``-0.0`` of each S into ``+0.0`` (see the tf_keras layers' method)."""
    for doping in self.get_prunable_weights():
      values = to_numpy(doping)
      negative_zero = (values == 0) & np.signbit(values)
      if negative_zero.any():
        doping.assign(np.where(negative_zero, np.zeros((), values.dtype), values))

  def _stored_variables(self):
    # The list and order Keras' own `save_own_variables` uses: the file's indices.
    return self._trainable_variables + self._non_trainable_variables

  def save_own_variables(self, store):
    """Writes the variables for a `.keras` / ``.weights.h5`` file, S sparse when smaller.

    As the tf_keras layers do (`dkp_keras.sparse_storage`): each S in sparse
    blocks when that holds fewer bytes, every other variable dense.

    Args:
      store: the dict-like Keras' saving gives this layer.
    """
    doping = {id(v) for v in self.get_prunable_weights()}
    block_shapes = tuple(dict.fromkeys([(1, 1), tuple(self.block_size)]))
    variables = self._stored_variables()
    sparse_storage.write_arrays(store, [to_numpy(v) for v in variables],
                                [block_shapes if id(v) in doping else None for v in variables])

  def load_own_variables(self, store):
    """Reads what `save_own_variables` wrote, S sparse or dense, bit for bit.

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


def all_layers(model):
  """Every layer in ``model``, nested ones included (wrapped layers, RNN cells)."""
  return list(model._flatten_layers(include_self=True, recursive=True))  # pylint: disable=protected-access


def find_doped_owners(model):
  """Every built Keras 3 DKP layer or cell with doping in ``model``."""
  return [layer for layer in all_layers(model)
          if isinstance(layer, DopedLayerMixin) and layer.doped and layer.cmr_rate is not None]
