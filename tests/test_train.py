"""`pipelines.train`: run directories, resume, logs, stateful evaluation, the CLI's errors."""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras.compression import kept_blocks

from pipelines import models
from pipelines import presets
from pipelines import train
from pipelines import training

TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=3, optimizer="adam", learning_rate=3e-3, dropout=0.2,
                      corpus_tokens=6000, anneal_updates=4)


@pytest.fixture(name="tiny")
def _tiny(monkeypatch):
  monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
  return TINY


class Interrupt(keras.callbacks.Callback):
  """Kills training at the end of ``epoch`` (after the epoch's checkpoint)."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch == self.epoch:
      raise KeyboardInterrupt("simulated kill")


class InterruptAfterTraining(keras.callbacks.Callback):
  """Kills the run once training ends, before the model is evaluated and saved."""

  def on_train_end(self, logs=None):
    raise KeyboardInterrupt("simulated kill after the last epoch")


class EpochCounter(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.epochs = 0

  def on_epoch_begin(self, epoch, logs=None):
    self.epochs += 1


def test_a_run_killed_after_training_resumes_without_retraining(tiny, tmp_path):
  options = dict(preset="tiny", method="dkp", compression=4.0, verbose=0)
  whole = training.train_run(str(tmp_path / "whole"), **options)
  with pytest.raises(KeyboardInterrupt):
    training.train_run(str(tmp_path / "killed"), callbacks=[InterruptAfterTraining()], **options)
  assert not (tmp_path / "killed" / "model.keras").exists()
  counter = EpochCounter()
  resumed = training.train_run(str(tmp_path / "killed"), resume=True, callbacks=[counter],
                               **options)
  assert counter.epochs == 0  # the trained weights were restored, not trained again
  assert resumed["test_perplexity"] == pytest.approx(whole["test_perplexity"], rel=1e-6)
  assert len(resumed["history"]["loss"]) == TINY.epochs
  assert not (tmp_path / "killed" / "backup").exists()


def test_resumed_run_equals_uninterrupted(tiny, tmp_path):
  options = dict(preset="tiny", method="dkp", compression=4.0, verbose=0)
  whole = training.train_run(str(tmp_path / "whole"), **options)
  with pytest.raises(KeyboardInterrupt):
    training.train_run(str(tmp_path / "killed"), callbacks=[Interrupt(1)], **options)
  assert not (tmp_path / "killed" / "model.keras").exists()
  clock = json.loads((tmp_path / "killed" / training.CLOCK_FILE).read_text())
  assert clock["epochs_done"] == 2 and clock["train_seconds"] > 0
  resumed = training.train_run(str(tmp_path / "killed"), resume=True, **options)
  # Training time adds up over the kill: the killed leg's seconds are kept.
  assert whole["earlier_train_seconds"] == 0.0
  assert resumed["earlier_train_seconds"] == pytest.approx(clock["train_seconds"])
  assert resumed["train_seconds"] > clock["train_seconds"]
  assert not (tmp_path / "killed" / training.CLOCK_FILE).exists()
  # Dropout, CMR draws, annealing masks, optimizer and LSTM states all continue.
  assert resumed["test_perplexity"] == pytest.approx(whole["test_perplexity"], rel=1e-6)
  assert resumed["valid_perplexity"] == pytest.approx(whole["valid_perplexity"], rel=1e-6)
  # The whole run's history survives the kill: every epoch's, as the uninterrupted run's.
  assert resumed["history"].keys() == whole["history"].keys()
  for key, values in whole["history"].items():
    assert len(values) == TINY.epochs
    assert resumed["history"][key] == pytest.approx(values, rel=1e-6), key
  saved = json.loads((tmp_path / "killed" / "metrics.json").read_text())
  assert saved["history"] == resumed["history"]
  # A finished run resumes to its metrics without training again.
  again = training.train_run(str(tmp_path / "killed"), resume=True, **options)
  assert again["test_perplexity"] == resumed["test_perplexity"]


def test_run_directory_logs_and_metrics(tiny, tmp_path):
  out = tmp_path / "run"
  metrics = training.train_run(str(out), "tiny", method="dkp", compression=4.0, verbose=0)
  history = metrics["history"]
  for key in ("loss", "perplexity", "val_perplexity", "sparsity/lstm_0", "cmr_rate", "lr"):
    assert len(history[key]) == TINY.epochs, key
  assert history["cmr_rate"][0] > 0 and history["cmr_rate"][-1] == 0  # decays with annealing
  assert history["sparsity/lstm_0"][-1] > 0.5
  assert metrics["lstm_compression"] == pytest.approx(4.0, rel=0.1)
  events = [f for _, _, files in os.walk(out / "logs") for f in files if "tfevents" in f]
  assert events, "no TensorBoard event files"
  assert not (out / "backup").exists()  # removed once the run finished
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["test_perplexity"] == metrics["test_perplexity"]
  assert keras.models.load_model(out / "model.keras").count_params() > 0
  assert json.loads((out / "vocab.json").read_text())


def test_run_directory_refusals(tiny, tmp_path):
  out = tmp_path / "run"
  settings = {"a": 1}
  training.prepare_run_dir(str(out), settings)
  (out / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="already holds a run"):
    training.prepare_run_dir(str(out), settings)
  with pytest.raises(ValueError, match="other settings .*a differ"):
    training.prepare_run_dir(str(out), {"a": 2}, resume=True)
  with pytest.raises(ValueError, match="exclude"):
    training.prepare_run_dir(str(out), settings, resume=True, force=True)
  with pytest.raises(ValueError, match="nothing to resume"):
    training.prepare_run_dir(str(tmp_path / "new"), settings, resume=True)
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="is a file"):
    training.prepare_run_dir(str(tmp_path / "file"), settings)
  assert training.prepare_run_dir(str(out), settings, resume=True) is None  # unfinished
  training.prepare_run_dir(str(out), {"a": 3}, force=True)
  assert (out / "notes.txt").read_text() == "mine"  # --force only clears our files
  assert json.loads((out / "run.json").read_text()) == {"settings": {"a": 3}}


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--method", "dkp", "--compression", "0.5"], "compression"),
    (["--method", "dkp", "--compression", "1e6"], "dkp cannot compress the tiny model 1e+06x"),
    (["--method", "prune", "--compression", "1e9"], "prune cannot compress the tiny model 1e+09x"),
    (["--method", "small-dense", "--compression", "1e9"],
     "small-dense cannot compress the tiny model 1e+09x"),
    (["--method", "int8", "--compression", "25"],  # used to quantize to 4x silently
     "int8 cannot compress the tiny model 25x: int8 quantization compresses by 4x"),
    (["--cmr", "1.5"], "--cmr"),
    (["--method", "kp", "--cmr", "0.3"], "kp has no co-matrix S to tune"),
    (["--anneal-end", "2"], "anneal_end (--anneal-end) must be a fraction in (0, 1]"),
    (["--block-switch", "0.9", "--compression", "4"], "block_switch must be in (0, anneal_end=0.6]"),
    (["--data", "/nonexistent/ptb"], "PTB data directory not found"),
    (["--min-count", "2"], "--min-count and --max-vocab apply to a corpus of your own"),
    (["--text", "/nonexistent/t.txt"], "text file not found: /nonexistent/t.txt"),
    (["--text", "/nonexistent/t.txt", "--data", "/nonexistent/ptb"],
     "give one corpus, not --data and --text"),
    (["--data", "/nonexistent/ptb", "--split", "0.5,0.25,0.25"], "--split cuts a --text file"),
])
def test_cli_errors(tiny, tmp_path, capsys, argv, message):
  code = train.main(argv + ["--preset" if "--preset" not in argv else "--seed",
                            "tiny" if "--preset" not in argv else "0",
                            "--out", str(tmp_path / "run"), "--quiet"])
  assert code == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def _write_words(path, lines, seed=0, vocabulary=30):
  """``lines`` lines of 1-9 words drawn from ``vocabulary`` made-up words (Zipf-like)."""
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(vocabulary)]
  weights = 1.0 / np.arange(1, vocabulary + 1)
  text = "\n".join(" ".join(rng.choice(words, size=rng.integers(1, 10), p=weights / weights.sum()))
                   for _ in range(lines))
  path.write_text(text + "\n", encoding="utf-8")
  return path


def test_a_refused_run_leaves_nothing_behind(tiny, tmp_path, capsys):
  """Refused after reading the corpus, before the run directory: a fixed rerun needs no --force."""
  short = tmp_path / "short"
  short.mkdir()
  _write_words(short / "ptb.train.txt", 200)
  _write_words(short / "ptb.test.txt", 200, seed=1)
  (short / "ptb.valid.txt").write_text("w0 w1\n")
  out = tmp_path / "run"
  for argv, message in (
      (["--method", "small-dense", "--compression", "1e9"],
       "small-dense cannot compress the tiny model 1e+09x: compression 1000000000.0 leaves 0 "
       "parameters for the LSTM stack"),
      (["--data", str(short), "--min-count", "1", "--compression", "4"],
       "the valid split has 3 tokens, too few for one batch of the tiny preset")):
    assert train.main(argv + ["--preset", "tiny", "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
  assert train.main(["--preset", "tiny", "--method", "small-dense", "--compression", "4",
                     "--epochs", "1", "--out", str(out), "--quiet"]) == 0
  assert json.loads((out / "metrics.json").read_text())["lstm_compression"] >= 4.0


def test_cli_trains_on_a_users_own_text(tiny, tmp_path, capsys):
  text = _write_words(tmp_path / "my notes.md", 400, vocabulary=60)
  out = tmp_path / "run"
  assert train.main(["--text", str(text), "--split", "0.8,0.1,0.1", "--min-count", "3",
                     "--max-vocab", "40", "--preset", "tiny", "--method", "lmf",
                     "--compression", "4", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
  vocab = json.loads((out / "vocab.json").read_text())
  assert vocab["options"] == {"min_count": 3, "max_vocab": 40}
  assert vocab["unk_token"] == "<unk>" and len(vocab["tokens"]) <= 40
  settings = json.loads((out / "run.json").read_text())["settings"]
  assert settings["vocabulary"] == {"min_count": 3, "max_vocab": 40}
  assert settings["data"] == {"text": str(text), "split": [0.8, 0.1, 0.1]}
  assert settings["vocab_size"] == len(vocab["tokens"])
  assert np.isfinite(json.loads((out / "metrics.json").read_text())["test_perplexity"])
  # Three files with any names; words of valid/test unseen in train are no error.
  (tmp_path / "v.txt").write_text("w1 w2 never-seen\n" * 20)
  (tmp_path / "t.txt").write_text("w3 also-new w1\n" * 20)
  corpus = training.load_corpus(text_files=(str(text), str(tmp_path / "v.txt"),
                                         str(tmp_path / "t.txt")))
  assert corpus.vocab.decode(corpus.valid[:3]) == ["w1", "w2", "<unk>"]


def test_cli_help_shows_every_flag_and_default(capsys):
  parser = train.build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    if action.help == argparse.SUPPRESS:
      continue
    assert action.help, action.option_strings
    if action.default not in (None, False, argparse.SUPPRESS):
      assert "(default: " in action.help, action.option_strings
  with pytest.raises(SystemExit):
    train.main(["--help"])
  shown = " ".join(capsys.readouterr().out.split())  # unwrapped
  assert "--method" in shown and not re.search(r"--structure(?![-\w])", shown)  # old name hidden
  assert "--structure-fraction F" in shown and "--block-size RxC" in shown
  assert "(default: dkp)" in shown and "(default: 25, or the method's only factor)" in shown
  assert "contiguous spans" in shown


def test_structure_is_a_deprecated_alias_of_method(capsys):
  assert train.parse_args(["--structure", "lmf"]).method == "lmf"
  assert "--structure is now --method" in capsys.readouterr().err
  assert train.parse_args([]).method == "dkp"
  assert train.parse_args(["--method", "kp"]).method == "kp"


def test_a_run_recorded_before_a_recipe_field_existed_resumes(tmp_path):
  settings = {"preset": "ptb-small", "recipe": presets.get_preset("ptb-small").to_dict(),
              "method": "dkp"}
  out = tmp_path / "run"
  older = {**settings, "recipe": dict(settings["recipe"])}
  for field in ("precondition_factors", "block_switch", "block_pooling"):
    del older["recipe"][field]
  training.prepare_run_dir(str(out), older)
  assert training.prepare_run_dir(str(out), settings, resume=True) is None
  with pytest.raises(ValueError, match=r"other settings \(recipe differ\)"):
    training.prepare_run_dir(str(out), {**settings, "recipe": {**settings["recipe"],
                                                            "block_pooling": "MAX"}},
                          resume=True)


def test_dkp_options_are_recorded_and_reach_the_model(tiny, tmp_path):
  out = tmp_path / "run"
  argv = ["--preset", "tiny", "--compression", "4", "--out", str(out), "--quiet",
          "--block-size", "1x1", "--cmr-granularity", "matrix", "--anneal-end", "0.5",
          "--block-pooling", "MAX"]
  assert train.main(argv) == 0
  settings = json.loads((out / "run.json").read_text())["settings"]
  assert settings["method"] == "dkp"
  assert settings["layer_options"] == {"block_size": [1, 1], "cmr_granularity": "matrix"}
  assert (settings["recipe"]["anneal_end"], settings["recipe"]["block_pooling"],
          settings["recipe"]["cmr"]) == (0.5, "MAX", 0.8)
  cell = dkp.load_model(str(out / "model.keras")).get_layer("lstm_0").cell
  assert (cell.block_size, cell.cmr_granularity) == ((1, 1), "matrix")
  assert train.main(argv + ["--resume"]) == 0  # the same options: the finished run
  assert train.main(argv[:-2] + ["--resume"]) == 2  # others: refused


def test_cli_refuses_an_existing_run(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  out.mkdir()
  (out / "run.json").write_text('{"settings": {}}')
  assert train.main(["--preset", "tiny", "--compression", "4", "--out", str(out), "--quiet"]) == 2
  assert "already holds a run" in capsys.readouterr().err
  assert (out / "run.json").read_text() == '{"settings": {}}'


def test_evaluation_carries_state_across_windows(tiny):
  """Windows of 8 with carried states score a stream exactly as one long window does."""
  corpus = training.load_corpus(None, TINY)
  model = models.build_lm(corpus.vocab_size, TINY, "dkp", 4.0, stateful=False)
  ids = corpus.train[:8 * 8 * 5 + 1]
  windowed = training.evaluate_perplexity(model, ids, batch_size=1, num_steps=8)
  long = models.build_lm(corpus.vocab_size, TINY.replace(num_steps=8 * 8 * 5), "dkp", 4.0,
                         stateful=False)
  long.set_weights(model.get_weights())
  logits = long.predict(ids[None, :-1], verbose=0)[0].astype(np.float64)
  logits -= logits.max(axis=-1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
  expected = np.exp(-np.mean(log_probs[np.arange(len(ids) - 1), ids[1:]]))
  assert windowed == pytest.approx(expected, rel=1e-4)


DISTRIBUTED = textwrap.dedent("""
    import json, sys
    import dkp_keras
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pipelines import models, presets, training
    recipe = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                            epochs=2, optimizer="adam", learning_rate=3e-3, carry_state=False,
                            corpus_tokens=6000)
    corpus = training.load_corpus(None, recipe)
    out = {}
    nocmr = models.get_method("dkp").with_options(cmr=0.0)
    methods = {"dense": ("dense", recipe), "dkp-nocmr": (nocmr, nocmr.adapt(recipe)),
               "dkp": ("dkp", recipe)}
    for label, (method, method_recipe) in methods.items():
      for name in ("default", "mirrored"):
        strategy = training.make_strategy(name)
        result = training.fit_lm(corpus, method_recipe, method, 4.0, strategy, verbose=0)
        out[f"{label}/{name}"] = [strategy.num_replicas_in_sync, result["valid_perplexity"]]
    print("RESULT" + json.dumps(out))
""")


def test_mirrored_strategy_matches_one_device():
  """Two logical CPU devices (a fresh process: devices are fixed at TF start)."""
  done = subprocess.run([sys.executable, "-c", DISTRIBUTED], capture_output=True, text=True,
                        timeout=600, check=False)
  lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
  assert lines, done.stderr[-3000:]
  result = json.loads(lines[0][len("RESULT"):])
  for method in ("dense", "dkp-nocmr"):
    single, mirrored = result[f"{method}/default"], result[f"{method}/mirrored"]
    assert (single[0], mirrored[0]) == (1, 2)
    assert mirrored[1] == pytest.approx(single[1], rel=1e-3), method
  # With CMR each replica draws its own masks: it trains, to a similar result.
  assert result["dkp/mirrored"][1] == pytest.approx(result["dkp/default"][1], rel=0.2)


def test_cli_trains_into_the_run_directory(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  assert train.main(["--preset", "tiny", "--method", "lmf", "--compression", "4",
                     "--epochs", "1", "--out", str(out), "--quiet",
                     "--deployed-perplexity"]) == 0
  printed = capsys.readouterr().out
  assert "lmf (tiny): LSTM" in printed and "test" in printed
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["epochs"] == 1 and metrics["method"] == "lmf"
  assert metrics["target_warning"] is None
  # The float32 file scores the test split as Keras does; int8 close to it.
  deployed = metrics["deployed_test_perplexity"]
  assert deployed["float32"] == pytest.approx(metrics["test_perplexity"], rel=1e-4)
  assert deployed["dynamic-int8"] == pytest.approx(metrics["test_perplexity"], rel=0.05)
  assert "test perplexity of the dynamic-int8 .tflite" in printed
  settings = json.loads((out / "run.json").read_text())["settings"]
  assert settings["recipe"]["epochs"] == 1 and settings["data"] == "embedded"


def test_from_model_checks(tmp_path):
  with pytest.raises(ValueError, match="--from-model applies to the quantization methods"):
    training.train_run(str(tmp_path / "a"), "demo", method="dkp", base_model="x.keras")
  not_a_model = tmp_path / "model.keras"
  not_a_model.write_text("weights")
  with pytest.raises(ValueError, match="not a readable Keras model"):
    training.train_run(str(tmp_path / "b"), "demo", method="int8", base_model=str(not_a_model))
  assert not_a_model.read_text() == "weights"
  recipe = presets.get_preset("demo")
  narrow = models.build_lm(training.load_corpus(None, recipe).vocab_size, recipe.replace(units=8),
                           "dense", stateful=False)
  narrow.save(str(tmp_path / "narrow.keras"))
  with pytest.raises(ValueError, match="not the demo preset's dense LSTM stack"):
    training.train_run(str(tmp_path / "c"), "demo", method="int4",
                    base_model=str(tmp_path / "narrow.keras"))


def test_anneal_end_option_trains_with_its_window(tiny):
  corpus = training.load_corpus(None, TINY)
  method = models.get_method("dkp").with_options(anneal_end=0.3)
  result = training.fit_lm(corpus, method.adapt(TINY.replace(epochs=1)), method, 4.0, verbose=0)
  # On the mask update nearest 30% of the steps: S reaches its target on the last one.
  frequency = result["steps_per_epoch"] // TINY.anneal_updates
  assert result["annealing_end_step"] % frequency == 0
  assert abs(result["annealing_end_step"] - result["steps_per_epoch"] * 0.3) <= frequency / 2
  for owner in dkp.traversal.find_doped_owners(result["model"]):
    kept = sum(np.count_nonzero(m.doping_values()) for m in owner.doped_matrices.values())
    assert kept <= sum(m.plan.doping_max_nnz for m in owner.doped_matrices.values())
  assert result["history"]["cmr_rate"][-1] == 0.0  # CMR ends with the annealing window


def test_block_switch_option_anneals_1x1_then_ends_in_1x4_blocks(tiny):
  corpus = training.load_corpus(None, TINY)
  method = models.get_method("dkp").with_options(block_switch=0.3)
  result = training.fit_lm(corpus, method.adapt(TINY.replace(epochs=2)), method, 4.0, verbose=0)
  steps = result["steps_per_epoch"] * 2
  frequency = result["steps_per_epoch"] // TINY.anneal_updates
  assert result["block_switch_step"] % frequency == 0
  assert abs(result["block_switch_step"] - 0.3 * steps) <= frequency / 2
  for owner in dkp.traversal.find_doped_owners(result["model"]):
    assert owner.block_size == (4, 1)
    kept = budget = 0  # tfmot prunes a layer's S to one sparsity: the budget is the layer's
    for matrix in owner.doped_matrices.values():
      values = matrix.doping_values()
      blocks = kept_blocks(values, (4, 1))
      assert np.count_nonzero(values) == 4 * blocks  # every kept 1x4 block is whole
      kept += 4 * blocks
      budget += matrix.plan.doping_max_nnz
    assert 0 < kept <= budget


def test_block_switch_outside_the_annealing_window_is_refused(tiny):
  corpus = training.load_corpus(None, TINY)
  with pytest.raises(ValueError, match="block_switch must be in"):
    training.fit_lm(corpus, TINY.replace(epochs=1, block_switch=0.7), "dkp", 4.0, verbose=0)


class PoolingProbe(keras.callbacks.Callback):
  def on_train_begin(self, logs=None):
    self.pooling = {dkp.compat.pruning_block_pooling(w)
                    for w in dkp.traversal.pruning_wrappers(self.model)}


def test_max_pooling_option_reaches_the_annealing_wrappers(tiny):
  probe = PoolingProbe()
  corpus = training.load_corpus(None, TINY)
  method = models.get_method("dkp").with_options(block_pooling="MAX")
  training.fit_lm(corpus, method.adapt(TINY.replace(epochs=1)), method, 4.0, verbose=0,
               callbacks=[probe])
  assert probe.pooling == {"MAX"}


MULTIWORKER = presets.Recipe("tiny-mw", layers=1, units=16, embedding=8, num_steps=8,
                             batch_size=8, epochs=2, optimizer="adam", learning_rate=3e-3,
                             carry_state=False, corpus_tokens=6000)

WORKER = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CONFIG"] = sys.argv[1]
    import tf_keras as keras
    from pipelines import presets, training
    from tests import test_train
    presets.PRESETS["tiny-mw"] = test_train.MULTIWORKER
    kill = sys.argv[3] == "kill"
    try:
      metrics = training.train_run(sys.argv[2], "tiny-mw", method="dense", strategy="multiworker",
                                resume=not kill, verbose=0,
                                callbacks=[test_train.Interrupt(0)] if kill else [])
    except KeyboardInterrupt:
      print("KILLED")
    else:
      print("RESULT" + json.dumps(metrics))
""")


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for sock in sockets:
    sock.bind(("127.0.0.1", 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()
  return ports


def _run_workers(out, mode, timeout=300):
  """Two worker processes on loopback, one TF_CONFIG each; their stdouts."""
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  workers = [subprocess.Popen(
      [sys.executable, "-c", WORKER,
       json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
       str(out), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
             for index in range(2)]
  try:
    done = [worker.communicate(timeout=timeout) for worker in workers]
  finally:
    for worker in workers:
      worker.kill()  # ours, if still running after a timeout
  return [stdout + stderr[-3000:] for stdout, stderr in done]


def test_multiworker_trains_checkpoints_resumes_and_matches_one_worker(tmp_path, monkeypatch):
  """Two workers, killed after epoch 1 and resumed, reach one worker's loss (rel 1e-4)."""
  out = tmp_path / "run"
  for output in _run_workers(out, "kill"):
    assert "KILLED" in output, output
  assert (out / "backup").is_dir() and not (out / "model.keras").exists()  # a checkpoint
  assert json.loads((out / training.CLOCK_FILE).read_text())["epochs_done"] == 1
  outputs = _run_workers(out, "resume")
  results = []
  for output in outputs:
    lines = [line for line in output.splitlines() if line.startswith("RESULT")]
    assert lines, output
    results.append(json.loads(lines[0][len("RESULT"):]))
  # The chief (worker 0) wrote the run directory; worker 1 only read it.
  assert json.loads((out / "metrics.json").read_text()) == results[0]
  assert sorted(os.listdir(out)) == ["logs", "metrics.json", "model.keras", "run.json",
                                     "vocab.json"]
  monkeypatch.setitem(presets.PRESETS, "tiny-mw", MULTIWORKER)
  single = training.train_run(str(tmp_path / "single"), "tiny-mw", method="dense", verbose=0)
  for result in results:
    assert len(result["history"]["loss"]) == MULTIWORKER.epochs
    assert result["history"]["loss"] == pytest.approx(single["history"]["loss"], rel=1e-4)
    assert result["valid_perplexity"] == pytest.approx(single["valid_perplexity"], rel=1e-4)
