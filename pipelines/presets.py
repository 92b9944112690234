"""Training recipes: the model size, optimizer and DKP schedule of each preset.

``demo`` is what ``python -m pipelines.run`` uses on the embedded corpus;
``ptb-medium`` is Zaremba et al. (2014) medium, the papers' dense reference
(2x650, 35 steps, batch 20, SGD lr 1.0 decayed 0.8 per epoch after epoch 6,
39 epochs, dropout 0.5, global-norm clip 5, uniform init ±0.05, rate and clip
on the loss summed over the 35 steps as in their code), with scaled factor
gradients for the structured methods (plain SGD does not train the factors:
``benchmarks.studies.sgd_probe``); ``ptb-small`` is a reduced
budget sized to finish in about 30 minutes per model on 2 CPU cores.

The DKP schedule, the same for every preset (the papers anneal S from dense to
its target and regularize with CMR while it anneals):

* annealing window: from step 0 (S dense) to ``anneal_end`` of the training
  steps, along tfmot's cubic `PolynomialDecay`, masks updated ``anneal_updates``
  times per epoch; the remaining epochs fine-tune with S's mask fixed (with
  ``block_switch``, S anneals entry by entry until then, in its blocks after);
* CMR: S (rows of it for ``dkp``'s default granularity) dropped with
  probability ``cmr``, decayed linearly to 0 over the annealing window (one draw
  per sequence), so the structure learns to stand alone while S is dense and S
  is always on once final. ``dkp`` starts from its own rate (`models.METHODS`).

The methods' DKP options (`models.DKP_OPTIONS`) replace the schedule's fields.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Everything that decides how a language model is built and trained.

  A run's ``run.json`` records ``to_dict()``: a new field needs a default that
  keeps the old behaviour, so that earlier runs (whose files lack it) resume.
  """
  name: str
  layers: int = 2
  units: int = 200
  embedding: int = 200
  num_steps: int = 20
  batch_size: int = 20
  epochs: int = 13
  optimizer: str = "sgd"  # 'sgd' or 'adam'
  learning_rate: float = 1.0
  lr_decay: float = 1.0  # multiplied into the rate once per epoch after `decay_after`
  decay_after: int = 0  # epochs at the full rate
  clip_norm: float = 5.0  # global gradient norm
  dropout: float = 0.0  # on non-recurrent connections (Zaremba et al.)
  init_scale: float | None = 0.1  # uniform ±init_scale; None = Keras defaults
  carry_state: bool = True  # LSTM states carried across training batches (TBPTT)
  compress_output: bool = False  # also compress the softmax layer (at half the factor)
  anneal_end: float = 0.6  # annealing window end, as a fraction of the training steps
  anneal_updates: int = 10  # mask updates per epoch
  # S anneals in 1x1 blocks until this fraction of the training steps (at most
  # anneal_end), then in its layers' blocks (None: in those blocks throughout).
  block_switch: float | None = None
  # How tfmot scores a block of S: "AVG" (mean |w|) or "MAX" (its largest |w|, as
  # block-sparse RNNs (Narang et al., 2017) prune).
  block_pooling: str = "AVG"
  cmr: float = 0.5
  cmr_decay: str = "linear"  # how CMR's rate falls to 0 over the annealing window
  corpus_tokens: int = 200_000  # size of the embedded corpus when no --data is given
  # Zaremba et al.'s rate and clip apply to the loss summed over the time steps
  # (mean over the batch); Keras' loss is the mean per token, num_steps times smaller.
  sum_over_steps: bool = False
  # Scaled gradients for the structures' factors (`dkp_keras.preconditioning`):
  # plain SGD does not train Kronecker or low-rank factors without them.
  precondition_factors: bool = False

  @property
  def _loss_scale(self):
    return self.num_steps if self.sum_over_steps else 1

  def learning_rate_at(self, epoch):
    """The optimizer's rate for (0-based) ``epoch``, on Keras' mean-per-token loss.

    With ``sum_over_steps`` the recipe's rate is for the per-sequence sum, so
    the optimizer gets ``num_steps`` times it (exact for SGD).
    """
    rate = self.learning_rate * self.lr_decay ** max(0, epoch + 1 - self.decay_after)
    return rate * self._loss_scale

  @property
  def optimizer_clip_norm(self):
    """The global gradient-norm clip on the mean-per-token loss (None: no clipping)."""
    return self.clip_norm / self._loss_scale if self.clip_norm else None

  def replace(self, **changes):
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise ValueError(f"unknown recipe fields {sorted(unknown)}")
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    """Every field, by name."""
    return dataclasses.asdict(self)


PRESETS = {
    # The main job on the embedded corpus: one wide layer, Adam, minutes on 2 cores.
    "demo": Recipe("demo", layers=1, units=512, embedding=64, num_steps=20, batch_size=32,
                   epochs=4, optimizer="adam", learning_rate=3e-3, init_scale=None,
                   carry_state=False, compress_output=True, anneal_end=0.75,
                   corpus_tokens=120_000),
    # Zaremba et al. small's shape (2x200, 20 steps, batch 20) on a CPU budget, with
    # dropout: without it the models overfit, and the table ranks regularization rather
    # than capacity (benchmarks/results/ptb_small_nodropout.md).
    "ptb-small": Recipe("ptb-small", layers=2, units=200, embedding=200, num_steps=20,
                        batch_size=20, epochs=6, optimizer="adam", learning_rate=2e-3,
                        lr_decay=0.5, decay_after=3, init_scale=0.1, dropout=0.3),
    # Zaremba et al. medium: the papers' dense reference.
    "ptb-medium": Recipe("ptb-medium", layers=2, units=650, embedding=650, num_steps=35,
                         batch_size=20, epochs=39, optimizer="sgd", learning_rate=1.0,
                         lr_decay=0.8, decay_after=6, dropout=0.5, init_scale=0.05,
                         sum_over_steps=True, precondition_factors=True),
}


def get_preset(name):
  """The recipe called ``name``; a clear error for an unknown one."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
  return PRESETS[name]
