"""The Keras 3 training callbacks: `SparsityAnnealing` (owns the masks of S) and `CoMatrixDropout`.

Both work on every backend. They reach the model through ``self.model``, which
on jax first syncs the training state into the variables, so what they read is
current and what they assign is used from the next step on.
"""

from __future__ import annotations

import keras
import numpy as np

from dkp_keras import blocks
from dkp_keras import cmr
from dkp_keras.keras3.annealing import (AnnealingSchedule, annealing_window, completed_steps,
                                        doped_layers, register_schedule)
from dkp_keras.keras3.doped_matrix import find_doped_owners


class SparsityAnnealing(keras.callbacks.Callback):
  """Anneals every doped S of a Keras 3 model to its target sparsity, in its layer's blocks.

  No wrapping: the callback owns one mask per S and re-applies it before each
  training step, at the end of each epoch and of training (so S holds its
  zeros whenever the model is saved). Masks are recomputed by magnitude every
  ``frequency`` steps and at ``end_step`` along tfmot's polynomial schedule
  (`dkp_keras.keras3.annealing.AnnealingSchedule`). At the end of every epoch
  the logs get ``sparsity/<layer>`` entries. Call `finalize` after training.

  A run resumed with a new callback (same model, optimizer state restored)
  rebuilds, before its first step, the masks of its last update from S's
  magnitudes, so it trains as the uninterrupted run did.

  Args:
    begin_step, end_step: the annealing window, in training steps (batches).
    frequency: steps between mask updates.
    power: exponent of the polynomial schedule (3: tfmot's cubic decay).
    block_pooling_type: a block's score, ``"AVG"`` or ``"MAX"`` of its |values|.
    start_at_target: hold every S at its target sparsity from the first step
      (fine-tuning an S that is already sparse); the window then only paces
      `CoMatrixDropout`.
    early_block_size, block_switch_step: anneal S in ``early_block_size``
      blocks (e.g. ``(1, 1)``: entry by entry) until step ``block_switch_step``
      (within the window; a mask update), then in its layer's own blocks; both
      or neither.

  The sparsities reach the logs, so a `keras.callbacks.TensorBoard` placed
  after this callback in the list records them (the tf_keras callback's
  ``log_dir`` has no equivalent here).

  >>> model.fit(x, y, callbacks=[SparsityAnnealing(0, 1000), CoMatrixDropout()])  # doctest: +SKIP
  """

  def __init__(self, begin_step=0, end_step=1000, frequency=100, power=3,
               block_pooling_type="AVG", start_at_target=False, early_block_size=None,
               block_switch_step=None):
    super().__init__()
    self.schedule = AnnealingSchedule(begin_step, end_step, frequency, power,
                                      block_pooling_type, start_at_target,
                                      early_block_size, block_switch_step)
    self._masks = {}  # id(S variable) -> mask tensor
    self._matrices = []

  def on_train_begin(self, logs=None):
    model = self.model
    owners = find_doped_owners(model)
    if not owners:
      raise ValueError("SparsityAnnealing found no doped layer (dkp_keras.keras3 DopedDense / "
                       "DKPLSTM with doped=True) in the model")
    register_schedule(model, self.schedule)
    # (the model's layer holding S, S): sparsities are logged by the model's layer names, as
    # on the tf_keras path (an RNN's, not its cell's).
    self._matrices = [(layer.name, matrix) for layer, layer_owners in doped_layers(model)
                      for owner in layer_owners for matrix in owner.doped_matrices.values()
                      if matrix.doping is not None]

  def _update_masks(self, step):
    for _, matrix in self._matrices:
      values = matrix.doping_values()
      block_size = self.schedule.block_size_at(step, matrix.plan.block_size)
      keep = blocks.kept_block_count(
          values.shape, block_size, self.schedule.sparsity(step, matrix.plan.doping_sparsity))
      mask = blocks.top_blocks_mask(values, keep, block_size, self.schedule.block_pooling_type)
      self._masks[id(matrix.doping)] = keras.ops.convert_to_tensor(mask.astype(values.dtype))

  def _apply_masks(self):
    for _, matrix in self._matrices:
      mask = self._masks.get(id(matrix.doping))
      if mask is not None:
        matrix.doping.assign(matrix.doping.value * mask)

  def on_train_batch_begin(self, batch, logs=None):
    step = completed_steps(self.model) + 1  # this batch, counted as tfmot does
    if not self._masks and (last_update := self.schedule.last_update(step - 1)) is not None:
      # A resumed run (a new callback): the masks of its last update, as the run had them
      # (S holds their zeros, so its magnitudes give them back). Here, not in on_train_begin:
      # BackupAndRestore may restore the weights and step count after this callback's.
      self._update_masks(last_update)
    if self.schedule.updates_mask(step):
      self._update_masks(step)
    self._apply_masks()

  def on_epoch_end(self, epoch, logs=None):
    _ = self.model  # sync the training state first (jax)
    self._apply_masks()
    if logs is not None:
      zeros, sizes = {}, {}
      for name, matrix in self._matrices:
        values = matrix.doping_values()
        zeros[name] = zeros.get(name, 0) + int(np.sum(values == 0))
        sizes[name] = sizes.get(name, 0) + values.size
      logs.update({f"sparsity/{name}": zeros[name] / sizes[name] for name in zeros})

  def on_train_end(self, logs=None):
    _ = self.model
    self._apply_masks()  # after the last gradient step


class CoMatrixDropout(cmr.CoMatrixDropoutSchedule, keras.callbacks.Callback):
  """Schedules the CMR rate of every doped Keras 3 layer (see `dkp_keras.CoMatrixDropout`).

  The rate starts at ``rate`` and decays (``'linear'``, ``'cosine'`` or
  ``'constant'``) to ``final_rate`` between ``begin_step`` and ``end_step``
  (optimizer steps); with ``end_step=None`` over the window of the model's
  `SparsityAnnealing`. Logged as ``cmr_rate`` at the end of each epoch; reset
  to 0 at the end of training.

  Args:
    rate: the initial drop rate, in [0, 1).
    final_rate: the rate at the end of the window, in [0, 1).
    begin_step, end_step: the decay window (None: the annealing's).
    decay: 'linear', 'cosine' or 'constant'.
  """

  def on_train_begin(self, logs=None):
    self._owners = find_doped_owners(self.model)
    if not self._owners:
      raise ValueError("CoMatrixDropout found no doped layer in the model")

  def on_train_batch_begin(self, batch, logs=None):
    model = self.model
    # The window is read at each step: SparsityAnnealing may come later in the callback list.
    begin, end = cmr.decay_window(self.begin_step, self.end_step,
                                  annealing_window(model))
    self._current = cmr.scheduled_rate(completed_steps(model), self.rate,
                                       self.final_rate, begin, end, self.decay)
    for owner in self._owners:
      owner.cmr_rate.assign(self._current)

  def on_train_end(self, logs=None):
    _ = self.model
    for owner in self._owners:
      owner.cmr_rate.assign(0.0)
