"""Sparsity annealing of the doping matrices S for Keras 3 models, without tfmot.

The schedule is tfmot's `PolynomialDecay` (S dense until ``begin_step``, then
``final + (initial - final)(1 - progress)^power`` up to ``end_step``) with the
mask updated every ``frequency`` steps and always at ``end_step``, as
`dkp_keras.annealing.AnnealingDecay` does. Each S has its own mask: its
highest-scored ``block_size`` blocks (mean or largest |value|), as many as the
scheduled sparsity keeps; at ``end_step`` that is the block count its plan
budgets. With ``early_block_size`` (e.g. ``(1, 1)``) the masks are computed in
those blocks until ``block_switch_step`` (a mask update), then in the layers'
own, as `dkp_keras.prepare_for_annealing`'s option of that name does. Steps
count training batches as tfmot does: the n-th batch trained
(the optimizer's ``iterations`` + 1) is step n. `SparsityAnnealing`
(`dkp_keras.keras3.callbacks`) owns the masks; `finalize` checks the result.

>>> model.fit(x, y, callbacks=[SparsityAnnealing(begin_step=0, end_step=1000)])  # doctest: +SKIP
>>> model = finalize(model)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import weakref

import keras

from dkp_keras import blocks
from dkp_keras import doping_budget
from dkp_keras.keras3.doped_matrix import find_doped_owners
from dkp_keras.structures import check_block_size


@dataclasses.dataclass(frozen=True)
class AnnealingSchedule:
  """When and how S is pruned: tfmot's polynomial decay, a mask update at ``end_step``.

  >>> schedule = AnnealingSchedule(begin_step=2, end_step=7, frequency=4)
  >>> [step for step in range(12) if schedule.updates_mask(step)]
  [2, 6, 7]
  >>> early = AnnealingSchedule(0, 10, 4, early_block_size=(1, 1), block_switch_step=5)
  >>> [step for step in range(12) if early.updates_mask(step)], early.block_size_at(4, (4, 1))
  ([0, 4, 5, 8, 10], (1, 1))
  """
  begin_step: int = 0
  end_step: int = 1000
  frequency: int = 100
  power: int = 3
  block_pooling_type: str = "AVG"
  start_at_target: bool = False
  early_block_size: tuple | None = None
  block_switch_step: int | None = None

  def __post_init__(self):
    if not 0 <= self.begin_step < self.end_step:
      raise ValueError(f"need 0 <= begin_step < end_step, got {self.begin_step} and "
                       f"{self.end_step}")
    if self.frequency < 1:
      raise ValueError(f"frequency must be >= 1, got {self.frequency}")
    if self.block_pooling_type not in blocks.POOLINGS:
      raise ValueError(f"block_pooling_type must be 'AVG' or 'MAX', got "
                       f"{self.block_pooling_type!r}")
    if (self.early_block_size is None) != (self.block_switch_step is None):
      raise ValueError("early_block_size and block_switch_step go together: S anneals in "
                       "the early blocks until block_switch_step, then in its layer's own")
    if self.early_block_size is not None:
      object.__setattr__(self, "early_block_size", check_block_size(self.early_block_size))
      if not self.begin_step <= self.block_switch_step <= self.end_step:
        raise ValueError(
            f"block_switch_step {self.block_switch_step} must be within the annealing "
            f"window [{self.begin_step}, {self.end_step}]: after it no mask update would put "
            f"S in its layers' blocks")

  def updates_mask(self, step):
    """Whether the masks are recomputed at ``step`` (tfmot's rule, plus ``end_step``)."""
    if not self.begin_step <= step <= self.end_step:
      return False
    return ((step - self.begin_step) % self.frequency == 0 or step == self.end_step
            or step == self.block_switch_step)

  def last_update(self, step):
    """The latest step <= ``step`` whose mask update is in force at ``step`` (None: no update
    yet; batches are steps 1, 2, ...). A resumed run rebuilds its masks as of that step.

    >>> AnnealingSchedule(begin_step=2, end_step=11, frequency=4).last_update(9)
    6
    """
    if step < max(self.begin_step, 1):
      return None
    if step >= self.end_step:
      return self.end_step
    last = self.begin_step + (step - self.begin_step) // self.frequency * self.frequency
    if self.block_switch_step is not None and last < self.block_switch_step <= step:
      last = self.block_switch_step
    return last if last >= 1 else None

  def block_size_at(self, step, layer_block_size):
    """The blocks a mask computed at ``step`` is made of: the early ones before the switch."""
    if self.early_block_size is not None and step < self.block_switch_step:
      return self.early_block_size
    return tuple(layer_block_size)

  def sparsity(self, step, target):
    """The sparsity S of final sparsity ``target`` has at ``step`` (tfmot's `PolynomialDecay`)."""
    initial = target if self.start_at_target else 0.0
    progress = min(1.0, max(0.0, (step - self.begin_step) / (self.end_step - self.begin_step)))
    return target + (initial - target) * (1.0 - progress) ** self.power


# The schedule a SparsityAnnealing callback is applying to a model: CoMatrixDropout follows
# its window, finalize its pooling.
_SCHEDULES = weakref.WeakKeyDictionary()


def register_schedule(model, schedule):
  _SCHEDULES[model] = schedule


def model_schedule(model):
  """The `AnnealingSchedule` annealing ``model`` (in this process), or None."""
  return _SCHEDULES.get(model)


def annealing_window(model):
  """(begin_step, end_step) of the annealing of ``model``, or None."""
  schedule = model_schedule(model)
  return None if schedule is None else (schedule.begin_step, schedule.end_step)


def completed_steps(model):
  """The optimizer steps ``model`` has taken (its training batches so far)."""
  return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def doped_layers(model):
  """(layer, its doped owners) for every layer of ``model`` that holds a doped S."""
  return [(layer, owners) for layer in model.layers if (owners := find_doped_owners(layer))]


def finalize(model, on_missed_target="prune"):
  """Checks every doped layer of a Keras 3 model against its target; the model, ready to save.

  As `dkp_keras.finalize` for tf_keras models, with nothing to strip (the
  masks live in the callback): an S denser than its layer's compression
  allows (training stopped before ``end_step``, or a model never annealed) is
  never returned silently. CMR rates are reset and ``-0.0`` entries of S
  cleared (they would be stored like nonzeros).

  Args:
    model: a built Keras 3 model holding `dkp_keras.keras3` layers.
    on_missed_target: ``"prune"`` (default) brings such an S to its target by
      magnitude, in its layer's blocks (scored as the annealing scored them),
      and warns naming the layers and the density they had reached; ``"raise"``
      raises a ValueError instead.

  Returns:
    ``model`` itself, every S within its budget.
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"finalize expects a Keras 3 Model, got {type(model).__name__}")
  doping_budget.check_missed_target_action(on_missed_target)
  schedule = model_schedule(model)
  pooling = schedule.block_pooling_type if schedule is not None else "AVG"
  doping_budget.enforce_budgets(doped_layers(model), on_missed_target, lambda name: pooling)
  for owner in find_doped_owners(model):
    owner.cmr_rate.assign(0.0)
    owner.clear_negative_zeros()
  return model

