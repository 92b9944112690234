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
The callback that sets the rate during training is `dkp_keras.callbacks.CoMatrixDropout`
(`dkp_keras.keras3.CoMatrixDropout` for Keras 3). Pure Python: the mask is drawn
with the array namespace the caller passes (``tf`` or ``keras.ops``), so both
front ends use this module.
"""

from __future__ import annotations

import math

from dkp_keras import blocks

GRANULARITIES = ("matrix", "row", "block")
SCALINGS = ("none", "inverted")
DECAYS = ("linear", "cosine", "constant")


def check_cmr_options(granularity, scaling):
  if granularity not in GRANULARITIES:
    raise ValueError(f"unknown CMR granularity {granularity!r}; choose one of {GRANULARITIES}")
  if scaling not in SCALINGS:
    raise ValueError(f"unknown CMR scaling {scaling!r}; choose one of {SCALINGS}")


class CoMatrixDropoutSchedule:
  """The arguments and logging of `CoMatrixDropout`, shared by both front ends' callbacks
  (this class comes before their Keras `Callback` in the MRO)."""

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
    self._owners = []

  def on_epoch_end(self, epoch, logs=None):  # pylint: disable=unused-argument
    if logs is not None:
      logs["cmr_rate"] = self._current


def decay_window(begin_step, end_step, annealing_window):
  """(begin, end) of the rate's decay: each step given, else the annealing's
  ``annealing_window`` (``(begin, end)`` or None), else 0 and no end (no decay).

  >>> decay_window(None, 500, (100, 1000))
  (100, 500)
  """
  begin = begin_step if begin_step is not None else (
      annealing_window[0] if annealing_window else 0)
  end = end_step if end_step is not None else (annealing_window[1] if annealing_window else None)
  return begin, end


def keep_mask(rate, kernel_shape, granularity, scaling, uniform, block_size=(1, 1), *, ops):
  """A mask for S's [in, out] kernel of ``kernel_shape`` (n, m).

  Scalar for 'matrix', (1, m) for 'row', (n, m) for 'block' (constant on each
  ``block_size`` block); 0/1, scaled by ``1/(1-rate)`` for ``scaling='inverted'``.

  Args:
    rate: the drop probability, a scalar tensor or variable.
    kernel_shape: (n, m), S's Keras kernel shape.
    granularity: 'matrix', 'row' or 'block'.
    scaling: 'none' or 'inverted'.
    uniform: ``uniform(shape)`` draws U[0, 1) samples (the layer's random generator).
    block_size: the blocks of 'block' granularity.
    ops: the array namespace of the tensors, ``tf`` or ``keras.ops``.
  """
  n, m = kernel_shape
  rate = ops.cast(rate, "float32")
  if granularity == "block":
    keep = ops.cast(uniform(blocks.grid_shape((n, m), block_size)) >= rate, "float32")
    keep = blocks.expand_blocks(keep, block_size, (n, m), ops=ops)
  else:
    keep = ops.cast(uniform(() if granularity == "matrix" else (1, m)) >= rate, "float32")
  if scaling == "inverted":
    keep = keep / ops.maximum(1.0 - rate, 1e-6)
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
