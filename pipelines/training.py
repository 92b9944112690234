"""Training a (compressed) LSTM language model: the work behind ``python -m pipelines.train``.

`train_run` is the command's job: the corpus (`load_corpus`: the user's text,
PTB, a packaged corpus or the embedded Markov corpus), checked before the run
directory is made (`check_run`, `prepare_run_dir`). The directory gets
``run.json`` (the settings), ``vocab.json``, TensorBoard logs (``logs/``: loss,
perplexity, validation perplexity, S sparsity per layer, CMR rate), a
checkpoint per epoch (``backup/``, Keras `BackupAndRestore`: a resumed run
continues to the same result, history included), and at the end
``model.keras`` and ``metrics.json``. `fit_lm` trains one model; perplexity
is per word, <eos> included, with LSTM states carried across batches
(`evaluate_perplexity`). `train_small_dkp_lm` is ``python -m
pipelines.quickstart``'s job.

One training loop for both Kerases: ``keras="3"`` (``--keras 3``) builds and
trains the model with Keras 3 on ``KERAS_BACKEND``'s backend; what differs is a
`frontends.Frontend`. This module imports no Keras itself, so a Keras 3 run
never imports tf_keras or tfmot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from dkp_keras.compression_counts import missed_target_warning
from pipelines import callback_logic
from pipelines import choices
from pipelines import corpora
from pipelines import data
from pipelines import frontends
from pipelines import models
from pipelines import presets
from tflite_ops import files

# Training seconds and every finished epoch's logs so far, for resumed runs.
CLOCK_FILE = "train_clock.json"
RUN_FILES = ("run.json", "vocab.json", "model.keras", "metrics.json", "backup", "logs",
             CLOCK_FILE)


def load_corpus(data_dir=None, recipe=None, seed=0, text_files=None, text_file=None, split=None,
                min_count=None, max_vocab=None, corpus_name=None):
  """The corpus a run trains on: the user's, else the embedded one sized by ``recipe``.

  Args:
    data_dir: a directory with ``ptb.{train,valid,test}.txt[.gz]`` (`data.read_ptb`).
    recipe: the recipe whose ``corpus_tokens`` size the embedded corpus.
    seed: the embedded corpus' seed.
    text_files: (train, valid, test) UTF-8 text files with any names.
    text_file: one UTF-8 text file, cut into contiguous spans by ``split``.
    split: (train, valid, test) fractions for ``text_file`` (default `choices.TEXT_SPLIT`).
    min_count, max_vocab: vocabulary options (`data.build_vocabulary`); words
      outside the vocabulary map to ``<unk>``. Plain text files always get an
      open vocabulary; PTB-format data only with an option; a packaged corpus its
      reader's defaults unless given.
    corpus_name: the name of a corpus that ships with a system package
      (`corpora.CORPORA`, e.g. ``"python-docs"``).
  """
  sources = [name for name, given in (("--data", data_dir), ("--corpus", corpus_name),
                                      ("--train/--valid/--test", text_files),
                                      ("--text", text_file)) if given]
  if len(sources) > 1:
    raise ValueError(f"give one corpus, not {' and '.join(sources)}")
  if split is not None and not text_file:
    raise ValueError("--split cuts a --text file; give --text FILE with it")
  if data_dir:
    return data.read_ptb(data_dir, min_count, max_vocab)
  if corpus_name:
    options = {"min_count": min_count, "max_vocab": max_vocab}
    return corpora.get_reader(corpus_name)(**{k: v for k, v in options.items() if v is not None})
  if text_files:
    return data.read_text_files(*text_files, min_count=min_count, max_vocab=max_vocab)
  if text_file:
    return data.split_text_file(text_file, split or choices.TEXT_SPLIT, min_count, max_vocab)
  if min_count is not None or max_vocab is not None:
    raise ValueError("--min-count and --max-vocab apply to a corpus of your own (--data, "
                     "--corpus, --train/--valid/--test or --text), not to the embedded one")
  tokens = (recipe or presets.get_preset("demo")).corpus_tokens
  return data.generate_corpus(num_tokens=tokens, seed=seed)


def make_strategy(name="default"):
  """The `tf.distribute` strategy called ``name`` (multiworker reads ``TF_CONFIG``)."""
  return frontends.get_frontend("2").make_strategy(name)


def evaluate_perplexity(model, ids, batch_size, num_steps):
  """Per-word perplexity of ``ids``: states carried across consecutive windows.

  The stream is cut into ``batch_size`` rows read ``num_steps`` at a time (the
  tail that fills no row is dropped, as Zaremba et al. do); every scored token
  has the same weight. ``model`` is a tf_keras or Keras 3 model.
  """
  front = frontends.of_model(model)
  x, y = data.batchify_arrays(ids, batch_size, num_steps)
  twin = models.stateful_twin(front.strip(model), batch_size)
  twin.compile(loss=front.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  front.reset_states(twin)
  return float(np.exp(twin.evaluate(x, y, batch_size=batch_size, verbose=0)))


def _block_switch_step(recipe, steps_per_epoch, end_step, frequency):
  """The annealing step where S leaves 1x1 blocks (``recipe.block_switch``), or None.

  On a mask update, so the first mask in the layers' blocks comes with the switch.
  """
  if recipe.block_switch is None:
    return None
  _check_block_switch(recipe)
  return min(_on_mask_update(steps_per_epoch * recipe.epochs * recipe.block_switch, frequency),
             end_step)


def _check_block_switch(recipe):
  if recipe.block_switch is not None and not 0.0 < recipe.block_switch <= recipe.anneal_end:
    raise ValueError(f"block_switch must be in (0, anneal_end={recipe.anneal_end}], "
                     f"got {recipe.block_switch}")


def _on_mask_update(step, frequency):
  """The mask-update step (a multiple of ``frequency``, at least one) nearest ``step``."""
  return max(1, round(step / frequency)) * frequency


def _optimizer_class(recipe, front=None):
  """The Keras optimizer ``recipe.optimizer`` names; a clear error for another name."""
  keras = (front or frontends.get_frontend()).keras
  optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}
  if recipe.optimizer not in optimizers:
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose one of {list(optimizers)}")
  return optimizers[recipe.optimizer]


def _compile(model, recipe):
  front = frontends.of_model(model)
  keras = front.keras
  optimizer = _optimizer_class(recipe, front)(recipe.learning_rate_at(0),
                                              global_clipnorm=recipe.optimizer_clip_norm)
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def check_run(corpus, recipe, method, compression, front=None):
  """Refuses what `fit_lm` would refuse later, before anything is written.

  The factor (`models.check_factor_fits`), the recipe's schedule and
  optimizer, and a batch of every split.

  Args:
    corpus: the `data.Corpus` to train on.
    recipe: the recipe, after the method's and the user's changes.
    method: a `models.Method`.
    compression: the factor asked for.
    front: the `frontends.Frontend` that will train it (default: tf_keras).
  """
  models.check_factor_fits(corpus.vocab_size, recipe, method, compression, front)
  _check_block_switch(recipe)
  _optimizer_class(recipe, front)
  for split in ("train", "valid", "test"):
    ids = getattr(corpus, split)
    if data.num_batches(ids.size, recipe.batch_size, recipe.num_steps) == 0:
      raise ValueError(
          f"the {split} split has {ids.size} tokens, too few for one batch of the "
          f"{recipe.name} preset (batch {recipe.batch_size} x {recipe.num_steps} steps needs "
          f"{recipe.batch_size * (recipe.num_steps + 1)}); give a longer corpus or a preset "
          f"with smaller batches")


def fit_lm(corpus, recipe, method="dkp", compression=25.0, strategy=None, seed=0,
           run_dir=None, verbose=2, callbacks=(), initial_model=None, front=None):
  """Builds and trains one language model; returns a dict with the finalized model.

  ``recipe`` is used as given: a method's recipe changes (``method.adapt``:
  e.g. the default ``dkp``'s CMR rate, or the schedule options of
  ``method.with_options``) are the caller's to apply (`train_run` does); the
  method's layer options reach the layers here.

  ``initial_model`` (a callable returning a stateless model, called under the
  strategy) replaces the freshly built one: `pipelines.compress` fine-tunes
  its projected model this way, S's mask fixed at its target from the start.

  With ``run_dir``, checkpoints go to ``run_dir/backup`` (a later call with the
  same arguments resumes from the last finished epoch) and TensorBoard logs to
  ``run_dir/logs``. ``callbacks`` are appended (tests use them to interrupt).
  ``front`` (a `frontends.Frontend`, default tf_keras) is the Keras to build and
  train with.
  """
  front = front or frontends.get_frontend()
  keras = front.keras
  method = models.get_method(method) if isinstance(method, str) else method
  models.check_frontend(method, front)
  strategy = strategy or front.make_strategy()
  # Stateful RNNs cannot run under tf.distribute, nor carry states on Keras 3's jax
  # backend: there every window starts from zero states (noted in the result).
  carry_state = (recipe.carry_state and strategy.num_replicas_in_sync == 1
                 and front.carries_rnn_state())
  front.seed(seed)
  x, y = data.batchify_arrays(corpus.train, recipe.batch_size, recipe.num_steps)
  steps_per_epoch = len(x) // recipe.batch_size
  frequency = max(1, steps_per_epoch // recipe.anneal_updates)
  # On a mask update: tfmot updates masks only every `frequency` steps up to the end
  # step, so S would otherwise stop short of its target sparsity (and its budget).
  end_step = _on_mask_update(steps_per_epoch * recipe.epochs * recipe.anneal_end, frequency)
  block_switch_step = _block_switch_step(recipe, steps_per_epoch, end_step, frequency)
  with strategy.scope():
    if initial_model is None:
      model = models.build_lm(corpus.vocab_size, recipe, method, compression,
                              stateful=carry_state, front=front)
    else:
      model = initial_model()
      if carry_state:
        model = models.stateful_twin(model, recipe.batch_size)
    annealing = None  # the callback that anneals S (or prune's masks), if any
    if method.doped:
      model, annealing = front.annealing(model, end_step, frequency, block_switch_step,
                                         recipe.block_pooling, initial_model is not None)
    elif method.name == "prune":  # tf_keras only (models.check_frontend)
      model = models.prepare_for_pruning(model, compression, 0, end_step, frequency)
      annealing = front.dkp.SparsityAnnealing()
    _compile(model, recipe)
    front.make_random_generators(model)
  fit_callbacks = [keras.callbacks.LearningRateScheduler(recipe.learning_rate_at),
                   *front.epoch_callbacks(seed, carry_state)]
  if annealing is not None:
    fit_callbacks.append(annealing)
  cmr = co_matrix_dropout(method, recipe, front)
  if cmr is not None:
    fit_callbacks.append(cmr)
  fit_callbacks.append(front.callbacks.Perplexity(
      lambda model: evaluate_perplexity(model, corpus.valid, recipe.batch_size,
                                        recipe.num_steps)))
  if run_dir:
    # After SparsityAnnealing: the checkpoint holds the weights it re-masks at epoch end.
    # Kept after the last epoch (train_run removes it once the model is saved): a run
    # killed while evaluating resumes from its trained weights instead of retraining.
    fit_callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"),
                                                          delete_checkpoint=False))
    fit_callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                     update_freq="epoch"))
  # After BackupAndRestore: the seconds saved belong to a saved epoch.
  clock = front.callbacks.TrainClock(os.path.join(run_dir, CLOCK_FILE) if run_dir else None,
                     write=strategy.extended.should_checkpoint)
  fit_callbacks.append(clock)
  fit_callbacks.extend(callbacks)
  model.fit(x, y, batch_size=recipe.batch_size, epochs=recipe.epochs, shuffle=False,
            verbose=verbose, callbacks=fit_callbacks)
  train_seconds = clock.seconds()
  if annealing is not None:
    with strategy.scope():  # the final re-mask assigns mirrored variables
      model = front.dkp.finalize(model)
  if method.quantized:
    models.quantize_lstm_weights(model, bits=method.bits)
  _compile(model, recipe)
  result = {"model": model, "train_seconds": train_seconds,
            "earlier_train_seconds": clock.earlier_seconds, "carry_state": carry_state,
            "steps_per_epoch": steps_per_epoch, "annealing_end_step": end_step,
            "block_switch_step": block_switch_step,
            # Every epoch's, those of killed invocations of a resumed run included.
            "history": clock.history()}
  for split in ("valid", "test"):
    result[f"{split}_perplexity"] = evaluate_perplexity(
        model, getattr(corpus, split), recipe.batch_size, recipe.num_steps)
  return result


def co_matrix_dropout(method, recipe, front=None):
  """The co-matrix dropout callback ``method`` trains with on ``recipe``, or None (rate 0)."""
  if method.cmr and recipe.cmr > 0:
    front = front or frontends.get_frontend()
    return front.dkp.CoMatrixDropout(rate=recipe.cmr, decay=recipe.cmr_decay)
  return None


def lstm_compression(model, recipe, method, report=None):
  """Parameters, bytes and compression of the recurrent layers (`compression_report`).

  Every factor is against the recipe's dense LSTM stack, so a narrower
  ``small-dense`` stack counts as compressed; ``int8`` / ``int4`` count by bytes.
  ``report`` is the model's `compression_report` when the caller has it already.
  """
  if report is None:
    report = frontends.of_model(model).dkp.compression_report(model)
  names = {layer.name for layer in models.recurrent_layers(model)}
  rows = report[report["layer"].isin(names)]
  dense_params = models.dense_lstm_params(recipe)
  params, nbytes = int(rows["params"].sum()), int(rows["bytes"].sum())
  if method.quantized:
    nbytes = models.quantized_lstm_bytes(model, bits=method.bits)
  compression = dense_params * 4 / nbytes if method.quantized else dense_params / params
  return {"lstm_dense_params": dense_params, "lstm_params": params,
          "lstm_compression": compression, "lstm_bytes": nbytes,
          "lstm_byte_compression": dense_params * 4 / nbytes,
          "model_params": int(report["params"].iloc[-1]),
          "model_bytes": int(report["bytes"].iloc[-1]) - int(rows["bytes"].sum()) + nbytes}


def vocab_size_of(model):
  """The input vocabulary of an LM (its Embedding's, either Keras), or None."""
  embedding = frontends.of_model(model).keras.layers.Embedding
  for layer in model.layers:
    if isinstance(layer, embedding):
      return layer.input_dim
  return None


def load_base_model(model_path, corpus, recipe, method):
  """The trained dense LM at ``model_path`` that quantization ``method`` will round.

  It must be the recipe's dense LSTM stack over this corpus' vocabulary (so its
  factor is counted against the same dense stack).
  """
  tf_keras_front = frontends.get_frontend("2")
  keras = tf_keras_front.keras
  model = tf_keras_front.dkp.load_model(model_path)
  if vocab_size_of(model) != corpus.vocab_size:
    raise ValueError(f"vocabulary mismatch: {model_path} has {vocab_size_of(model)} words, "
                     f"the data {corpus.vocab_size}; give the --data it was trained on")
  lstms = models.recurrent_layers(model)
  plain = all(type(layer) is keras.layers.LSTM for layer in lstms)  # pylint: disable=unidiomatic-typecheck
  if not plain or [layer.units for layer in lstms] != [recipe.units] * recipe.layers:
    raise ValueError(f"{model_path} is not the {recipe.name} preset's dense LSTM stack "
                     f"({recipe.layers} x LSTM({recipe.units})); {method.name} quantizes that")
  return model


def quantize_trained(model, corpus, recipe, method):
  """`fit_lm`'s result for a quantization method applied to a trained dense ``model``."""
  models.quantize_lstm_weights(model, bits=method.bits)
  _compile(model, recipe)
  result = {"model": model, "train_seconds": 0.0, "carry_state": recipe.carry_state,
            "history": {}}
  for split in ("valid", "test"):
    result[f"{split}_perplexity"] = evaluate_perplexity(
        model, getattr(corpus, split), recipe.batch_size, recipe.num_steps)
  return result


def save_atomically(model, path):
  """Saves ``model`` beside ``path`` and renames it: no half-written model."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic_path(path) as tmp:
    model.save(tmp)


def _finished_metrics(out):
  """The metrics of the finished run in ``out``, or None."""
  metrics = os.path.join(out, "metrics.json")
  return callback_logic.read_run_file(metrics) if os.path.exists(metrics) else None


def _with_recipe_defaults(settings):
  """``settings`` from a run.json, its recipe completed with the fields added since.

  A field is added to `presets.Recipe` with a default that keeps the old
  behaviour, so a run recorded before it existed ran with that default.
  """
  recipe = settings.get("recipe")
  if not isinstance(recipe, dict):
    return settings
  defaults = {field.name: field.default for field in dataclasses.fields(presets.Recipe)
              if field.default is not dataclasses.MISSING}
  return {**settings, "recipe": {**defaults, **recipe}}


def prepare_run_dir(out, settings=None, resume=False, force=False, run_files=RUN_FILES):
  """Creates or checks the run directory. Returns the finished metrics when there are any.

  A directory holding another run is refused unless ``resume`` (same settings,
  continue) or ``force`` (start over: our run files are deleted, others kept).

  Args:
    out: the run directory.
    settings: what the run is (written to ``run.json``, compared on resume);
      None for a job that cannot resume (no ``run.json``).
    resume: continue the run in ``out`` (its settings must equal ``settings``).
    force: start over, deleting ``run_files`` in ``out``.
    run_files: the names the job writes in ``out`` (files or directories).
  """
  if resume and (force or settings is None):
    raise ValueError("--resume and --force exclude each other" if force else
                     "this job cannot resume; pass --force to start over")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f"{out} is a file; --out must be a run directory")
  run_json = os.path.join(out, "run.json")
  existing = os.path.isdir(out) and bool(os.listdir(out))
  if existing and force:
    for name in run_files:
      path = os.path.join(out, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
  elif existing and resume:
    if not os.path.exists(run_json):
      raise ValueError(f"{out} holds no run to resume (no run.json)")
    previous = _with_recipe_defaults(callback_logic.read_run_file(run_json)["settings"])
    if previous != settings:
      changed = sorted(k for k in set(previous) | set(settings)
                       if previous.get(k) != settings.get(k))
      raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ); "
                       f"resume it with the same options or choose another --out")
    return _finished_metrics(out)
  elif existing:
    hint = "" if settings is None else "--resume to continue it, "
    raise ValueError(f"{out} already holds a run; pass {hint}--force to start over, or choose "
                     f"another --out")
  elif resume:
    raise ValueError(f"nothing to resume: {out} does not exist or is empty")
  os.makedirs(out, exist_ok=True)
  if settings is not None:
    files.write_json_atomic(run_json, {"settings": settings})
  return None


def run_compression(method, compression=None):
  """The factor a run asks for: ``compression``, else the method's only one, else 25."""
  method = models.get_method(method) if isinstance(method, str) else method
  if compression is not None:
    return float(compression)
  return method.fixed_compression or choices.DEFAULT_COMPRESSION


def train_run(out, preset="demo", data_dir=None, method="dkp", compression=None, cmr=None,
              epochs=None, seed=0, strategy="default", resume=False, force=False, verbose=2,
              callbacks=(), base_model=None, text_files=None, text_file=None, split=None,
              min_count=None, max_vocab=None, deployed_exports=(), corpus_name=None,
              options=None, keras="2"):
  """The CLI's work: trains into run directory ``out`` and returns the metrics dict.

  ``method`` is a name of `models.METHODS` or a `models.Method` (the benchmarks'
  named variants); ``options`` (a dict) and ``cmr`` set its DKP knobs
  (`models.Method.with_options`). ``compression`` defaults to
  `run_compression`'s; a factor the method cannot honour is refused. ``base_model`` (quantization methods only) is a trained
  dense model file of the same preset: it is quantized instead of training a
  dense model again. ``text_files``, ``text_file``, ``split``, ``min_count``, ``max_vocab``
  and ``corpus_name`` choose the corpus as in `load_corpus`. ``deployed_exports`` (e.g.
  `choices.DEPLOYED_EXPORTS`) adds the test perplexity of the model converted to each
  step-mode ``.tflite`` export and run through LiteRT
  (``deployed_test_perplexity``). ``keras`` is ``"2"`` (tf_keras) or ``"3"``
  (Keras 3 on ``KERAS_BACKEND``'s backend; `frontends.Keras3` says which
  methods and strategies it takes). Everything is checked before ``out`` is
  created, so a refused run leaves nothing behind.
  """
  front = frontends.get_frontend(keras)
  method = models.get_method(method) if isinstance(method, str) else method
  models.check_frontend(method, front)
  options = {name: value for name, value in (options or {}).items() if value is not None}
  if cmr is not None:
    options["cmr"] = cmr
  method = method.with_options(**options)
  recipe = method.adapt(presets.get_preset(preset))  # before the overrides below
  compression = run_compression(method, compression)  # checked by check_run
  if base_model is not None and not method.quantized:
    raise ValueError(f"--from-model applies to the quantization methods "
                     f"({', '.join(m for m in models.METHODS if models.METHODS[m].quantized)}), "
                     f"not {method.name}")
  if epochs is not None:
    if epochs < 1:
      raise ValueError(f"--epochs must be >= 1, got {epochs}")
    recipe = recipe.replace(epochs=int(epochs))
  if strategy not in choices.STRATEGIES:
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {choices.STRATEGIES}")
  # Before any TensorFlow op (the checks below build a model): collective ops
  # (multiworker) can only be configured at start-up.
  distribution = front.make_strategy(strategy) if base_model is None else None
  corpus = load_corpus(data_dir, recipe, 0, text_files, text_file, split, min_count, max_vocab,
                       corpus_name)
  check_run(corpus, recipe, method, compression, front)
  settings = {"preset": preset, "recipe": recipe.to_dict(), "method": method.name,
              "compression": float(compression), "seed": int(seed), "strategy": strategy,
              "data": _data_setting(data_dir, text_files, text_file, split, corpus_name),
              "vocab_size": corpus.vocab_size}
  if front.version != "2":  # absent for tf_keras: earlier runs keep their settings
    settings["keras"] = front.version
  if corpus.vocab_options is not None:  # absent before: earlier runs keep their settings
    settings["vocabulary"] = corpus.vocab_options
  layer_options = {name: list(value) if isinstance(value, tuple) else value
                   for name, value in options.items() if name in models.LAYER_OPTIONS}
  if layer_options:  # the recipe records the others
    settings["layer_options"] = layer_options
  if base_model is not None:
    settings["base_model"] = os.path.abspath(base_model)
    base_model = load_base_model(base_model, corpus, recipe, method)
  # With several workers (multiworker: each runs this with the same --out) the
  # chief owns the run directory; the others read it (the checkpoint) only.
  chief = distribution is None or distribution.extended.should_checkpoint
  if chief:
    finished = prepare_run_dir(out, settings, resume=resume, force=force)
  else:
    finished = _finished_metrics(out) if resume else None
  if finished is not None:
    return finished
  if chief:
    vocab = corpus.vocab.to_dict()
    if corpus.vocab_options is not None:
      vocab["options"] = corpus.vocab_options
    files.write_atomic(os.path.join(out, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
  if base_model is not None:
    result = quantize_trained(base_model, corpus, recipe, method)
  else:
    result = fit_lm(corpus, recipe, method, compression, distribution, seed, out, verbose,
                    callbacks, front=front)
  model = result["model"]
  report = front.dkp.compression_report(model)
  metrics = {"method": method.name, "preset": preset, "compression": float(compression),
             "seed": int(seed), "valid_perplexity": result["valid_perplexity"],
             "test_perplexity": result["test_perplexity"],
             "train_seconds": result["train_seconds"],
             # Spent by earlier, killed invocations of this run (0 when it ran in one go).
             "earlier_train_seconds": result.get("earlier_train_seconds", 0.0),
             "epochs": recipe.epochs,
             "carry_state": result["carry_state"], "history": result["history"],
             **lstm_compression(model, recipe, method, report),
             "target_warning": missed_target_warning(report),
             "meets_target": bool(report["meets_target"].all())}
  if front.version != "2":
    metrics["keras"] = {"version": front.version, "backend": front.keras.backend.backend()}
  if not chief:
    return metrics
  save_atomically(model, os.path.join(out, "model.keras"))
  files.write_json_atomic(os.path.join(out, "metrics.json"), metrics)
  shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)
  if os.path.exists(os.path.join(out, CLOCK_FILE)):
    os.remove(os.path.join(out, CLOCK_FILE))
  if deployed_exports:
    # Here, not at the top: conversion imports tf_keras, which a Keras 3 run needs only now.
    from pipelines import deployed  # pylint: disable=import-outside-toplevel
    # After the run is saved: a failing conversion never loses the trained model.
    metrics["deployed_test_perplexity"] = {
        export: result["perplexity"] for export, result in deployed.deployed_perplexities(
            model, corpus.test, recipe.batch_size, recipe.num_steps, deployed_exports).items()}
    files.write_json_atomic(os.path.join(out, "metrics.json"), metrics)
  return metrics


def _data_setting(data_dir, text_files, text_file, split, corpus_name=None):
  """run.json's record of the corpus: absolute paths (and the split of one text file), or a
  packaged corpus' name."""
  if data_dir:
    return os.path.abspath(data_dir)  # as earlier runs recorded it
  if corpus_name:
    return {"corpus": corpus_name}
  if text_files:
    return {name: os.path.abspath(path) for name, path in zip(("train", "valid", "test"),
                                                             text_files)}
  if text_file:
    return {"text": os.path.abspath(text_file), "split": list(split or choices.TEXT_SPLIT)}
  return "embedded"


def train_small_dkp_lm(epochs=4, compression=10.0, tokens=120_000, batch=32, steps=20, cmr=0.8,
                       out=None, verbose=2):
  """Trains, anneals and finalizes the model; returns perplexities, report and model."""
  recipe = presets.get_preset("demo").replace(
      units=128, epochs=epochs, corpus_tokens=tokens, batch_size=batch, num_steps=steps, cmr=cmr)
  corpus = load_corpus(None, recipe)
  result = fit_lm(corpus, recipe, "dkp", compression, verbose=verbose)
  if out:
    save_atomically(result["model"], out)
  return {**result, "report": frontends.of_model(result["model"]).dkp.compression_report(
      result["model"]),
          "perplexity": result["valid_perplexity"],
          "unigram_perplexity": data.unigram_perplexity(corpus.train, corpus.valid,
                                                        corpus.vocab_size),
          "optimal_perplexity": corpus.optimal_perplexity}
