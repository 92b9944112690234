"""pipelines.convert: verified .tflite files for DKP / LMF / HMD / dense models, clear failures."""

import json
import os
import re
import warnings

import numpy as np
import pytest
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

import dkp_keras as dkp
from dkp_keras.verify import normwise_error
from pipelines import choices
from pipelines import conversion
from pipelines import convert
from helpers import randomize_doping, run_step_file
from pipelines import models
from pipelines import presets
from tflite_ops import describe
from tflite_ops import lowering

STEPS = 6


def anneal_now(model, x, y):
  """Real tfmot annealing squeezed into four steps: S ends at its target sparsity."""
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=3, frequency=1)
  model.compile("sgd", "mse")
  model.fit(x, y, batch_size=len(x), epochs=4, verbose=0, callbacks=[dkp.SparsityAnnealing()])
  return dkp.finalize(model)


def odd_stack():
  """37 inputs, 300 units, compression 10 and 25: sizes that factor badly."""
  inputs = keras.Input((STEPS, 37))
  x = dkp.DKPLSTM(300, compression=10, return_sequences=True)(inputs)
  x = dkp.DKPLSTM(300, compression=25, return_sequences=True)(x)
  model = keras.Model(inputs, dkp.DopedDense(11, compression=2)(x))
  x = np.random.default_rng(0).normal(size=(2, STEPS, 37)).astype(np.float32)
  return anneal_now(model, x, np.zeros((2, STEPS, 11), np.float32))


def every_structure(doped):
  inputs = keras.Input((STEPS, 9))
  x = inputs
  for structure in ("kronecker", "lowrank", "hmd"):
    x = dkp.DKPLSTM(16, compression=1.5, structure=structure, doped=doped,
                    return_sequences=True)(x)
  x = keras.layers.LSTM(8, return_sequences=True)(x)
  for structure in ("kronecker", "lowrank", "hmd"):
    x = dkp.DopedDense(8, compression=1.2, structure=structure, doped=doped,
                       activation="tanh")(x)
  model = keras.Model(inputs, x)
  if doped:
    x = np.random.default_rng(1).normal(size=(2, STEPS, 9)).astype(np.float32)
    model = anneal_now(model, x, np.zeros((2, STEPS, 8), np.float32))
  return model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tmp_path_factory.mktemp("convert")


@pytest.mark.parametrize("build", [odd_stack, lambda: every_structure(True),
                                   lambda: every_structure(False)],
                         ids=["odd-sizes", "structures-doped", "structures-plain"])
def test_both_modes_verify_and_step_equals_sequence(build, workdir):
  model = build()
  name = f"m{len(list(workdir.iterdir()))}"
  sequence = conversion.convert(model, workdir / f"{name}_seq.tflite", seq_len=STEPS,
                             verify_samples=3)
  step = conversion.convert(model, workdir / f"{name}_step.tflite", mode="step", seq_len=STEPS,
                         verify_samples=3)
  for result in (sequence, step):
    assert result.report["verification"]["max_error"] < 1e-4
    assert result.report["sparsity"]["all_block_aligned_stored_fast"]
  x = np.random.default_rng(5).normal(size=(1, STEPS) + tuple(model.input_shape[2:]))
  x = x.astype(np.float32)
  seq_out = Interpreter(model_path=sequence.path).get_signature_runner()(inputs=x)["outputs"]
  state_shapes = {k: (1, v[1]) for k, v in _state_shapes(model).items()}
  assert normwise_error(run_step_file(step.path, x, state_shapes), seq_out) < 1e-5


def _state_shapes(model):
  return {f"{layer.name}_{s}": (1, layer.cell.units) for layer in model.layers
          if isinstance(layer, (dkp.DKPLSTM, keras.layers.LSTM)) for s in "hc"}


def test_650_unit_layer_at_25x_is_20x_smaller_with_s_stored_sparse(workdir):
  inputs = keras.Input((None, 650))
  model = keras.Model(inputs, dkp.DKPLSTM(650, compression=25)(inputs))
  x = np.random.default_rng(0).normal(size=(2, 3, 650)).astype(np.float32)  # S_rec needs h != 0
  model = anneal_now(model, x, np.zeros((2, 650), np.float32))
  result = conversion.convert(model, workdir / "big.tflite", mode="step", seq_len=2,
                           verify_samples=2)
  dense_lstm_bytes = 4 * (4 * 650 * (650 + 650) + 4 * 650)
  info = describe.inspect_model(result.path)
  assert dense_lstm_bytes / info.file_bytes >= 20
  fast = [t for t in info.sparse_tensors if describe.is_fast_block_sparse(t)]
  assert len(fast) == 2                                     # input and recurrent S
  assert all(t.sparsity.density < 0.05 for t in fast)
  assert result.report["sparsity"]["all_block_aligned_stored_fast"]


@pytest.mark.parametrize("kernel, op", [("block", "FULLY_CONNECTED"),
                                        ("csr", "FULLY_CONNECTED"),
                                        ("gather", "UNSORTED_SEGMENT_SUM"),
                                        ("dense", "FULLY_CONNECTED")])
def test_each_sparse_kernel_verifies(kernel, op, workdir):
  inputs = keras.Input((STEPS, 40))
  model = keras.Model(inputs, dkp.DopedDense(64, compression=6)(inputs))
  x = np.random.default_rng(2).normal(size=(4, STEPS, 40)).astype(np.float32)
  model = anneal_now(model, x, np.zeros((4, STEPS, 64), np.float32))
  result = conversion.convert(model, workdir / f"kernel_{kernel}.tflite", seq_len=STEPS,
                           sparse_kernel=kernel, verify_samples=2)
  assert result.report["verification"]["max_error"] < 1e-4
  assert op in result.report["op_counts"]
  sparse = describe.inspect_model(result.path).sparse_tensors
  assert bool(sparse) == (kernel in ("block", "csr"))
  assert all(describe.is_csr_sparse(t) == (kernel == "csr") for t in sparse)


def unstructured_lstm():
  """A DKP LSTM whose S (~4.4% dense) is annealed entry by entry: unstructured, not in
  1x4 blocks; then a DKP Dense layer with S in 1x4 blocks."""
  inputs = keras.Input((STEPS, 16))
  x = dkp.DKPLSTM(32, compression=10, block_size=(1, 1), return_sequences=True)(inputs)
  model = keras.Model(inputs, dkp.DopedDense(16, compression=6, block_size=(4, 1))(x))
  x = np.random.default_rng(3).normal(size=(2, STEPS, 16)).astype(np.float32)
  return anneal_now(model, x, np.zeros((2, STEPS, 16), np.float32))


@pytest.mark.parametrize("mode", ["sequence", "step"])
def test_unstructured_s_is_stored_as_csr_beside_block_sparse_s(mode, workdir):
  """auto: the LSTM's unstructured S become CSR weights, the Dense layer's 1x4 S stays 1x4."""
  model = unstructured_lstm()
  result = conversion.convert(model, workdir / f"csr_{mode}.tflite", mode=mode, seq_len=STEPS,
                           verify_samples=3)
  kernels = result.report["kernels"]
  assert sorted(kernels.values()) == ["block", "csr", "csr"]
  sparsity = result.report["sparsity"]
  assert sparsity["csr_stored"] == sparsity["csr_sparse"] == 2
  assert sparsity["fast_block_sparse"] == 1 and sparsity["densify_ops"] == 0
  assert result.report["verification"]["max_error"] < 1e-4
  dense_s = conversion.convert(model, workdir / f"dense_s_{mode}.tflite", mode=mode,
                            seq_len=STEPS, sparse_kernel="dense", verify_samples=0)
  assert result.report["bytes"]["file"] < dense_s.report["bytes"]["file"]


@pytest.mark.parametrize("kernel, block_size", [("block", (4, 1)), ("csr", (1, 1))])
def test_fused_doping_is_stored_sparse_and_verifies(kernel, block_size, workdir):
  """fuse_doping: one S per DKPLSTM over [x, h] (37 inputs: S_in padded to whole blocks),
  stored in the kernel's sparse layout, one FULLY_CONNECTED fewer than unfused."""
  inputs = keras.Input((STEPS, 37))
  model = keras.Model(inputs, dkp.DKPLSTM(32, compression=6, block_size=block_size,
                                          return_sequences=True)(inputs))
  x = np.random.default_rng(4).normal(size=(2, STEPS, 37)).astype(np.float32)
  model = anneal_now(model, x, np.zeros((2, STEPS, 32), np.float32))
  results = {fuse: conversion.convert(model, workdir / f"fused_{kernel}_{fuse}.tflite",
                                      mode="step", sparse_kernel=kernel, verify_samples=2,
                                      fuse_doping=fuse) for fuse in (False, True)}
  fused = results[True].report
  assert list(fused["kernels"].values()) == [kernel]
  assert fused["verification"]["max_error"] < 1e-4
  stored = "fast_block_sparse" if kernel == "block" else "csr_stored"
  assert fused["sparsity"][stored] == 1 and fused["sparsity"]["densify_ops"] == 0
  assert (fused["op_counts"]["FULLY_CONNECTED"] ==
          results[False].report["op_counts"]["FULLY_CONNECTED"] - 1)


def test_int8_weights_never_get_the_csr_kernel(workdir):
  model = unstructured_lstm()
  with pytest.raises(ValueError, match="csr kernel needs float weights"):
    conversion.convert(model, workdir / "int8_csr.tflite", quantize="dynamic-int8",
                    sparse_kernel="csr")
  result = conversion.convert(model, workdir / "int8_auto.tflite", seq_len=STEPS,
                           quantize="dynamic-int8", verify_samples=1)
  assert "csr" not in result.report["kernels"].values()
  assert result.report["verification"]["max_error"] <= choices.TOLERANCES["dynamic-int8"]


@pytest.mark.parametrize("quantize", ["float16", "dynamic-int8"])
def test_quantization_keeps_s_sparse_and_verifies(quantize, workdir):
  model = every_structure(True)
  plain = conversion.convert(model, workdir / f"plain_{quantize}.tflite", seq_len=STEPS,
                          sparse_kernel="block", verify_samples=1)
  result = conversion.convert(model, workdir / f"q_{quantize}.tflite", seq_len=STEPS,
                           quantize=quantize, sparse_kernel="block", verify_samples=2)
  assert result.report["verification"]["max_error"] <= choices.TOLERANCES[quantize]
  # S stays sparse: int8 1x16 blocks, or float32 1x4 beside float16 dense weights.
  assert result.report["bytes"]["sparse_values"] > 0
  assert result.report["bytes"]["file"] < plain.report["bytes"]["file"]


# ---------------------------------------------------------------- bad input, via the CLI


@pytest.fixture(scope="module")
def saved_model_file(workdir):
  inputs = keras.Input((STEPS, 8))
  model = keras.Model(inputs, dkp.DKPLSTM(8, compression=1.5, return_sequences=True)(inputs))
  path = workdir / "small.keras"
  model.save(path)
  return path


def cli(argv, capsys):
  code = convert.main([str(a) for a in argv])
  return code, capsys.readouterr()


def test_cli_converts_and_writes_a_json_report(saved_model_file, workdir, capsys):
  out, report = workdir / "cli.tflite", workdir / "cli.json"
  code, captured = cli([saved_model_file, "--out", out, "--seq-len", STEPS, "--verify", 2,
                        "--report", report], capsys)
  assert code == 0 and out.exists() and report.exists()
  assert "verification: 2 inputs" in captured.out and "smaller" in captured.out
  code, captured = cli([saved_model_file, "--out", out, "--seq-len", STEPS], capsys)
  assert code == 1 and "exists" in captured.err and "--force" in captured.err
  code, _ = cli([saved_model_file, "--out", out, "--seq-len", STEPS, "--force", "--verify",
                 1], capsys)
  assert code == 0


def test_cli_fuse_doping_converts_step_mode_and_refuses_sequence_mode(workdir, capsys):
  inputs = keras.Input((STEPS, 8))
  model = keras.Model(inputs, dkp.DKPLSTM(16, compression=3, return_sequences=True)(inputs))
  x = np.random.default_rng(5).normal(size=(2, STEPS, 8)).astype(np.float32)
  model = anneal_now(model, x, np.zeros((2, STEPS, 16), np.float32))
  saved = workdir / "annealed.keras"
  model.save(saved)
  out = workdir / "fused_cli.tflite"
  code, captured = cli([saved, "--out", out, "--fuse-doping", "--seq-len", STEPS], capsys)
  assert code == 1 and "fuse_doping is for step mode" in captured.err and not out.exists()
  report = workdir / "fused_cli.json"
  code, captured = cli([saved, "--out", out, "--fuse-doping", "--mode", "step",
                        "--verify", 2, "--report", report], capsys)
  assert code == 0 and out.exists() and "verification: 2 inputs" in captured.out
  written = json.loads(report.read_text())
  assert written["fuse_doping"] is True and len(written["kernels"]) == 1  # one S, not two


def test_cli_failed_verification_keeps_unverified_file(saved_model_file, workdir, capsys):
  out = workdir / "strict.tflite"
  code, captured = cli([saved_model_file, "--out", out, "--seq-len", STEPS, "--verify", 1,
                        "--tolerance", "0"], capsys)
  assert code == 1 and "verification failed" in captured.err
  assert not out.exists() and (workdir / "strict.tflite.unverified").exists()


@pytest.mark.parametrize("make_input, message", [
    (lambda d: d / "missing.keras", "no such file"),
    (lambda d: _write(d / "notes.keras", b"just some text"), "not a readable"),
    (lambda d: _write(d / "cut.keras", (d / "small.keras").read_bytes()[:500]),
     "not a readable"),
    (lambda d: _write(d / "empty.keras", b""), "it is empty"),
    (lambda d: _mkdir(d / "not_a_savedmodel"), "not a readable SavedModel directory"),
])
def test_cli_rejects_bad_models(make_input, message, saved_model_file, workdir, capsys):
  before = set(os.listdir(workdir))
  code, captured = cli([make_input(workdir), "--out", workdir / "never.tflite"], capsys)
  assert code == 1 and message in captured.err and "Traceback" not in captured.err
  assert not (workdir / "never.tflite").exists()
  assert not [f for f in set(os.listdir(workdir)) - before if f.endswith(".tmp")]


def test_cli_names_the_unsupported_layer(workdir, capsys):
  inputs = keras.Input((STEPS, 4))
  path = workdir / "gru.keras"
  keras.Model(inputs, keras.layers.GRU(4, name="my_gru")(inputs)).save(path)
  code, captured = cli([path, "--out", workdir / "gru.tflite"], capsys)
  assert code == 1 and "my_gru" in captured.err


def test_cli_rejects_unwritable_output(saved_model_file, workdir, capsys):
  code, captured = cli([saved_model_file, "--out", workdir / "no_dir" / "m.tflite"], capsys)
  assert code == 1 and "does not exist" in captured.err


def _mkdir(path):
  path.mkdir(exist_ok=True)
  return path


def _write(path, data):
  path.write_bytes(data)
  return path


def test_cli_converts_a_savedmodel_directory(workdir, capsys):
  inputs = keras.Input((STEPS, 8))
  model = keras.Model(inputs, dkp.DKPLSTM(8, compression=1.5, return_sequences=True)(inputs))
  path = workdir / "small_savedmodel"
  model.save(path, save_format="tf")
  code, captured = cli([path, "--out", workdir / "from_sm.tflite", "--mode", "step",
                        "--verify", 1], capsys)
  assert code == 0, captured.err
  assert "verification: 1 inputs" in captured.out


def test_cli_converts_a_stateful_model_at_batch_1(workdir, capsys):
  """A model saved as trained (stateful, batch fixed at 4) converts at the default batch 1."""
  inputs = keras.Input((STEPS,), batch_size=4, dtype="int32")
  x = keras.layers.Embedding(30, 8)(inputs)
  x = dkp.DKPLSTM(16, compression=2, return_sequences=True, stateful=True)(x)
  model = keras.Model(inputs, keras.layers.Dense(30)(x))
  path = workdir / "stateful.keras"
  model.save(path)
  out = workdir / "stateful.tflite"
  code, captured = cli([path, "--out", out, "--mode", "step", "--verify", 2], capsys)
  assert code == 0, captured.err
  assert "verification: 2 inputs" in captured.out
  lowered = lowering.lower_model(model, mode="step")
  tokens = np.random.default_rng(0).integers(0, 30, (1, STEPS)).astype(np.int32)
  expected = models.stateless_twin(model)(tokens, training=False).numpy()
  assert normwise_error(run_step_file(out, tokens, lowered.state_shapes), expected) < 1e-4


def test_a_model_of_any_length_converts_at_the_default_sequence_length(workdir):
  """pipelines.convert, not the lowering, supplies a length when the model fixes none."""
  inputs = keras.Input((None, 3))
  model = keras.Model(inputs, dkp.DKPLSTM(4, compression=1.5, return_sequences=True)(inputs))
  result = conversion.convert(model, workdir / "any_length.tflite", verify_samples=1)
  assert result.report["seq_len"] == choices.DEFAULT_SEQ_LEN == 35
  assert result.report["verification"]["max_error"] < 1e-4


def test_stateful_plain_lstm_converts_in_sequence_mode_at_batch_1(workdir):
  """A dense model saved as trained (stateful Keras LSTM, passed through as the fused op)."""
  inputs = keras.Input((STEPS,), batch_size=4, dtype="int32")
  x = keras.layers.Embedding(30, 8)(inputs)
  x = keras.layers.LSTM(16, return_sequences=True, stateful=True)(x)
  model = keras.Model(inputs, keras.layers.Dense(30)(x))
  result = conversion.convert(model, workdir / "stateful_dense.tflite", verify_samples=2)
  assert result.report["verification"]["max_error"] < 1e-4
  assert result.report["batch"] == 1


# Methods with DKP options, by the names the tests give them.
TUNED = {"dkp-1x1": models.get_method("dkp").with_options(block_size=(1, 1))}


def _lm(method, compression):
  """A tiny LM of ``method`` whose S (or pruned kernels) is at its target, without training."""
  recipe = presets.Recipe("claims", layers=1, units=64, embedding=64, num_steps=STEPS,
                          batch_size=2, epochs=1, corpus_tokens=1000, carry_state=False)
  model = models.build_lm(30, recipe, TUNED.get(method, method), compression)
  rng = np.random.default_rng(0)
  for owner in dkp.traversal.find_doped_owners(model):
    randomize_doping(owner)
  if method == "prune":  # magnitude pruning to 1 / compression of the kernels, 1x1
    for layer in models.recurrent_layers(model):
      for kernel in (layer.cell.kernel, layer.cell.recurrent_kernel):
        values = kernel.numpy()
        keep = np.abs(values) >= np.quantile(np.abs(values), 1 - 1 / compression)
        kernel.assign(np.where(keep, values, 0.0))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # finalize prunes the random S to its budget
    return dkp.finalize(model)


@pytest.mark.parametrize("method, compression", [
    ("dense", 1), ("prune", 25), ("prune", 10), ("dkp", 25), ("dkp-1x1", 25),
    ("dkp-1x1", 10), ("lmf", 25), ("hmd", 25), ("kp", 25), ("doped-hmd", 25)])
@pytest.mark.parametrize("mode", lowering.MODES)
def test_report_bytes_are_the_files_bytes_for_every_method(workdir, method, compression, mode):
  """Every size compression_report gives is checkable against the converted float32 file."""
  model = _lm(method, compression)
  table = dkp.compression_report(model)
  claimed = int(table["bytes"].iloc[-1])
  result = conversion.convert(model, workdir / f"{method}-{compression}-{mode}.tflite", mode=mode,
                           verify_samples=1)
  stored = result.report["bytes"]["weights"]
  # The file adds a few small constants (shapes, paddings): within 1% and 512 bytes.
  assert abs(stored - claimed) <= 0.01 * claimed + 512, (claimed, stored, result.report["kernels"])
  assert result.report["target_warning"] is None


def test_report_bytes_are_the_files_bytes_for_wrapped_doped_layers(workdir):
  """A keyword-spotting-style classifier: Bidirectional DKPLSTM, TimeDistributed DopedDense."""
  frames = keras.Input((STEPS, 40))
  x = keras.layers.Bidirectional(dkp.DKPLSTM(64, compression=10, return_sequences=True))(frames)
  # At 10x every S is below the block kernel's density limit: a denser S is counted dense,
  # but the converter stores it sparse beside S that run the block kernel (a known limit).
  x = keras.layers.TimeDistributed(dkp.DopedDense(32, compression=10))(x)
  model = keras.Model(frames, keras.layers.Dense(12)(keras.layers.GlobalAveragePooling1D()(x)))
  # Distinct weights everywhere, as after training: the converter stores identical constants
  # (e.g. two directions' initial biases) once.
  rng = np.random.default_rng(0)
  for weight in model.weights:
    weight.assign(rng.normal(0, 0.1, weight.shape).astype(np.float32))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # finalize prunes the random S to its budget
    model = dkp.finalize(model)
  claimed = int(dkp.compression_report(model)["bytes"].iloc[-1])
  result = conversion.convert(model, workdir / "kws.tflite", verify_samples=2)
  assert len(result.report["kernels"]) == 5  # both directions' two S, the DopedDense's
  stored = result.report["bytes"]["weights"]
  assert abs(stored - claimed) <= 0.01 * claimed + 512, (claimed, stored)


def test_convert_warns_when_s_misses_its_target(workdir):
  inputs = keras.Input((STEPS, 8))
  model = keras.Model(inputs, dkp.DopedDense(32, compression=2, name="too_dense")(inputs))
  randomize_doping(model.layers[1])  # S dense: never annealed
  result = conversion.convert(model, workdir / "too_dense.tflite", verify_samples=1)
  assert "too_dense" in result.report["target_warning"]
  assert "warning: S is denser than its target" in conversion.format_report(result.report)


def test_float16_keeps_csr_weights_sparse_float32(workdir):
  result = conversion.convert(unstructured_lstm(), workdir / "f16_csr.tflite", seq_len=STEPS,
                           quantize="float16", verify_samples=2)
  assert result.report["sparsity"]["csr_stored"] == result.report["sparsity"]["csr_sparse"] == 2
  assert result.report["verification"]["max_error"] <= choices.TOLERANCES["float16"]


# ---------------------------------------------------------------- outputs: no file is ever lost


@pytest.fixture
def no_work(monkeypatch):
  """Fails the test if the command gets as far as loading the model."""
  def load_model(path):
    raise AssertionError(f"loaded {path}: the outputs were not checked first")
  monkeypatch.setattr(conversion.dkp, "load_model", load_model)


def _listing(directory):
  return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("outputs, message", [
    (lambda d, m: ["--out", d / "x.tflite", "--report", d / "x.tflite"],
     "--out and --report are both"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", _link(d / "alias.json", d / "x.tflite")],
     "--out and --report are both"),
    (lambda d, m: ["--out", m, "--force"], "is the input model"),
    (lambda d, m: ["--out", _link(d / "to_model.tflite", m), "--force"], "is the input model"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", m, "--force"], "is the input model"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", d / "x.tflite.unverified"],
     "failed-verification copy and --report are both"),
    (lambda d, m: ["--out", d / "x.tflite", "--verify-data", _npy(d / "ids.npy"), "--report",
                   d / "ids.npy", "--force"], "is the input --verify-data"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", _write(d / "mine.json", b"{}")],
     "--report .*mine.json exists; pass --force to overwrite it"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", _write(d / "other.keras", b"model")],
     "--report .*other.keras exists; pass --force to overwrite it"),
    (lambda d, m: ["--out", _write(d / "x.tflite.unverified", b"old") and d / "x.tflite"],
     "unverified exists; pass --force"),
    (lambda d, m: ["--out", d / "x.tflite", "--report", d / "nodir" / "r.json"],
     "cannot write --report .*r.json: directory .*nodir does not exist"),
], ids=["out-is-report", "report-links-to-out", "out-is-model", "out-links-to-model",
        "report-is-model", "report-is-unverified-copy", "report-is-verify-data",
        "report-exists", "report-is-a-model", "unverified-copy-exists", "report-dir-missing"])
def test_cli_refuses_outputs_that_would_lose_a_file_before_any_work(
    outputs, message, saved_model_file, tmp_path, capsys, no_work):
  model = tmp_path / "model.keras"
  model.write_bytes(saved_model_file.read_bytes())
  argv = outputs(tmp_path, model)
  before = _listing(tmp_path)
  code, captured = cli([model, *argv], capsys)
  assert code == 1 and re.search(message, captured.err), captured.err
  assert _listing(tmp_path) == before                    # nothing written, nothing replaced


def test_cli_report_replaces_an_existing_file_only_with_force(saved_model_file, tmp_path,
                                                              capsys):
  report = _write(tmp_path / "r.json", b"mine")
  code, _ = cli([saved_model_file, "--out", tmp_path / "m.tflite", "--report", report,
                 "--seq-len", STEPS, "--verify", 1, "--force"], capsys)
  assert code == 0 and json.loads(report.read_text())["output"] == str(tmp_path / "m.tflite")


def _link(link, target):
  link.symlink_to(target)
  return link


def _npy(path):
  np.save(path, np.zeros((1, STEPS, 8), np.float32))
  return path


# ---------------------------------------------------------------- verification options


@pytest.mark.parametrize("argv, message", [
    (["--verify", "-1"], "argument --verify: expected a whole number >= 0"),
    (["--verify", "two"], "argument --verify: expected a whole number >= 0"),
    (["--tolerance", "-1"], "argument --tolerance: expected a number >= 0"),
    (["--tolerance", "nan"], "argument --tolerance: expected a number >= 0"),
])
def test_cli_refuses_negative_verify_and_tolerance(argv, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    convert.main(["m.keras", "--out", str(tmp_path / "m.tflite"), *argv])
  assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    ({"verify_samples": -1}, "--verify must be a whole number >= 0"),
    ({"tolerance": -1.0}, "--tolerance must be a number >= 0"),
    ({"tolerance": float("nan")}, "--tolerance must be a number >= 0"),
])
def test_convert_refuses_negative_verify_and_tolerance(options, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    conversion.convert(keras.Sequential(), tmp_path / "m.tflite", **options)


def test_cli_verify_0_skips_verification(saved_model_file, tmp_path, capsys):
  code, captured = cli([saved_model_file, "--out", tmp_path / "m.tflite", "--seq-len", STEPS,
                        "--verify", 0], capsys)
  assert code == 0 and "verification: skipped" in captured.out


@pytest.fixture(scope="module")
def token_model_file(workdir):
  inputs = keras.Input((STEPS,), dtype="int32")
  x = keras.layers.Embedding(30, 8)(inputs)
  x = dkp.DKPLSTM(8, compression=1.5, return_sequences=True)(x)
  path = workdir / "tokens.keras"
  keras.Model(inputs, keras.layers.Dense(30)(x)).save(path)
  return path


@pytest.mark.parametrize("data, message", [
    (np.array([[1, 2, 3, 30, 4, 5, 6]]), r"holds 30 at index \(0, 3\) \(1 such values\); the "
     r"model takes whole token ids 0\.\.29 \(the Embedding's input_dim 30\)"),
    (np.array([[1, 2, 3, 4, 5, 6], [0, -1, 0, 0, 99, 0]]), r"holds -1 at index \(1, 1\) \(2 "),
    (np.array([[1.0, 2.5, 3, 4, 5, 6]]), r"holds 2\.5 at index \(0, 1\)"),
    (np.array([[1, 2, 3]]), r"must be \(>= 1 examples, >= 6 steps\) for this model, got shape "
     r"\(1, 3\)"),
    (np.array([1, 2, 3, 4, 5, 6]), r"must be an array \(examples, steps, \.\.\.\)"),
], ids=["id-past-vocabulary", "negative-id", "not-whole", "too-short", "one-dimensional"])
def test_cli_refuses_verify_data_the_model_cannot_take(data, message, token_model_file, tmp_path,
                                                       capsys, monkeypatch):
  def convert_nothing(*args):
    raise AssertionError("the converter ran before --verify-data was checked")
  monkeypatch.setattr(conversion, "_converter", convert_nothing)
  np.save(tmp_path / "ids.npy", data)
  code, captured = cli([token_model_file, "--out", tmp_path / "m.tflite", "--verify-data",
                        tmp_path / "ids.npy"], capsys)
  assert code == 1 and re.search(message, captured.err), captured.err
  assert sorted(os.listdir(tmp_path)) == ["ids.npy"]


def test_cli_verifies_on_valid_token_data(token_model_file, tmp_path, capsys):
  np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 30, (3, STEPS + 2)))
  code, captured = cli([token_model_file, "--out", tmp_path / "m.tflite", "--verify", 1,
                        "--verify-data", tmp_path / "ids.npy"], capsys)
  assert code == 0 and "verification: 4 inputs" in captured.out, captured.err


@pytest.mark.parametrize("content, message", [(b"not numpy", "is not an array written by numpy.save"),
                                              (None, "no such file")])
def test_cli_refuses_unreadable_verify_data(content, message, saved_model_file, tmp_path, capsys):
  if content is not None:
    _write(tmp_path / "ids.npy", content)
  code, captured = cli([saved_model_file, "--out", tmp_path / "m.tflite", "--verify-data",
                        tmp_path / "ids.npy"], capsys)
  assert code == 1 and message in captured.err and "Traceback" not in captured.err
  assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("data, message", [
    (np.full((1, STEPS, 8), np.nan), r"holds nan at index \(0, 0, 0\) \(48 such values\); the "
     "model takes finite numbers"),
    (np.zeros((1, STEPS, 5)), r"must be \(>= 1 examples, >= 6 steps, 8\) for this model, got "
     r"shape \(1, 6, 5\)"),
    (np.array([["a"] * STEPS]), "must hold real numbers, got dtype <U1"),
])
def test_cli_refuses_verify_data_a_float_model_cannot_take(data, message, saved_model_file,
                                                           tmp_path, capsys):
  np.save(tmp_path / "x.npy", data)
  code, captured = cli([saved_model_file, "--out", tmp_path / "m.tflite", "--seq-len", STEPS,
                        "--verify-data", tmp_path / "x.npy"], capsys)
  assert code == 1 and re.search(message, captured.err), captured.err
  assert sorted(os.listdir(tmp_path)) == ["x.npy"]
