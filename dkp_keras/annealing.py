"""Sparsity annealing of the doping matrices S with tfmot magnitude pruning.

S starts dense and is pruned, in blocks, along a `PolynomialDecay` schedule to
the sparsity its layer's compression factor needs. Only S is pruned (the DKP
layers are tfmot `PrunableLayer`s returning S); every other layer is left as
it is. The default block (4, 1) on S's Keras [in, out] kernel is 4 consecutive
inputs of one output: TFLite's fast "1x4" sparse FULLY_CONNECTED layout.

>>> import dkp_keras as dkp
>>> inputs = keras.Input((16,))
>>> model = keras.Model(inputs, dkp.DopedDense(16, compression=4)(inputs))
>>> model = prepare_for_annealing(model, begin_step=0, end_step=4, frequency=1)
>>> model.compile("adam", "mse")
>>> x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
>>> callbacks = [dkp.SparsityAnnealing(), dkp.CoMatrixDropout()]
>>> _ = model.fit(x, x, batch_size=2, epochs=2, verbose=0, callbacks=callbacks)
>>> model = finalize(model)
>>> bool(dkp.compression_report(model)["meets_target"].all())
True
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity

from dkp_keras import blocks
from dkp_keras import compat
from dkp_keras import doping_budget
from dkp_keras import traversal
from dkp_keras.structures import check_block_size


def target_sparsity(owners):
  """The final sparsity tfmot must reach for all S of one layer (or several, in a wrapper).

  tfmot prunes every weight of a wrapper to the same sparsity, rounding the
  kept block count of each; aim half a block per matrix low so the total kept
  never exceeds the blocks the plans budgeted.
  """
  owners = owners if isinstance(owners, (list, tuple)) else [owners]
  plans = [m.plan for owner in owners for m in owner.doped_matrices.values() if m.plan.doped]
  if len(plans) == 1:
    return plans[0].doping_sparsity
  kept = pooled = 0
  for plan in plans:
    kept += plan.doping_max_nnz // (plan.block_size[0] * plan.block_size[1])
    pooled += math.prod(blocks.grid_shape((plan.structure.n, plan.structure.m),
                                          plan.block_size))
  return max(0.0, 1.0 - (kept - 0.5 * len(plans)) / pooled)


@keras.utils.register_keras_serializable(package="dkp_keras")
class AnnealingDecay(tfmot_sparsity.PolynomialDecay):
  """tfmot's `PolynomialDecay` whose last mask update falls exactly on ``end_step``.

  tfmot updates masks only where ``(step - begin_step) % frequency == 0``: with a
  window shorter than, or not a multiple of, ``frequency`` the final sparsity
  would never be applied. This schedule also updates at ``end_step``.

  >>> schedule = AnnealingDecay(0.0, 0.9, begin_step=0, end_step=150, frequency=100)
  >>> [bool(schedule(step)[0]) for step in (100, 149, 150)]
  [True, False, True]
  """

  def __call__(self, step):
    should_prune, sparsity = super().__call__(step)
    return tf.math.logical_or(should_prune, tf.math.equal(step, self.end_step)), sparsity

  def get_config(self):
    # tfmot's wrapper deserializes the schedule by this name (a registered object).
    return {**super().get_config(), "class_name": keras.utils.get_registered_name(type(self))}


def _doped_owners(layer):
  """The doped DKP layers or cells a layer holds: itself, an RNN's cell, or those inside a
  Keras wrapper (`Bidirectional`, `TimeDistributed`), which are annealed as one.

  Raises:
    ValueError: for doped layers inside a nested model, or a wrapper whose doped
      layers prune in different blocks (one tfmot wrapper has one block size).
  """
  owners = traversal.find_doped_owners(layer)
  if not owners:
    return owners
  if isinstance(layer, keras.Model):
    raise ValueError(f"prepare_for_annealing does not reach into the nested model "
                     f"{layer.name!r}: call it on a flat model")
  sizes = {tuple(owner.block_size) for owner in owners}
  if len(sizes) > 1:
    raise ValueError(f"the doped layers inside {layer.name!r} use different block sizes "
                     f"{sorted(sizes)}: give them one block_size")
  return owners


def _give_prunable_weights(layer, owners):
  """Lets tfmot wrap a Keras wrapper layer: its prunable weights are its cells' S.

  tfmot itself sets ``get_prunable_weights`` on the instances it supports
  (its `PruneRegistry.make_prunable`); it has no entry for `Bidirectional`.
  """
  if not hasattr(layer, "get_prunable_weights"):
    layer.get_prunable_weights = lambda: [w for owner in owners
                                          for w in owner.get_prunable_weights()]


def prepare_for_annealing(model, begin_step=0, end_step=1000, frequency=100, power=3,
                          block_pooling_type="AVG", start_at_target=False,
                          early_block_size=None):
  """Wraps every doped DKP layer of a built model for sparsity annealing of S.

  S is pruned from dense (before ``begin_step``) to its layer's target sparsity
  (reached at ``end_step``) along tfmot's cubic `PolynomialDecay`, the mask
  updated every ``frequency`` steps, in the layer's ``block_size`` blocks, each
  scored by the mean (``block_pooling_type="AVG"``) or largest (``"MAX"``) |value|.
  Steps count training batches. Other layers are shared with ``model``, not
  copied. Train with the `SparsityAnnealing` callback
  (`dkp_keras.callbacks`), then call `finalize`.

  ``start_at_target=True`` holds every S at its target sparsity from the
  first step (fine-tuning an S that is already sparse, as `pipelines.compress`
  does); the window then only paces `CoMatrixDropout`.

  ``early_block_size`` (e.g. ``(1, 1)``) prunes S in those blocks instead until
  `SparsityAnnealing` (``block_switch_step``) switches every wrapper to its
  layer's own blocks: S picks its entries freely while it anneals and ends in
  the deployable layout. The kept count is the same, so the budget holds.

  Returns:
    A new model (same layers) whose doped layers are tfmot pruning wrappers.
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"prepare_for_annealing expects a tf_keras Model, got {type(model)}")
  if not model.built:
    raise ValueError("prepare_for_annealing needs a built model: call it on data or give "
                     "the first layer an input shape")
  if not 0 <= begin_step < end_step:
    raise ValueError(f"need 0 <= begin_step < end_step, got {begin_step} and {end_step}")
  if frequency < 1:
    raise ValueError(f"frequency must be >= 1, got {frequency}")
  if block_pooling_type not in ("AVG", "MAX"):
    raise ValueError(f"block_pooling_type must be 'AVG' or 'MAX', got {block_pooling_type!r}")
  if early_block_size is not None:
    early_block_size = check_block_size(early_block_size)
  found = []

  def wrap(layer):
    owners = _doped_owners(layer)
    if not owners or isinstance(layer, compat.PruneLowMagnitude):
      return layer
    found.append(layer.name)
    target = target_sparsity(owners)
    schedule = AnnealingDecay(
        initial_sparsity=target if start_at_target else 0.0, final_sparsity=target,
        begin_step=begin_step, end_step=end_step, power=power, frequency=frequency)
    _give_prunable_weights(layer, owners)
    return tfmot_sparsity.prune_low_magnitude(
        layer, pruning_schedule=schedule, block_size=early_block_size or owners[0].block_size,
        block_pooling_type=block_pooling_type)

  annealed = keras.models.clone_model(model, clone_function=wrap)
  if not found:
    raise ValueError("prepare_for_annealing found no doped DKP layer (DopedDense / DKPLSTM "
                     "with doped=True) in the model")
  return annealed


def final_block_size(wrapper):
  """The doped layer's own blocks; a plain pruned layer keeps the wrapper's."""
  owners = _doped_owners(wrapper.layer)
  return tuple(owners[0].block_size) if owners else compat.pruning_block_size(wrapper)


def prunes_in_early_blocks(wrapper):
  """Whether ``wrapper`` still prunes in blocks other than its layer's own
  (``early_block_size``), waiting for `switch_to_final_blocks`."""
  return compat.pruning_block_size(wrapper) != final_block_size(wrapper)


def switch_to_final_blocks(wrapper):
  """Makes ``wrapper`` prune in its layer's own blocks from its next mask update.

  Returns whether it changed anything. tfmot reads the block size when the
  train step is traced: the caller must retrace it.
  """
  final = final_block_size(wrapper)
  if compat.pruning_block_size(wrapper) == final:
    return False
  compat.set_pruning_block_size(wrapper, final)
  return True


def annealing_window(model):
  """(begin_step, end_step) of the annealing schedules in ``model``, or None."""
  schedules = [w.pruning_schedule for w in traversal.pruning_wrappers(model)]
  if not schedules:
    return None
  return (min(s.begin_step for s in schedules), max(s.end_step for s in schedules))


def current_step(model):
  """The annealing step (pruning wrappers' counter), else the optimizer's step."""
  wrappers = traversal.pruning_wrappers(model)
  if wrappers:
    return compat.pruning_step(wrappers[0])
  return int(keras.backend.get_value(model.optimizer.iterations))


def doping_sparsity(owner):
  """The fraction of zeros over all S of one DKP layer or cell."""
  zeros = total = 0
  for matrix in owner.doped_matrices.values():
    if matrix.doping is not None:
      values = matrix.doping_values()
      zeros += int(np.sum(values == 0))
      total += values.size
  return zeros / total if total else 0.0


def finalize(model, on_missed_target="prune"):
  """Strips the annealing wrappers: a plain model whose S keeps its zeros.

  Applies each wrapper's final mask before stripping (the last optimizer step
  may have moved pruned entries) and resets the CMR rates, so the result is
  ready to save or convert. Then checks every doped layer against its target:
  an S denser than its layer's compression allows (training stopped before
  the annealing's ``end_step``, or a model never annealed) is never returned
  silently.

  Args:
    model: a tf_keras model, annealed with `prepare_for_annealing` or not.
    on_missed_target: ``"prune"`` (default) brings such an S to its target by
      magnitude, in its layer's blocks, and warns naming the layers and the
      density they had reached; ``"raise"`` raises a ValueError instead.

  Returns:
    The stripped model (same layers), every S within its budget.
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"finalize expects a tf_keras Model (the one prepare_for_annealing "
                     f"returned), got {type(model).__name__}")
  doping_budget.check_missed_target_action(on_missed_target)
  early = [w.layer.name for w in traversal.pruning_wrappers(model)
           if prunes_in_early_blocks(w)]
  if early:
    raise ValueError(
        f"the annealing of {early} still prunes in its early blocks, not the layers' own: "
        f"give SparsityAnnealing a block_switch_step within the training steps")
  pooling = {w.layer.name: w.block_pooling_type for w in traversal.pruning_wrappers(model)}
  for wrapper in traversal.pruning_wrappers(model):
    compat.apply_pruning_masks(wrapper)
  stripped = tfmot_sparsity.strip_pruning(model)
  doping_budget.enforce_budgets(traversal.doped_layers(stripped), on_missed_target,
                                lambda name: pooling.get(name, "AVG"))
  for owner in traversal.find_doped_owners(stripped):
    owner.cmr_rate.assign(0.0)
    # Masking by multiplication leaves -0.0 where S was negative: it would be stored.
    owner.clear_negative_zeros()
  return stripped

