"""Sparsity annealing of the doping matrices S with tfmot magnitude pruning.

S starts dense and is pruned, in blocks, along a `PolynomialDecay` schedule to
the sparsity its layer's compression factor needs. Only S is pruned (the DKP
layers are tfmot `PrunableLayer`s returning S); every other layer is left as
it is. The default block (4, 1) on S's Keras [in, out] kernel is 4 consecutive
inputs of one output: TFLite's fast "1x4" sparse FULLY_CONNECTED layout.

>>> model = prepare_for_annealing(model, begin_step=0, end_step=1000)  # doctest: +SKIP
>>> model.fit(x, y, callbacks=[SparsityAnnealing()])                   # doctest: +SKIP
>>> model = finalize(model)                                            # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from dkp_keras.doped_matrix import DopedLayerMixin, all_layers, find_doped_owners
from dkp_keras.structures import check_block_size


def _doped_owner(layer):
  """The DKP layer or cell that owns S inside ``layer`` (an RNN's cell), or None."""
  owner = getattr(layer, "cell", layer)
  if isinstance(owner, DopedLayerMixin) and owner.doped:
    return owner
  return None


def target_sparsity(owner):
  """The final sparsity tfmot must reach for all S of one layer.

  tfmot prunes every weight of a layer to the same sparsity, rounding the kept
  block count of each; aim half a block per matrix low so the total kept never
  exceeds the blocks the plans budgeted.
  """
  plans = [m.plan for m in owner.doped_matrices.values() if m.plan.doped]
  if len(plans) == 1:
    return plans[0].doping_sparsity
  kept = pooled = 0
  for plan in plans:
    bh, bw = plan.block_size
    kept += plan.doping_max_nnz // (bh * bw)
    pooled += math.ceil(plan.structure.n / bh) * math.ceil(plan.structure.m / bw)
  return max(0.0, 1.0 - (kept - 0.5 * len(plans)) / pooled)


def prepare_for_annealing(model, begin_step=0, end_step=1000, frequency=100, power=3,
                          block_pooling_type="AVG", start_at_target=False,
                          early_block_size=None):
  """Wraps every doped DKP layer of a built model for sparsity annealing of S.

  S is pruned from dense (before ``begin_step``) to its layer's target sparsity
  (reached at ``end_step``) along tfmot's cubic `PolynomialDecay`, the mask
  updated every ``frequency`` steps, in the layer's ``block_size`` blocks, each
  scored by the mean (``block_pooling_type="AVG"``) or largest (``"MAX"``) |value|.
  Steps count training batches. Other layers are shared with ``model``, not
  copied. Train with the `SparsityAnnealing` callback, then call `finalize`.

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
    owner = _doped_owner(layer)
    if owner is None or isinstance(layer, pruning_wrapper.PruneLowMagnitude):
      return layer
    found.append(layer.name)
    target = target_sparsity(owner)
    schedule = tfmot_sparsity.PolynomialDecay(
        initial_sparsity=target if start_at_target else 0.0, final_sparsity=target,
        begin_step=begin_step,
        end_step=end_step, power=power, frequency=frequency)
    return tfmot_sparsity.prune_low_magnitude(
        layer, pruning_schedule=schedule, block_size=early_block_size or owner.block_size,
        block_pooling_type=block_pooling_type)

  annealed = keras.models.clone_model(model, clone_function=wrap)
  if not found:
    raise ValueError("prepare_for_annealing found no doped DKP layer (DopedDense / DKPLSTM "
                     "with doped=True) in the model")
  return annealed


def _wrappers(model):
  return [m for m in all_layers(model) if isinstance(m, pruning_wrapper.PruneLowMagnitude)]


def _final_block_size(wrapper):
  """The doped layer's own blocks; a plain pruned layer keeps the wrapper's."""
  owner = _doped_owner(wrapper.layer)
  return tuple(owner.block_size) if owner is not None else _pruning_block_size(wrapper)


def _pruning_block_size(wrapper):
  return tuple(wrapper.pruning_obj._block_size)  # pylint: disable=protected-access


def switch_to_final_blocks(wrapper):
  """Makes ``wrapper`` prune in its layer's own blocks from its next mask update.

  Returns whether it changed anything. tfmot reads the block size when the
  train step is traced: the caller must retrace it.
  """
  final = _final_block_size(wrapper)
  if _pruning_block_size(wrapper) == final:
    return False
  wrapper.block_size = final
  wrapper.pruning_obj._block_size = list(final)  # pylint: disable=protected-access
  return True


def annealing_window(model):
  """(begin_step, end_step) of the annealing schedules in ``model``, or None."""
  schedules = [w.pruning_schedule for w in _wrappers(model)]
  if not schedules:
    return None
  return (min(s.begin_step for s in schedules), max(s.end_step for s in schedules))


def current_step(model):
  """The annealing step (pruning wrappers' counter), else the optimizer's step."""
  wrappers = _wrappers(model)
  if wrappers:
    return int(keras.backend.get_value(wrappers[0].pruning_step))
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


def _pruned_fraction(wrapper):
  """The fraction of zeros over the weights a wrapper prunes (all S of a DKP layer, or a
  plain layer's kernels)."""
  values = [keras.backend.get_value(w) for w in wrapper.prunable_weights]
  total = sum(v.size for v in values)
  return sum(int(np.sum(v == 0)) for v in values) / total if total else 0.0


class SparsityAnnealing(tfmot_sparsity.UpdatePruningStep):
  """Advances the annealing schedule and logs each doped layer's S sparsity.

  tfmot's `UpdatePruningStep` (required by its wrappers) plus, at the end of
  every epoch, ``sparsity/<layer>`` entries in the logs: they reach the
  `History` and, when this callback comes before `keras.callbacks.TensorBoard`
  in the list, TensorBoard. With ``log_dir`` it also writes them as scalars.
  The weights are re-masked at the end of each epoch and of training, so S
  holds its zeros whenever the model is saved.

  With ``block_switch_step`` (for a model prepared with ``early_block_size``)
  the wrappers switch to their layers' own blocks at that annealing step; the
  step is the wrappers' counter, so a resumed run switches at the same point.
  """

  def __init__(self, log_dir=None, block_switch_step=None):
    super().__init__()
    if block_switch_step is not None and block_switch_step < 0:
      raise ValueError(f"block_switch_step must be >= 0, got {block_switch_step}")
    self.log_dir = log_dir
    self.block_switch_step = block_switch_step
    self._writer = None
    self._switch_pending = False

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    if not self.prunable_layers:
      raise ValueError("SparsityAnnealing found no annealing wrappers: call "
                       "dkp.prepare_for_annealing(model, ...) before fit")
    if self.log_dir and self._writer is None:
      self._writer = tf.summary.create_file_writer(self.log_dir)
    self._switch_pending = self.block_switch_step is not None and any(
        _pruning_block_size(w) != _final_block_size(w) for w in self.prunable_layers)
    if self._switch_pending:
      end_step = annealing_window(self.model)[1]
      if self.block_switch_step > end_step:
        raise ValueError(
            f"block_switch_step {self.block_switch_step} comes after the annealing ends "
            f"(step {end_step}): no mask update would put S in its layers' blocks")
    self._maybe_switch_blocks()

  def on_train_batch_begin(self, batch, logs=None):
    if self._switch_pending:
      self._maybe_switch_blocks()

  def _maybe_switch_blocks(self):
    if not self._switch_pending or current_step(self.model) < self.block_switch_step:
      return
    changed = [switch_to_final_blocks(w) for w in self.prunable_layers]
    self._switch_pending = False
    if any(changed):
      # The train step holds the old block size in its graph.
      self.model.train_function = self.model.make_train_function(force=True)

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, logs)
    values = {f"sparsity/{w.layer.name}": _pruned_fraction(w) for w in self.prunable_layers}
    if logs is not None:
      logs.update(values)
    if self._writer is not None:
      with self._writer.as_default():
        for name, value in values.items():
          tf.summary.scalar(name, value, step=epoch)
      self._writer.flush()

  def on_train_end(self, logs=None):
    super().on_epoch_end(None, logs)  # re-mask after the last gradient step


def finalize(model):
  """Strips the annealing wrappers: a plain model whose S keeps its zeros.

  Applies each wrapper's final mask before stripping (the last optimizer step
  may have moved pruned entries) and resets the CMR rates, so the result is
  ready to save or convert.
  """
  early = [w.layer.name for w in _wrappers(model)
           if _pruning_block_size(w) != _final_block_size(w)]
  if early:
    raise ValueError(
        f"the annealing of {early} still prunes in its early blocks, not the layers' own: "
        f"give SparsityAnnealing a block_switch_step within the training steps")
  for wrapper in _wrappers(model):
    wrapper.pruning_obj.weight_mask_op()
  stripped = tfmot_sparsity.strip_pruning(model)
  for owner in find_doped_owners(stripped):
    owner.cmr_rate.assign(0.0)
  return stripped
