"""Sparsity annealing: S reaches its target sparsity in the requested blocks, the model its factor."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import annealing
from dkp_keras.compression import kept_blocks

VOCAB, STEPS = 30, 8


def small_lm(block_size=(4, 1)):
  tokens = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(VOCAB, 16)(tokens)
  x = dkp.DKPLSTM(16, compression=4, return_sequences=True, block_size=block_size)(x)
  outputs = dkp.DopedDense(VOCAB, compression=3, block_size=block_size)(x)
  return keras.Model(tokens, outputs)


def data(batches=12, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, VOCAB, size=(batches * batch, STEPS))
  return x, np.roll(x, -1, axis=1)


def anneal(model, epochs=2, callbacks=(), end_step=8):
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=end_step, frequency=2)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data()
  history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
                      callbacks=[dkp.SparsityAnnealing(), *callbacks])
  return dkp.finalize(model), history


def block_patterns(kernel, block_size):
  """Per block of the [in, out] kernel: the number of nonzeros (padded blocks count full)."""
  bh, bw = block_size
  n, m = kernel.shape
  padded = np.ones((math.ceil(n / bh) * bh, math.ceil(m / bw) * bw), dtype=bool)
  padded[:n, :m] = kernel != 0
  padded[n:, :] = padded[n - 1:n, :] if n % bh else padded[n:, :]
  padded[:, m:] = padded[:, m - 1:m] if m % bw else padded[:, m:]
  return padded.reshape(padded.shape[0] // bh, bh, padded.shape[1] // bw, bw).sum(axis=(1, 3))


def assert_meets_doping_budget(owner):
  """S is as sparse as planned: its nonzeros fit the budget, within a block of the target."""
  matrices = list(owner.doped_matrices.values())
  nnz = sum(np.count_nonzero(m.doping_values()) for m in matrices)
  assert nnz <= sum(m.plan.doping_max_nnz for m in matrices)
  # tfmot counts in (edge-padded) blocks: kept blocks / all blocks ~ 1 - target
  bh, bw = owner.block_size
  kept = sum(kept_blocks(m.doping_values(), owner.block_size) for m in matrices)
  blocks = sum(math.ceil(m.structure.n / bh) * math.ceil(m.structure.m / bw) for m in matrices)
  assert abs((1 - kept / blocks) - annealing.target_sparsity(owner)) <= len(matrices) / blocks


def doped_owners(model):
  return [getattr(layer, "cell", layer) for layer in model.layers
          if isinstance(layer, (dkp.DopedDense, dkp.DKPLSTM))]


@pytest.mark.parametrize("block_size", [(4, 1), (1, 4), (2, 2)])
def test_reaches_target_sparsity_in_whole_blocks(block_size):
  model, history = anneal(small_lm(block_size))
  assert not any("prune_low_magnitude" in layer.name for layer in model.layers)
  for owner in doped_owners(model):
    assert_meets_doping_budget(owner)
    for matrix in owner.doped_matrices.values():
      counts = block_patterns(matrix.doping_values(), block_size)
      # every block is pruned or kept whole: the fast TFLite layout for (4, 1)
      assert set(np.unique(counts)) <= {0, block_size[0] * block_size[1]}
  assert {"sparsity/dkplstm", "sparsity/doped_dense"} <= set(history.history)


def test_meets_the_requested_compression():
  model, _ = anneal(small_lm())
  report = dkp.compression_report(model).set_index("layer")
  for name, target in (("dkplstm", 4), ("doped_dense", 3)):
    assert report.loc[name, "compression"] >= target
    assert report.loc[name, "target_compression"] == target
  assert report.loc["embedding", "compression"] == 1.0


def test_before_annealing_s_is_dense():
  model = small_lm()
  report = dkp.compression_report(model).set_index("layer")
  assert report.loc["dkplstm", "doping_density"] == 0.0  # zero-initialised
  model.layers[2].cell.input_matrix.doping.assign(tf.ones((16, 64)))
  report = dkp.compression_report(model).set_index("layer")
  assert report.loc["dkplstm", "compression"] < 4


def test_finalized_model_saves_and_loads(tmp_path):
  model, _ = anneal(small_lm())
  x, _ = data(batches=1)
  path = str(tmp_path / "annealed.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
  for owner in doped_owners(loaded):
    assert_meets_doping_budget(owner)


def test_other_layers_are_shared_not_pruned():
  model = small_lm()
  embedding_before = model.layers[1].get_weights()[0].copy()
  annealed, _ = anneal(model)
  assert annealed.layers[1] is model.layers[1]
  assert np.count_nonzero(annealed.layers[1].get_weights()[0]) == embedding_before.size


def test_sparsity_logged_to_tensorboard_dir(tmp_path):
  anneal(small_lm(), epochs=1, callbacks=())
  model = dkp.prepare_for_annealing(small_lm(), begin_step=0, end_step=4, frequency=1)
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data(batches=2)
  model.fit(x, y, batch_size=4, verbose=0,
            callbacks=[dkp.SparsityAnnealing(log_dir=str(tmp_path / "logs"))])
  assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_rejects_models_without_doped_layers():
  tokens = keras.Input((4,))
  model = keras.Model(tokens, keras.layers.Dense(3)(tokens))
  with pytest.raises(ValueError, match="no doped"):
    dkp.prepare_for_annealing(model)
  undoped = keras.Model(tokens, dkp.DopedDense(8, compression=2, doped=False)(tokens))
  with pytest.raises(ValueError, match="no doped"):
    dkp.prepare_for_annealing(undoped)


def test_rejects_unbuilt_models_and_bad_windows():
  with pytest.raises(ValueError, match="built"):
    dkp.prepare_for_annealing(keras.Sequential([dkp.DopedDense(4)]))
  with pytest.raises(ValueError, match="begin_step"):
    dkp.prepare_for_annealing(small_lm(), begin_step=10, end_step=10)
  with pytest.raises(ValueError, match="frequency"):
    dkp.prepare_for_annealing(small_lm(), frequency=0)


@pytest.mark.parametrize("pooling, kept", [("AVG", "flat"), ("MAX", "spiky")])
def test_block_pooling_scores_blocks_by_mean_or_largest_entry(pooling, kept):
  model = dkp.prepare_for_annealing(small_lm((4, 1)), start_at_target=True,
                                    block_pooling_type=pooling)
  wrapper = next(w for w in annealing._wrappers(model) if "dkplstm" in w.layer.name)
  # [in, out] = [16, 64]: 4 x 64 blocks of 4 inputs, alternately [10, 0, 0, 0] and
  # [3, 3, 3, 3]; the target keeps fewer than half of them, so one kind only.
  spiky = np.zeros((4, 64), np.float32)
  spiky[0] = 10.0
  flat = np.full((4, 64), 3.0, np.float32)
  values = np.concatenate([spiky, flat, spiky, flat])
  assert annealing.target_sparsity(wrapper.layer.cell) > 0.5
  _, mask = wrapper.pruning_obj._maybe_update_block_mask(tf.constant(values))
  kept_blocks_by_kind = block_patterns(mask.numpy(), (4, 1)).reshape(2, 2, 64).sum(axis=(0, 2))
  assert kept_blocks_by_kind[["spiky", "flat"].index(kept)] > 0
  assert kept_blocks_by_kind[["flat", "spiky"].index(kept)] == 0
  with pytest.raises(ValueError, match="block_pooling_type"):
    dkp.prepare_for_annealing(small_lm(), block_pooling_type="L2")


def test_callback_without_prepared_model_says_what_to_do():
  model = small_lm()
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data(batches=1)
  with pytest.raises(ValueError, match="prepare_for_annealing"):
    model.fit(x, y, verbose=0, callbacks=[dkp.SparsityAnnealing()])


class BlockPatternProbe(keras.callbacks.Callback):
  """Records the block fill counts of the LSTM's input S after the given annealing steps."""

  def __init__(self, steps):
    super().__init__()
    self.steps, self.counts = set(steps), []

  def on_train_batch_end(self, batch, logs=None):
    if annealing.current_step(self.model) in self.steps:
      # The masks: the optimizer step after masking moves pruned entries of S itself.
      wrapper = next(w for w in annealing._wrappers(self.model) if "dkplstm" in w.layer.name)
      counts = set()
      for _, mask, _ in wrapper.pruning_vars:
        counts |= set(np.unique(block_patterns(keras.backend.get_value(mask), (4, 1))))
      self.counts.append(counts)


def anneal_early_1x1(model, block_switch_step, epochs=2, end_step=8, callbacks=()):
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=end_step, frequency=2,
                                    early_block_size=(1, 1))
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data()
  model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
            callbacks=[dkp.SparsityAnnealing(block_switch_step=block_switch_step), *callbacks])
  return model


def test_early_1x1_blocks_switch_to_the_layers_blocks():
  probe = BlockPatternProbe(steps=[4, 12])  # before the switch and after
  model = dkp.finalize(anneal_early_1x1(small_lm((4, 1)), block_switch_step=6,
                                        callbacks=[probe]))
  before, after = probe.counts
  assert before - {0, 4}  # partly filled 1x4 blocks: S was pruned entry by entry
  assert after <= {0, 4}
  for owner in doped_owners(model):
    assert owner.block_size == (4, 1)
    assert_meets_doping_budget(owner)
    for matrix in owner.doped_matrices.values():
      assert set(np.unique(block_patterns(matrix.doping_values(), (4, 1)))) <= {0, 4}


def test_resumed_annealing_switches_blocks_at_train_begin():
  model = anneal_early_1x1(small_lm((4, 1)), block_switch_step=16, epochs=1, end_step=20)
  assert annealing.current_step(model) == 12  # the switch is still to come
  with pytest.raises(ValueError, match="early blocks"):
    dkp.finalize(model)
  x, y = data()
  # A fresh callback, as after --resume: the step counter is past its switch.
  model.fit(x, y, batch_size=4, epochs=1, verbose=0,
            callbacks=[dkp.SparsityAnnealing(block_switch_step=10)])
  for owner in doped_owners(dkp.finalize(model)):
    assert_meets_doping_budget(owner)


def test_block_switch_after_the_annealing_window_is_rejected():
  with pytest.raises(ValueError, match="after the annealing ends"):
    anneal_early_1x1(small_lm((4, 1)), block_switch_step=9, end_step=8)
  with pytest.raises(ValueError, match="block_switch_step"):
    dkp.SparsityAnnealing(block_switch_step=-1)
