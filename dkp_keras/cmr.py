"""Co-matrix dropout regularization (CMR): the layer-side mask and its schedule.

While S is dense, the structured part and S co-adapt (co-matrix adaptation):
the structure leans on S, and pruning S then costs accuracy. CMR drops S's
contribution at random during training so the structure must stand on its own:

- ``granularity='matrix'``: all of S is dropped for a whole forward pass
  (stochastic-depth style), with probability ``rate``;
- ``granularity='row'``: each output row of S (a column of its Keras [in, out]
  kernel) is dropped independently;
- ``granularity='block'``: each ``block_size`` block of S (the unit annealing
  prunes: 4 consecutive inputs of one output by default) is dropped
  independently, DropConnect on S.

A mask is drawn once per forward pass and shared by the batch and, in an LSTM,
by every time step (as Keras does for recurrent dropout masks).

Scaling: by default (``scaling='none'``) the kept S is *not* rescaled. CMR's
aim is a structure that works without S, and inference always uses the full
``structure + S``; inverted-dropout rescaling would train S at a magnitude of
``1/(1-rate)`` of what inference sees. The schedule decays the rate to 0 by
the end of annealing, so training and inference agree where it matters.
``scaling='inverted'`` (divide the kept S by ``1-rate``) is there for ablations.

Inference is never affected: the mask applies only when ``training`` is true.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

GRANULARITIES = ("matrix", "row", "block")
SCALINGS = ("none", "inverted")
DECAYS = ("linear", "cosine", "constant")


def check_cmr_options(granularity, scaling):
  if granularity not in GRANULARITIES:
    raise ValueError(f"unknown CMR granularity {granularity!r}; choose one of {GRANULARITIES}")
  if scaling not in SCALINGS:
    raise ValueError(f"unknown CMR scaling {scaling!r}; choose one of {SCALINGS}")


def keep_mask(rate, kernel_shape, granularity, scaling, uniform, block_size=(1, 1)):
  """A mask for S's [in, out] kernel of ``kernel_shape`` (n, m).

  Scalar for 'matrix', (1, m) for 'row', (n, m) for 'block' (constant on each
  ``block_size`` block). ``uniform(shape)`` draws U[0, 1) samples (the layer's
  random generator).
  """
  n, m = kernel_shape
  rate = tf.convert_to_tensor(rate, tf.float32)
  if granularity == "block":
    rows, cols = block_size
    keep = tf.cast(uniform((-(-n // rows), -(-m // cols))) >= rate, tf.float32)
    keep = tf.repeat(tf.repeat(keep, rows, axis=0), cols, axis=1)[:n, :m]
  else:
    keep = tf.cast(uniform(() if granularity == "matrix" else (1, m)) >= rate, tf.float32)
  if scaling == "inverted":
    keep = keep / tf.maximum(1.0 - rate, 1e-6)
  return keep


def scheduled_rate(step, rate, final_rate=0.0, begin_step=0, end_step=None, decay="linear"):
  """The CMR rate at ``step``: ``rate`` until ``begin_step``, then decays to ``final_rate``.

  >>> scheduled_rate(50, 0.5, 0.0, 0, 100)
  0.25
  """
  if decay == "constant" or end_step is None:
    return float(rate)
  if step <= begin_step:
    return float(rate)
  if step >= end_step:
    return float(final_rate)
  progress = (step - begin_step) / (end_step - begin_step)
  if decay == "cosine":
    progress = 0.5 * (1.0 - math.cos(math.pi * progress))
  return float(rate + (final_rate - rate) * progress)


class CoMatrixDropout(keras.callbacks.Callback):
  """Schedules the CMR rate of every doped layer in the model.

  The rate starts at ``rate`` and decays (``'linear'``, ``'cosine'`` or
  ``'constant'``) to ``final_rate`` between ``begin_step`` and ``end_step``
  (optimizer steps). With ``end_step=None`` it follows the sparsity annealing:
  it decays over the annealing window set by `prepare_for_annealing`, so S is
  dropped often while dense and not at all once it reaches its final sparsity.
  The current rate is logged as ``cmr_rate`` at the end of each epoch.

  >>> model.fit(x, y, callbacks=[dkp.SparsityAnnealing(), dkp.CoMatrixDropout()])
  ... # doctest: +SKIP
  """

  def __init__(self, rate=0.8, final_rate=0.0, begin_step=None, end_step=None, decay="linear"):
    super().__init__()
    for name, value in (("rate", rate), ("final_rate", final_rate)):
      if not 0.0 <= value < 1.0:
        raise ValueError(f"CoMatrixDropout {name} must be in [0, 1), got {value}")
    if decay not in DECAYS:
      raise ValueError(f"unknown CMR decay {decay!r}; choose one of {DECAYS}")
    if begin_step is not None and end_step is not None and end_step <= begin_step:
      raise ValueError(f"CoMatrixDropout end_step ({end_step}) must exceed begin_step "
                       f"({begin_step})")
    self.rate, self.final_rate, self.decay = rate, final_rate, decay
    self.begin_step, self.end_step = begin_step, end_step
    self._current = rate

  def _window(self):
    from dkp_keras import annealing  # annealing imports the layers, which import this module
    window = annealing.annealing_window(self.model)
    begin = self.begin_step if self.begin_step is not None else (window[0] if window else 0)
    end = self.end_step if self.end_step is not None else (window[1] if window else None)
    return begin, end

  def on_train_begin(self, logs=None):
    from dkp_keras import doped_matrix
    self._owners = doped_matrix.find_doped_owners(self.model)
    if not self._owners:
      raise ValueError("CoMatrixDropout found no doped layer in the model")
    self._begin, self._end = self._window()

  def on_train_batch_begin(self, batch, logs=None):
    from dkp_keras import annealing
    step = annealing.current_step(self.model)
    self._current = scheduled_rate(step, self.rate, self.final_rate, self._begin, self._end,
                                   self.decay)
    for owner in self._owners:
      owner.cmr_rate.assign(self._current)

  def on_train_end(self, logs=None):
    # Inference ignores the rate, but a model saved now should not carry it.
    for owner in self._owners:
      owner.cmr_rate.assign(0.0)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["cmr_rate"] = self._current
