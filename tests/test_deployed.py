"""The deployed file's perplexity: LiteRT over a whole split agrees with Keras'."""

import numpy as np
import pytest
import tf_keras as keras

import dkp_keras as dkp
from helpers import randomize_doping
from pipelines import choices
from pipelines import conversion
from pipelines import deployed
from pipelines import training

VOCAB, BATCH, STEPS = 40, 3, 5


def tiny_lm():
  tokens = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(VOCAB, 12)(tokens)
  x = dkp.DKPLSTM(16, compression=2, return_sequences=True)(x)
  x = keras.layers.LSTM(8, return_sequences=True)(x)
  model = keras.Model(tokens, dkp.DopedDense(VOCAB, compression=2)(x))
  for owner in dkp.traversal.find_doped_owners(model):
    randomize_doping(owner)
  return model


def test_float_file_scores_like_keras_and_int8_close(tmp_path):
  model = tiny_lm()
  ids = np.random.default_rng(0).integers(0, VOCAB, size=200)
  keras_ppl = training.evaluate_perplexity(model, ids, BATCH, STEPS)
  results = deployed.deployed_perplexities(model, ids, BATCH, STEPS)
  assert set(results) == set(choices.DEPLOYED_EXPORTS)
  assert results["float32"]["perplexity"] == pytest.approx(keras_ppl, rel=1e-5)
  assert results["dynamic-int8"]["perplexity"] == pytest.approx(keras_ppl, rel=0.05)
  assert results["dynamic-int8"]["bytes"] < results["float32"]["bytes"]


def test_refuses_a_file_of_another_batch_or_mode(tmp_path):
  model = tiny_lm()
  path = str(tmp_path / "seq.tflite")
  conversion.convert(model, path, mode="sequence", batch_size=BATCH, verify_samples=0)
  with pytest.raises(ValueError, match="--mode step --batch 3"):
    deployed.tflite_perplexity(path, np.arange(50) % VOCAB, BATCH, STEPS)
  with pytest.raises(ValueError, match="unknown exports"):
    deployed.deployed_perplexities(model, np.arange(50) % VOCAB, BATCH, STEPS, ["int4"])
