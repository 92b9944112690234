"""Co-matrix dropout: the mask, the schedule, and the callback that drives it."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from hypothesis import given, strategies as st

import dkp_keras as dkp
from dkp_keras import traversal
from dkp_keras import cmr


@given(rate=st.floats(0.0, 0.9), final=st.floats(0.0, 0.9), begin=st.integers(0, 50),
       length=st.integers(1, 100), decay=st.sampled_from(["linear", "cosine"]))
def test_schedule_moves_monotonically_between_its_ends(rate, final, begin, length, decay):
  end = begin + length
  values = [cmr.scheduled_rate(s, rate, final, begin, end, decay) for s in range(0, end + 10)]
  assert values[0] == pytest.approx(rate) and values[-1] == pytest.approx(final)
  steps = np.diff(values)
  assert np.all(steps <= 1e-12) if final <= rate else np.all(steps >= -1e-12)


def test_constant_schedule_and_no_window():
  assert cmr.scheduled_rate(500, 0.3, 0.0, 0, 100, "constant") == 0.3
  assert cmr.scheduled_rate(500, 0.3, 0.0, 0, None) == 0.3


@pytest.mark.parametrize("scaling, expected_mean", [("none", 0.7), ("inverted", 1.0)])
def test_keep_mask_statistics(scaling, expected_mean):
  generator = tf.random.Generator.from_seed(0)
  masks = [cmr.keep_mask(0.3, (5, 8), "row", scaling, generator.uniform, ops=tf).numpy()
           for _ in range(400)]
  masks = np.concatenate(masks)
  assert masks.shape == (400, 8)
  assert np.mean(masks) == pytest.approx(expected_mean, abs=0.05)
  assert cmr.keep_mask(0.3, (5, 8), "matrix", scaling, generator.uniform, ops=tf).shape == ()
  blocks = np.stack([cmr.keep_mask(0.3, (10, 3), "block", scaling, generator.uniform,
                                   (4, 1), ops=tf).numpy() for _ in range(400)])
  assert blocks.shape == (400, 10, 3)
  assert np.mean(blocks) == pytest.approx(expected_mean, abs=0.05)


def test_block_mask_is_constant_on_each_block_and_independent_across_blocks():
  generator = tf.random.Generator.from_seed(1)
  masks = np.stack([cmr.keep_mask(0.5, (10, 6), "block", "none", generator.uniform,
                                  (4, 2), ops=tf).numpy() for _ in range(200)])
  # Blocks of 4 inputs x 2 outputs (the last input block has 2 rows): one draw each.
  for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
    for cols in (slice(0, 2), slice(2, 4), slice(4, 6)):
      block = masks[:, rows, cols].reshape(200, -1)
      assert np.all(block == block[:, :1])
  assert 0.3 < np.mean(masks[:, 0, 0] == masks[:, 4, 0]) < 0.7  # different blocks differ


def test_callback_decays_over_the_annealing_window_and_resets():
  tokens = keras.Input((4,), dtype="int32")
  x = keras.layers.Embedding(10, 8)(tokens)
  x = dkp.DKPLSTM(8, compression=2, return_sequences=True)(x)
  model = keras.Model(tokens, dkp.DopedDense(10, compression=1.5)(x))
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=10, frequency=1)
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.default_rng(0).integers(0, 10, size=(40, 4))
  seen = []

  class Spy(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      seen.append([float(o.cmr_rate.numpy()) for o in traversal.find_doped_owners(model)])

  history = model.fit(x, x, batch_size=4, epochs=2, verbose=0,
                      callbacks=[dkp.SparsityAnnealing(), dkp.CoMatrixDropout(rate=0.6), Spy()])
  rates = [r[0] for r in seen]
  assert len(seen[0]) == 2 and all(len(set(r)) == 1 for r in seen)  # every doped layer
  assert rates[0] == pytest.approx(0.6, abs=0.07)
  assert np.all(np.diff(rates) <= 1e-9) and rates[-1] == 0.0
  assert history.history["cmr_rate"][-1] == 0.0
  final = dkp.finalize(model)
  assert all(float(o.cmr_rate.numpy()) == 0.0
             for o in traversal.find_doped_owners(final))


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 1.0}, "rate"),
    ({"final_rate": -0.1}, "final_rate"),
    ({"decay": "step"}, "decay"),
    ({"begin_step": 5, "end_step": 5}, "end_step"),
])
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dkp.CoMatrixDropout(**kwargs)


def test_model_without_doped_layers_is_rejected():
  inputs = keras.Input((3,))
  model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
  model.compile("sgd", "mse")
  with pytest.raises(ValueError, match="no doped"):
    model.fit(np.ones((2, 3)), np.ones((2, 2)), verbose=0, callbacks=[dkp.CoMatrixDropout()])
