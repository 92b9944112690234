"""Sparsity annealing: S reaches its target sparsity in the requested blocks, the model its factor."""

import math
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import annealing
from dkp_keras import traversal
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
  wrapper = next(w for w in traversal.pruning_wrappers(model) if "dkplstm" in w.layer.name)
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
      wrapper = next(w for w in traversal.pruning_wrappers(self.model)
                     if "dkplstm" in w.layer.name)
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


# -- short or misaligned schedules, stopped training, wrapped layers ---------------------------

def fit_steps(model, steps, end_step, frequency, stop_after_epoch=None, epochs=2):
  """Anneals over [0, end_step] and trains ``steps`` batches (split into ``epochs``)."""
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=end_step, frequency=frequency)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = data(batches=steps // epochs)
  callbacks = [dkp.SparsityAnnealing(), dkp.CoMatrixDropout(0.5)]
  if stop_after_epoch is not None:
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training",
                                                 epoch + 1 >= stop_after_epoch)))
  model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks)
  return model


def missed_target_warnings(record):
  return [w for w in record if "denser than their compression allows" in str(w.message)]


@pytest.mark.parametrize("end_step, frequency", [(4, 100), (5, 2), (6, 4)])
def test_short_or_misaligned_window_still_ends_at_target(end_step, frequency):
  # tfmot alone updates masks only at multiples of `frequency`: (4, 100) left S dense.
  model = fit_steps(small_lm(), steps=6, end_step=end_step, frequency=frequency)
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    final = dkp.finalize(model, on_missed_target="raise")
  assert not missed_target_warnings(record)
  for owner in doped_owners(final):
    assert_meets_doping_budget(owner)
  report = dkp.compression_report(final)
  assert report["meets_target"].all()


def test_annealing_decay_updates_at_end_step_and_round_trips():
  schedule = annealing.AnnealingDecay(0.0, 0.8, begin_step=2, end_step=7, frequency=4)
  updates = [step for step in range(12) if bool(schedule(tf.constant(step, tf.int64))[0])]
  assert updates == [2, 6, 7]
  assert float(schedule(tf.constant(7, tf.int64))[1]) == pytest.approx(0.8)
  wrapped = dkp.prepare_for_annealing(small_lm(), 0, 7, 4)
  wrapper = next(layer for layer in wrapped.layers if hasattr(layer, "pruning_schedule"))
  clone = type(wrapper).from_config(wrapper.get_config())
  assert isinstance(clone.pruning_schedule, annealing.AnnealingDecay)
  assert clone.pruning_schedule.get_config() == wrapper.pruning_schedule.get_config()


@pytest.mark.parametrize("stop_after_epoch", [None, 1])
def test_training_stopped_before_end_step_warns_and_prunes_to_target(stop_after_epoch):
  # end_step 200 is never reached: 6 steps trained (3 with early stopping after epoch 1).
  model = fit_steps(small_lm(), steps=6, end_step=200, frequency=2,
                    stop_after_epoch=stop_after_epoch)
  with pytest.warns(UserWarning, match="denser than their compression allows") as record:
    final = dkp.finalize(model)
  message = str(missed_target_warnings(record)[0].message)
  assert "dkplstm" in message and "% dense" in message
  for owner in doped_owners(final):
    assert_meets_doping_budget(owner)
  assert dkp.compression_report(final)["meets_target"].all()


def test_mask_update_on_tied_values_is_caught_by_finalize():
  # After one Adam step every |S| is the same: tfmot's threshold keeps all tied entries.
  model = fit_steps(small_lm(), steps=6, end_step=1, frequency=1)
  with pytest.warns(UserWarning, match="denser than their compression allows"):
    final = dkp.finalize(model)
  for owner in doped_owners(final):
    assert_meets_doping_budget(owner)


def test_finalized_s_holds_no_negative_zeros():
  # tfmot masks by multiplication: pruned negative entries become -0.0, which a
  # .keras file would have to store like nonzeros.
  final, _ = anneal(small_lm())
  for owner in doped_owners(final):
    for matrix in owner.doped_matrices.values():
      values = matrix.doping_values()
      assert np.count_nonzero(values == 0) > 0
      assert not np.any((values == 0) & np.signbit(values))


def test_finalize_can_raise_on_a_missed_target():
  model = fit_steps(small_lm(), steps=6, end_step=200, frequency=2)
  with pytest.raises(ValueError, match="denser than their compression allows"):
    dkp.finalize(model, on_missed_target="raise")
  with pytest.raises(ValueError, match="on_missed_target"):
    dkp.finalize(model, on_missed_target="ignore")


def test_finalize_never_returns_a_silently_dense_s():
  model = small_lm()  # trained without annealing: S dense
  rng = np.random.default_rng(0)
  for owner in doped_owners(model):
    for matrix in owner.doped_matrices.values():
      matrix.doping.assign(rng.normal(size=matrix.doping.shape).astype(np.float32))
  report = dkp.compression_report(model)
  assert not report["meets_target"].iloc[-1]
  assert not report.set_index("layer").loc[model.layers[2].name, "meets_target"]
  with pytest.warns(UserWarning, match="denser than their compression allows"):
    final = dkp.finalize(model)
  for owner in doped_owners(final):
    assert_meets_doping_budget(owner)
  report = dkp.compression_report(final)
  assert report["meets_target"].all()
  rows = report[report["doped"] & (report["layer"] != "total")]
  assert (rows["compression"] >= rows["target_compression"] * 0.99).all()


@pytest.mark.parametrize("bad", [None, "model", 3])
def test_finalize_refuses_what_is_not_a_model(bad):
  with pytest.raises(ValueError, match="finalize expects a tf_keras Model"):
    dkp.finalize(bad)


def wrapped_classifier():
  frames = keras.Input((STEPS, 12))
  x = keras.layers.Bidirectional(dkp.DKPLSTM(16, compression=4, return_sequences=True))(frames)
  x = keras.layers.TimeDistributed(dkp.DopedDense(8, compression=3))(x)
  x = keras.layers.GlobalAveragePooling1D()(x)
  return keras.Model(frames, keras.layers.Dense(3)(x))


def test_doped_layers_inside_bidirectional_and_time_distributed_anneal_to_target():
  model = wrapped_classifier()
  annealed = dkp.prepare_for_annealing(model, begin_step=0, end_step=5, frequency=100)
  wrapped = [layer.layer for layer in annealed.layers if hasattr(layer, "pruning_schedule")]
  assert [type(layer).__name__ for layer in wrapped] == ["Bidirectional", "TimeDistributed"]
  annealed.compile(keras.optimizers.Adam(1e-2),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(24, STEPS, 12)), rng.integers(0, 3, size=24)
  rates = []
  annealed.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[
      dkp.SparsityAnnealing(), dkp.CoMatrixDropout(0.5),
      keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: rates.append(
          float(annealed.layers[1].layer.forward_layer.cell.cmr_rate.numpy())))])
  assert rates[0] > 0  # CoMatrixDropout reaches the cells inside Bidirectional
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    final = dkp.finalize(annealed, on_missed_target="raise")
  assert not missed_target_warnings(record)
  owners = dkp.traversal.find_doped_owners(final)
  assert len(owners) == 3  # forward cell, backward cell, the TimeDistributed DopedDense
  for owner in owners:
    assert_meets_doping_budget(owner)
  report = dkp.compression_report(final).set_index("layer")
  for layer in final.layers[1:3]:
    row = report.loc[layer.name]
    assert row["doped"] and row["meets_target"]
    assert row["target_compression"] == pytest.approx(4 if "bidirectional" in layer.name else 3)
    assert row["compression"] >= 0.99 * row["target_compression"]
