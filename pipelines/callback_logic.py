"""What the language-model training callbacks do, for either Keras (no Keras import).

Each class here is a mixin that a Keras' ``Callback`` completes: tf_keras's in
`pipelines.training_callbacks`, Keras 3's in `pipelines.keras3_callbacks`. What
differs between the two is a class attribute or a method the subclass gives.

* `ResetStates`: every epoch starts from zero LSTM states (stateful training);
* `Perplexity`: ``perplexity`` and ``val_perplexity`` in the epoch's logs;
* `Reseed`: dropout and CMR draws depend on (seed, layer, epoch) only, so a
  resumed run draws what an uninterrupted one would;
* `TrainClock`: training seconds and per-epoch logs summed over the
  invocations of a resumed run, saved beside each epoch's checkpoint.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from tflite_ops import files


class ResetStates:
  """Starts every epoch from zero LSTM states (stateful training).

  A subclass gives ``rnn_class`` (its Keras' RNN) and ``all_layers`` (the
  model's layers, nested ones included: Model.reset_states misses RNNs
  inside pruning wrappers).
  """

  rnn_class = None

  @staticmethod
  def all_layers(model):
    raise NotImplementedError

  def on_epoch_begin(self, epoch, logs=None):
    reset_stateful_rnns(self.model, self.rnn_class, self.all_layers)


def reset_stateful_rnns(model, rnn_class, all_layers):
  """Zeroes the states of every stateful ``rnn_class`` layer among ``all_layers(model)``."""
  for layer in all_layers(model):
    if isinstance(layer, rnn_class) and layer.stateful:
      layer.reset_states()


class Perplexity:
  """Adds ``perplexity`` (training) and ``val_perplexity`` to the epoch's logs.

  Args:
    evaluate: a function of the model returning its validation perplexity
      (e.g. `pipelines.training.evaluate_perplexity` on the validation split), or
      None for training perplexity only.
  """

  def __init__(self, evaluate=None):
    super().__init__()
    self.evaluate = evaluate

  def single_replica(self):
    """Whether training runs on one replica (a subclass under tf.distribute says)."""
    return True

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    if "loss" in logs:
      logs["perplexity"] = float(np.exp(min(logs["loss"], 50.0)))
    # Stateful evaluation cannot run inside a multi-replica fit (Keras refuses
    # stateful RNNs there): such runs report validation perplexity at the end.
    if self.evaluate is not None and self.single_replica():
      logs["val_perplexity"] = self.evaluate(self.model)


class Reseed:
  """Reseeds every random generator of the model (dropout, CMR) from (seed, layer, epoch).

  Checkpoints do not hold the generators' states, so this makes an epoch's
  draws the same whether the run was resumed before it or not. A subclass
  gives ``generators`` (the model's generators, in layer order) and
  ``reset`` (sets one generator from a seed).

  Args:
    seed: the run's seed.
  """

  def __init__(self, seed):
    super().__init__()
    self.seed = seed

  @staticmethod
  def generators(model):
    raise NotImplementedError

  @staticmethod
  def reset(generator, seed):
    raise NotImplementedError

  def on_epoch_begin(self, epoch, logs=None):
    for index, generator in enumerate(self.generators(self.model)):
      self.reset(generator, epoch_seed(self.seed, epoch, index))


def epoch_seed(seed, epoch, index):
  """The seed of the ``index``-th generator in ``epoch`` of a run seeded ``seed``: distinct
  per (seed, epoch, index) and below 2**31 (Keras 3 backends keep seeds in int32)."""
  return (seed * 1_000_003 + epoch * 10_007 + index) % (2**31 - 1)


class TrainClock:
  """Training seconds and per-epoch logs summed over the invocations of a resumed run.

  Both are saved after every epoch (beside the epoch's checkpoint: put this
  callback after `BackupAndRestore`), so a killed run's metrics report what
  training cost in all and the history of every epoch, not only the last leg's.

  Args:
    path: the JSON file that carries them across invocations (None: none).
    write: False where another worker (the chief) keeps the file.
  """

  def __init__(self, path, write=True):
    super().__init__()
    self.path, self.earlier_seconds, self._start = path, 0.0, None
    self.write = write
    self.epoch_logs = {}  # epoch (0-based) -> its logs

  def on_train_begin(self, logs=None):
    if self.path and os.path.exists(self.path):
      saved = read_run_file(self.path)
      self.earlier_seconds = float(saved["train_seconds"])
      # A file written before the logs were kept here has none.
      self.epoch_logs = {int(epoch): values
                         for epoch, values in saved.get("epoch_logs", {}).items()}
    self._start = time.perf_counter()

  def seconds(self):
    """Training seconds so far, earlier invocations included."""
    return self.earlier_seconds + time.perf_counter() - self._start

  def on_epoch_end(self, epoch, logs=None):
    # A rerun epoch (killed before its checkpoint) replaces its first try.
    self.epoch_logs[epoch] = {key: float(value) for key, value in (logs or {}).items()}
    if self.path and self.write:
      files.write_json_atomic(self.path, {"train_seconds": self.seconds(),
                                          "epochs_done": epoch + 1,
                                          "epoch_logs": self.epoch_logs})

  def history(self):
    """Every epoch's logs, laid out as `History.history` (key -> one value per epoch)."""
    epochs = sorted(self.epoch_logs)
    keys = dict.fromkeys(key for epoch in epochs for key in self.epoch_logs[epoch])
    return {key: [self.epoch_logs[epoch].get(key) for epoch in epochs] for key in keys}


def read_run_file(path):
  """A run directory's JSON file; a clear error for an unreadable one."""
  try:
    with open(path, encoding="utf-8") as handle:
      return json.load(handle)
  except (OSError, ValueError) as error:
    raise ValueError(f"{path} is not a readable run file: {error}") from error
