"""The model-level Keras callbacks of DKP training: sparsity annealing and CMR schedule.

Both act on a whole model during ``fit``: `SparsityAnnealing` advances the
annealing wrappers `prepare_for_annealing` put around the doped layers;
`CoMatrixDropout` sets the CMR rate of every doped layer (`dkp_keras.cmr`).
The example of `dkp_keras.annealing` trains with both.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity

from dkp_keras import annealing
from dkp_keras import cmr
from dkp_keras import compat
from dkp_keras import traversal


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
  in the list, TensorBoard. The weights are re-masked at the end of each epoch
  and of training, so S holds its zeros whenever the model is saved.

  Args:
    log_dir: a directory to also write the sparsities to as TensorBoard scalars.
    block_switch_step: for a model prepared with ``early_block_size``, the
      annealing step at which the wrappers switch to their layers' own blocks;
      the step is the wrappers' counter, so a resumed run switches at the same
      point.

  >>> SparsityAnnealing(block_switch_step=-1)
  Traceback (most recent call last):
  ValueError: block_switch_step must be >= 0, got -1
  """

  def __init__(self, log_dir=None, block_switch_step=None):
    super().__init__()
    if block_switch_step is not None and block_switch_step < 0:
      raise ValueError(f"block_switch_step must be >= 0, got {block_switch_step}")
    self.log_dir = log_dir
    self.block_switch_step = block_switch_step
    self._writer = None
    self._switch_pending = False
    self._wrappers = []

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._wrappers = compat.update_step_wrappers(self)
    if not self._wrappers:
      raise ValueError("SparsityAnnealing found no annealing wrappers: call "
                       "dkp.prepare_for_annealing(model, ...) before fit")
    if self.log_dir and self._writer is None:
      self._writer = tf.summary.create_file_writer(self.log_dir)
    self._switch_pending = self.block_switch_step is not None and any(
        annealing.prunes_in_early_blocks(w) for w in self._wrappers)
    if self._switch_pending:
      end_step = annealing.annealing_window(self.model)[1]
      if self.block_switch_step > end_step:
        raise ValueError(
            f"block_switch_step {self.block_switch_step} comes after the annealing ends "
            f"(step {end_step}): no mask update would put S in its layers' blocks")
    self._maybe_switch_blocks()

  def on_train_batch_begin(self, batch, logs=None):
    if self._switch_pending:
      self._maybe_switch_blocks()

  def _maybe_switch_blocks(self):
    if not self._switch_pending or annealing.current_step(self.model) < self.block_switch_step:
      return
    changed = [annealing.switch_to_final_blocks(w) for w in self._wrappers]
    self._switch_pending = False
    if any(changed):
      # The train step holds the old block size in its graph.
      self.model.train_function = self.model.make_train_function(force=True)

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, logs)
    values = {f"sparsity/{w.layer.name}": _pruned_fraction(w) for w in self._wrappers}
    if logs is not None:
      logs.update(values)
    if self._writer is not None:
      with self._writer.as_default():
        for name, value in values.items():
          tf.summary.scalar(name, value, step=epoch)
      self._writer.flush()

  def on_train_end(self, logs=None):
    super().on_epoch_end(None, logs)  # re-mask after the last gradient step


class CoMatrixDropout(cmr.CoMatrixDropoutSchedule, keras.callbacks.Callback):
  """Schedules the CMR rate of every doped layer in the model.

  The rate starts at ``rate`` and decays to ``final_rate`` between
  ``begin_step`` and ``end_step`` (optimizer steps). With ``end_step=None`` it
  follows the sparsity annealing: it decays over the annealing window set by
  `prepare_for_annealing`, so S is dropped often while dense and not at all
  once it reaches its final sparsity. The current rate is logged as
  ``cmr_rate`` at the end of each epoch; at the end of training every rate is
  reset to 0.

  Args:
    rate: the CMR rate at the start, in [0, 1).
    final_rate: the rate at ``end_step`` and after, in [0, 1).
    begin_step: where the decay starts (default: the annealing's begin_step, else 0).
    end_step: where it ends (default: the annealing's end_step, else no decay).
    decay: ``'linear'``, ``'cosine'`` or ``'constant'`` (`dkp_keras.cmr.scheduled_rate`).

  >>> CoMatrixDropout(rate=0.5, decay="cosine").rate
  0.5
  """

  def on_train_begin(self, logs=None):
    self._owners = traversal.find_doped_owners(self.model)
    if not self._owners:
      raise ValueError("CoMatrixDropout found no doped layer in the model")
    self._begin, self._end = cmr.decay_window(self.begin_step, self.end_step,
                                              annealing.annealing_window(self.model))

  def on_train_batch_begin(self, batch, logs=None):
    step = annealing.current_step(self.model)
    self._current = cmr.scheduled_rate(step, self.rate, self.final_rate, self._begin,
                                       self._end, self.decay)
    for owner in self._owners:
      owner.cmr_rate.assign(self._current)

  def on_train_end(self, logs=None):
    # Inference ignores the rate, but a model saved now should not carry it.
    for owner in self._owners:
      owner.cmr_rate.assign(0.0)
