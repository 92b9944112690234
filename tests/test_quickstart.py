"""The README's first command: a tiny DKP LSTM LM learns the embedded corpus and meets its factor."""

import pytest
import tf_keras as keras

from pipelines import quickstart
from pipelines import training


def test_tiny_dkp_lm_learns_well_below_unigram(tmp_path):
  out = tmp_path / "lm.keras"
  result = training.train_small_dkp_lm(epochs=2, compression=10, tokens=40_000, batch=16,
                                         steps=20, out=str(out), verbose=0)
  # The corpus' unigram perplexity is ~55 and its best achievable ~8.
  assert result["perplexity"] < 0.5 * result["unigram_perplexity"]
  assert result["perplexity"] > result["optimal_perplexity"] * 0.95
  report = result["report"].set_index("layer")
  assert report.loc["lstm_0", "compression"] >= 10
  assert report.loc["softmax", "compression"] >= 5
  assert keras.models.load_model(out).count_params() == result["model"].count_params()


def test_main_rejects_an_impossible_compression(capsys):
  with pytest.raises(SystemExit) as exit_:
    quickstart.main(["--compression", "0.5"])
  assert exit_.value.code == 2
  assert "compression" in capsys.readouterr().err
