"""The Keras 3 `SparsityAnnealing`'s options beside the tf_keras callback's: early blocks with a
block switch, sparsity logs named by the model's layers and recorded by TensorBoard."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from dkp_keras import keras3 as k3
from dkp_keras.blocks import kept_block_count
from dkp_keras.deployed_layout import is_block_aligned
from dkp_keras.keras3 import annealing
from helpers import randomize_doping

VOCAB, STEPS = 30, 8


def small_model():
  tokens = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(VOCAB, 16)(tokens)
  x = k3.DKPLSTM(24, compression=4, return_sequences=True, name="lstm")(x)
  outputs = k3.DopedDense(VOCAB, compression=3, name="logits")(x)
  model = keras.Model(tokens, outputs)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def data(batches, batch=4):
  x = np.random.default_rng(0).integers(0, VOCAB, size=(batches * batch, STEPS))
  return x, np.roll(x, -1, axis=1)


class DopingProbe(keras.callbacks.Callback):
  """The output layer's S as each training step's forward pass sees it (after the masks)."""

  def __init__(self):
    super().__init__()
    self.seen = []

  def on_train_batch_begin(self, batch, logs=None):
    matrix = self.model.get_layer("logits").doped_matrices["kernel"]
    self.seen.append(matrix.doping_values().copy())


def test_s_anneals_in_early_blocks_until_the_switch_then_in_its_layers_blocks():
  model = small_model()
  for name in ("lstm", "logits"):
    layer = model.get_layer(name)
    randomize_doping(getattr(layer, "cell", layer))  # S starts at zero: nothing to rank
  probe = DopingProbe()
  schedule = dict(begin_step=0, end_step=8, frequency=2, early_block_size=(1, 1),
                  block_switch_step=5)
  x, y = data(batches=5)
  model.fit(x, y, batch_size=4, epochs=2, verbose=0,
            callbacks=[k3.SparsityAnnealing(**schedule), probe])
  matrix = model.get_layer("logits").doped_matrices["kernel"]
  plan = matrix.plan
  steps = annealing.AnnealingSchedule(**schedule)
  for step, values in enumerate(probe.seen, start=1):  # the n-th batch is step n
    update = max(s for s in range(step + 1) if steps.updates_mask(s))
    block = (1, 1) if update < 5 else plan.block_size
    keep = kept_block_count(values.shape, block, steps.sparsity(update, plan.doping_sparsity))
    assert np.count_nonzero(values) == keep * block[0] * block[1], step
    if block != (1, 1):
      assert is_block_aligned(values, plan.block_size), step
    elif keep < values.size:  # entry by entry: not in whole (4, 1) blocks once S is pruned
      assert not is_block_aligned(values, plan.block_size), step
  final = k3.finalize(model, on_missed_target="raise")
  assert bool(k3.compression_report(final)["meets_target"].all())
  assert is_block_aligned(matrix.doping_values(), plan.block_size)


@pytest.mark.parametrize("options, message", [
    (dict(early_block_size=(1, 1)), "early_block_size and block_switch_step go together"),
    (dict(block_switch_step=4), "early_block_size and block_switch_step go together"),
    (dict(early_block_size=(1, 1), block_switch_step=20),
     r"block_switch_step 20 must be within the annealing window \[0, 8\]"),
    (dict(early_block_size=(0, 1), block_switch_step=4), "block_size must be two positive"),
])
def test_bad_block_switch_options_are_refused(options, message):
  with pytest.raises(ValueError, match=message):
    k3.SparsityAnnealing(0, 8, 2, **options)


def test_sparsity_logs_name_the_models_layers_and_reach_tensorboard(tmp_path):
  model = small_model()
  x, y = data(batches=4)
  history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[
      k3.SparsityAnnealing(0, 4, 2), keras.callbacks.TensorBoard(str(tmp_path))])
  # The RNN layer's name, as on the tf_keras path (not its cell's).
  assert {"sparsity/lstm", "sparsity/logits"} <= set(history.history)
  assert history.history["sparsity/lstm"][-1] > 0.5
  recorded = {}
  for path in glob.glob(str(tmp_path / "train" / "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.startswith("epoch_"):  # not the model's graph
          recorded.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  assert recorded["epoch_sparsity/lstm"] == pytest.approx(history.history["sparsity/lstm"])
