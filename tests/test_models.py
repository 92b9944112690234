"""`pipelines.models` and `pipelines.presets`: methods, equal-compression accounting."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines import models
from pipelines import presets
from pipelines import training

RECIPE = presets.Recipe("t", layers=2, units=24, embedding=12, num_steps=5, batch_size=4,
                        init_scale=0.1)


def test_presets():
  medium = presets.get_preset("ptb-medium")
  assert (medium.layers, medium.units, medium.num_steps, medium.batch_size, medium.epochs,
          medium.dropout, medium.init_scale) == (2, 650, 35, 20, 39, 0.5, 0.05)
  # SGD lr 1.0, x0.8 per epoch after epoch 6 (epochs counted from 0 here), on the loss
  # summed over 35 steps: Keras' per-token mean needs 35x the rate and 1/35 of the clip.
  assert [round(medium.learning_rate_at(e) / 35, 4) for e in (0, 5, 6, 7)] == [1.0, 1.0, 0.8,
                                                                                0.64]
  assert medium.optimizer_clip_norm == pytest.approx(5.0 / 35)
  small = presets.get_preset("ptb-small")
  assert (small.learning_rate_at(0), small.optimizer_clip_norm) == (2e-3, 5.0)
  with pytest.raises(ValueError, match="unknown preset 'large'"):
    presets.get_preset("large")
  with pytest.raises(ValueError, match="unknown recipe fields"):
    medium.replace(colour=1)


@given(st.floats(1.5, 60))
def test_small_dense_has_at_most_the_compressed_parameter_count(compression):
  units = models.small_dense_units(RECIPE, compression)
  budget = models.dense_lstm_params(RECIPE) / compression
  assert models.dense_lstm_params(RECIPE.replace(units=units)) <= budget or units == 1
  assert models.dense_lstm_params(RECIPE.replace(units=units + 1)) > budget


def test_method_compression_checks():
  with pytest.raises(ValueError, match="unknown method"):
    models.get_method("svd")
  with pytest.raises(ValueError, match="int8 .* cannot reach 25x"):
    models.check_method_compression(models.get_method("int8"), 25)
  assert models.check_method_compression(models.get_method("int4"), 8) == 8.0
  with pytest.raises(ValueError, match=">= 1"):
    models.check_method_compression(models.get_method("dkp"), 0.5)


@pytest.mark.parametrize("method", [m for m in models.METHODS
                                    if models.METHODS[m].fixed_compression is None])
def test_every_method_refuses_a_factor_it_cannot_honour_alike(method):
  """small-dense used to train a 1-unit stack and claim the factor; prune had its own words."""
  with pytest.raises(ValueError, match=rf"^{method} cannot compress the t model 1e\+09x: "
                                       r"compression 1000000000.0 leaves .*; ask for a lower "
                                       r"compression$"):
    models.check_factor_fits(50, RECIPE, method, 1e9)
  models.check_factor_fits(50, RECIPE, method, 4.0)


def test_fixed_factor_methods_refuse_another_factor_alike():
  with pytest.raises(ValueError, match="^int8 cannot compress the t model 25x: .*cannot reach"):
    models.check_factor_fits(50, RECIPE, "int8", 25.0)
  with pytest.raises(ValueError, match="^dense cannot compress the t model 2x"):
    models.check_factor_fits(50, RECIPE, "dense", 2.0)
  models.check_factor_fits(50, RECIPE, "int4", 8.0)


def test_quantize_per_channel_error_bound():
  kernel = np.random.default_rng(0).normal(size=(30, 7)).astype(np.float32)
  quantized = models.quantize_per_channel(kernel, bits=8)
  step = np.abs(kernel).max(axis=0) / 127
  assert np.all(np.abs(quantized - kernel) <= step / 2 + 1e-6)
  assert all(len(np.unique(quantized[:, j])) <= 255 for j in range(7))
  four_bit = models.quantize_per_channel(kernel, bits=4)
  assert np.all(np.abs(four_bit - kernel) <= np.abs(kernel).max(axis=0) / 7 / 2 + 1e-6)
  assert all(len(np.unique(four_bit[:, j])) <= 15 for j in range(7))


@pytest.mark.parametrize("method", list(models.METHODS))
def test_every_method_builds_and_is_counted_against_the_same_dense_stack(method):
  compression = 4.0 if method != "dense" else 1.0
  model = models.build_lm(50, RECIPE, method, compression, stateful=False)
  counts = training.lstm_compression(model, RECIPE, models.get_method(method))
  assert counts["lstm_dense_params"] == models.dense_lstm_params(RECIPE)
  if method in ("dense", "prune"):  # prune reaches its factor only once pruned
    assert counts["lstm_compression"] == 1.0
  elif method == "int8":  # biases and per-channel scales stay float32
    assert 3.0 < counts["lstm_compression"] < 4.0
  elif method == "int4":
    assert 4.0 < counts["lstm_compression"] < 8.0  # scales and biases weigh on 24 units
  elif method == "kp":  # undoped KP keeps the highest-rank factors: smaller than asked
    assert counts["lstm_compression"] >= 4.0
  elif models.get_method(method).doped:  # S starts at zero: only the structure counts yet
    assert counts["lstm_compression"] > 4.0
  elif method in ("lmf", "hmd", "small-dense"):
    assert counts["lstm_compression"] == pytest.approx(4.0, rel=0.25)


def test_dkp_options_change_only_their_fields():
  base = presets.get_preset("ptb-small")
  dkp = models.get_method("dkp")
  assert dkp.adapt(base) == base.replace(cmr=0.8)
  assert dkp.with_options() is dkp
  assert dkp.with_options(anneal_end=0.3).adapt(base) == base.replace(cmr=0.8, anneal_end=0.3)
  tuned = dkp.with_options(cmr=0.5, cmr_decay="cosine", block_switch=0.3, block_pooling="MAX")
  assert tuned.adapt(base) == base.replace(cmr_decay="cosine", block_switch=0.3,
                                           block_pooling="MAX")
  assert tuned.name == "dkp" and tuned.layer_options == dkp.layer_options
  assert models.get_method("doped-lmf").with_options(anneal_end=0.5).adapt(base) == base.replace(
      anneal_end=0.5)


@pytest.mark.parametrize("method, options, message", [
    ("dkp", {"colour": 1}, r"unknown DKP options \['colour'\]"),
    ("kp", {"anneal_end": 0.5}, r"kp has no co-matrix S to tune; the DKP options "
                                r"\(anneal_end \(--anneal-end\)\) apply to the doped methods"),
    ("dense", {"cmr": 0.5}, "dense has no co-matrix S"),
    ("doped-hmd", {"cmr_granularity": "row"},
     r"doped-hmd trains without co-matrix dropout; cmr_granularity \(--cmr-granularity\)"),
    ("dkp", {"cmr": 1.5}, r"cmr \(--cmr\), the initial co-matrix dropout rate, must be in"),
    ("dkp", {"cmr_granularity": "column"}, "unknown cmr_granularity .* 'column'; choose one of"),
    ("dkp", {"cmr_decay": "step"}, "unknown cmr_decay .* 'step'"),
    ("dkp", {"block_pooling": "SUM"}, "unknown block_pooling .* 'SUM'"),
    ("dkp", {"anneal_end": 0.0}, r"anneal_end \(--anneal-end\) must be a fraction in \(0, 1\]"),
    ("dkp", {"structure_fraction": 1.5}, "structure_fraction .* must be a fraction"),
    ("dkp", {"block_size": (0, 4)}, "block_size .* must be two positive integers"),
])
def test_bad_dkp_options_are_refused(method, options, message):
  with pytest.raises(ValueError, match=message):
    models.get_method(method).with_options(**options)


def test_pruned_lstm_counts_its_nonzeros():
  model = models.build_lm(50, RECIPE, "dense", stateful=False)
  layer = model.get_layer("lstm_0")
  sparsity = models.pruning_sparsity(layer, 10.0)
  for weight in layer.cell.weights:
    if len(weight.shape) == 2:
      values = weight.numpy()
      cut = np.quantile(np.abs(values), sparsity)
      weight.assign(np.where(np.abs(values) > cut, values, 0.0))
  report = training.lstm_compression(model, RECIPE, models.get_method("prune"))
  first = models.lstm_params(24, 12)
  second = models.lstm_params(24, 24)
  assert report["lstm_params"] == pytest.approx(first / 10 + second, rel=0.02)


def test_layer_options_reach_the_layer():
  dkp = models.get_method("dkp")
  model = models.build_lm(50, RECIPE, dkp.with_options(block_size=[1, 1]), 4.0, stateful=False)
  assert model.get_layer("lstm_0").cell.block_size == (1, 1)
  model = models.build_lm(50, RECIPE, dkp, 4.0, stateful=False)
  assert model.get_layer("lstm_1").cell.cmr_granularity == "row"
  model = models.build_lm(50, RECIPE, dkp.with_options(cmr_granularity="block",
                                                       structure_fraction=0.25),
                          4.0, stateful=False)
  assert model.get_layer("lstm_1").cell.cmr_granularity == "block"
  assert model.get_layer("lstm_1").cell.structure_fraction == 0.25


def test_sgd_recipe_preconditions_every_structure_it_builds():
  medium = presets.get_preset("ptb-medium")
  assert medium.precondition_factors and medium.optimizer == "sgd"
  recipe = RECIPE.replace(precondition_factors=True, compress_output=True)
  for method in ("dkp", "lmf", "doped-hmd"):
    model = models.build_lm(50, recipe, method, 4.0, stateful=False)
    assert model.get_layer("lstm_1").cell.precondition_factors
    assert model.get_layer("softmax").precondition_factors
  assert not models.build_lm(50, RECIPE, "kp", 4.0, stateful=False).get_layer(
      "lstm_0").cell.precondition_factors


def test_recipe_to_dict_has_every_field():
  small = presets.get_preset("ptb-small")
  assert small.to_dict()["precondition_factors"] is False
  assert presets.Recipe(**small.to_dict()) == small
