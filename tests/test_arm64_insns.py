"""arm64 instruction counts: plugin log parsing, the estimate and the CSV math on recorded
values, given step-mode files' checks and inputs (no arm64 root needed), and real counts where
the root and plugins exist."""

import argparse
import csv
import json
import os
import shutil

import numpy as np
import pytest
import tf_keras as keras

from benchmarks import arm64_insns
from benchmarks import arm64_parity
from pipelines import conversion
from tflite_ops import describe

# Recorded from qemu-aarch64 7.2 with build_plugins.sh's plugins, running the root's /bin/true.
INSN_INLINE_LOG = "insns: 87726\n"
INSN_PER_CPU_LOG = "cpu 0 insns: 87726\ntotal insns: 87726\n"
HOTBLOCKS_LOG = ("collected 1636 entries in the hash table\npc, tcount, icount, ecount\n"
                 "0x000000550282f268, 1, 7, 1253\n0x0000005502833f0c, 1, 2, 1050\n")


@pytest.mark.parametrize("log", [INSN_INLINE_LOG, INSN_PER_CPU_LOG,
                                 "INFO: Created TensorFlow Lite XNNPACK delegate\n" +
                                 INSN_INLINE_LOG])
def test_parse_insn_count(log):
  assert arm64_insns.parse_insn_count(log) == 87726


def test_parse_insn_count_names_a_missing_plugin():
  with pytest.raises(ValueError, match="insn plugin"):
    arm64_insns.parse_insn_count("qemu-aarch64: Could not load plugin\n")


def test_parse_hotblocks():
  assert arm64_insns.parse_hotblocks(HOTBLOCKS_LOG) == [(0x550282f268, 1, 7, 1253),
                                                        (0x5502833f0c, 1, 2, 1050)]


# Recorded: a guest's /proc/self/maps lines and `nm -C` lines of LiteRT's library (shortened).
MAPS = ("5506100000-55063ee000 r--p 00000000 fe:00 16082041   /r/site-packages/ai_edge_litert/"
        "libpywrap_litert_common.so\n"
        "55063fd000-5506c2d000 r-xp 002ed000 fe:00 16082041   /r/site-packages/ai_edge_litert/"
        "libpywrap_litert_common.so\n"
        "400000-916000 r-xp 00000000 fe:00 1   /r/usr/bin/python3.11\n")
NM = ("000000000062fe00 t tflite::ops::builtin::fully_connected::VerifySparsity(tflite::"
      "RuntimeShape const&, TfLiteSparsity const*)\n"
      "000000000075ee00 T tflite::tensor_utils::NeonSparseMatrixBatchVectorMultiplyAccumulate1x4"
      "(float const*, int const*, int const*, int, int, float const*, int, float*)\n"
      "0000000000800000 t bool tflite::detail::CustomGemv<float, (tflite::Flavor)0>(int const&)"
      " const\n"
      "0000000000c72000 d some_data\n                 U memcpy\n")


def test_profile_attributes_hot_blocks_to_functions():
  base = arm64_insns.library_base(MAPS, arm64_insns.PROFILE_LIBRARY)
  assert base == 0x5506100000
  assert arm64_insns.library_base(MAPS, "libmissing.so") is None
  symbols = arm64_insns.parse_symbols(NM)
  assert [name for _, name in symbols] == [
      "tflite::ops::builtin::fully_connected::VerifySparsity",
      "tflite::tensor_utils::NeonSparseMatrixBatchVectorMultiplyAccumulate1x4",
      "bool tflite::detail::CustomGemv<float, (tflite::Flavor)0>"]
  blocks = [(0x550672ff70, 1, 3, 100), (0x550672ff60, 1, 4, 100),  # VerifySparsity
            (0x550685ef10, 1, 6, 10),                               # the 1x4 kernel
            (0x4998b0, 1, 2, 1000)]                                 # python3.11
  totals = arm64_insns.attribute(blocks, base, symbols)
  assert totals == {"tflite::ops::builtin::fully_connected::VerifySparsity": 700,
                    "tflite::tensor_utils::NeonSparseMatrixBatchVectorMultiplyAccumulate1x4": 60,
                    arm64_insns.OUTSIDE: 2000}
  assert arm64_insns.attribute(blocks[:1], None, symbols) == {arm64_insns.OUTSIDE: 300}


def test_per_step_is_the_difference_over_the_invokes():
  assert arm64_insns.per_step(364_206_861 + 20 * 1_464_830, 364_206_861, 20) == 1_464_830
  with pytest.raises(ValueError, match="invokes"):
    arm64_insns.per_step(10, 5, 0)


def test_estimate_charges_instructions_and_the_bytes_beyond_l2():
  board = {"clock_hz": 1e9, "ipc": 2.0, "l2_bytes": 1000, "dram_bytes_per_s": 1e6}
  # 2e6 insns at 2 per cycle, 1 GHz: 1000 µs; 1000 bytes beyond L2 at 1 MB/s: 1000 µs.
  assert arm64_insns.estimate_step_us(2e6, 2000, board) == pytest.approx(2000)
  assert arm64_insns.estimate_step_us(2e6, 500, board) == pytest.approx(1000)  # fits in L2
  pi4 = arm64_insns.PI4
  assert arm64_insns.estimate_step_us(pi4["clock_hz"] * pi4["ipc"], 0) == pytest.approx(1e6)


def _row(model, xnnpack, insns, weight_bytes, variant=""):
  return {"model": model, "variant": variant, "xnnpack": xnnpack, "cpu": "cortex-a72",
          "insns_per_step": insns, "weight_bytes": weight_bytes}


def test_ratios_against_the_dense_row_of_the_same_setting():
  mib = 1 << 20
  rows = arm64_insns.add_ratios([
      _row("dense", True, 3e6, 27 * mib), _row("dense", False, 9e6, 27 * mib),
      _row("dkp", True, 1.5e6, mib // 2), _row("dkp", False, 1.5e6, mib // 2),
      _row("dkp-int8", True, 0.5e6, mib // 4), _row("dense", True, 2e6, 27 * mib, "try")])
  dense_on, dense_off, dkp_on, dkp_off, int8_on, variant = rows
  assert dense_on["insn_speedup_vs_dense"] == 1.0
  assert dkp_on["insn_speedup_vs_dense"] == pytest.approx(2.0)
  assert dkp_off["insn_speedup_vs_dense"] == pytest.approx(6.0)
  assert int8_on["insn_speedup_vs_dense"] == pytest.approx(6.0)  # against float dense
  assert variant["insn_speedup_vs_dense"] == pytest.approx(1.5)  # a variant is no baseline
  expected = (arm64_insns.estimate_step_us(3e6, 27 * mib) /
              arm64_insns.estimate_step_us(1.5e6, mib // 2))
  assert dkp_on["est_pi4_speedup_vs_dense"] == pytest.approx(expected)
  assert dkp_on["est_pi4_speedup_vs_dense"] > dkp_on["insn_speedup_vs_dense"]  # DRAM bytes


def test_ratios_leave_failed_rows_empty():
  rows = arm64_insns.add_ratios([_row("dense", True, 3e6, 100),
                                 {**_row("dkp", True, None, 100), "status": "count failed"}])
  assert "insn_speedup_vs_dense" not in rows[1] and "est_pi4_step_us" not in rows[1]


def test_plan():
  config = {**arm64_insns.DEFAULTS, "compressions": (10.0, 25.0)}
  planned = arm64_insns.plan(config)
  assert planned.count(("dense", 1.0)) == 1 and ("dense-int8", 1.0) in planned
  assert ("dkp-int8", 25.0) in planned and ("dkp-int8", 10.0) not in planned
  assert ("kp", 25.0) in planned and ("kp", 10.0) not in planned
  assert ("dkp-fused-s", 25.0) in planned and ("dkp-int8-fused-s", 25.0) in planned
  assert ("dkp-fused-s", 10.0) not in planned
  assert ("dkp-csr", 10.0) in planned and ("hmd", 25.0) in planned
  no_int8 = arm64_insns.plan({**config, "int8_compressions": (), "structures": ("dkp",)})
  assert no_int8 == [("dkp", 10.0), ("dkp", 25.0)]


@pytest.mark.parametrize("argv, message", [
    (["--structures", "dense,lstm"], "unknown"),
    (["--out", "results.json"], "must be a .csv"),
    (["--invokes", "0"], "must be >= 1"),
    (["--compressions", "0.5"], "must be >= 1"),
    (["--root", "/nonexistent/root", "--plugins", "/nonexistent"], "build_root.sh"),
    (["--profile"], "give its --out"),
    (["--profile", "--out", arm64_insns.DEFAULT_OUT], "must not overwrite"),
])
def test_bad_arguments_are_named(argv, message, capsys):
  with pytest.raises(SystemExit):
    arm64_insns.parse_args(argv)
  assert message in capsys.readouterr().err


def _why_no_emulation():
  root = arm64_insns.DEFAULT_ROOT
  plugins = arm64_insns.find_plugins()
  problems = arm64_insns.missing_requirements(root, plugins)
  return "; ".join(problems) if problems else None


@pytest.mark.skipif(_why_no_emulation() is not None, reason=_why_no_emulation() or "")
def test_a_tiny_model_counts_linearly_in_the_emulated_root(tmp_path):
  """A one-FC model under qemu's insn plugin: counts are exact, so 100 invokes cost twice 50."""
  from benchmarks.studies import arm64_fc_probe  # pylint: disable=import-outside-toplevel
  model = tmp_path / "fc.tflite"
  model.write_bytes(arm64_fc_probe.fc_model(1, 256, 1024))
  view = arm64_insns.guest_view(arm64_insns.DEFAULT_ROOT, "cortex-a72", str(tmp_path / "view"))
  plugins = arm64_insns.find_plugins()
  counts = {n: arm64_insns.count_instructions(view, "cortex-a72", plugins, str(model), True, n,
                                              str(tmp_path)) for n in (0, 50, 100)}
  fifty, hundred = counts[50] - counts[0], counts[100] - counts[0]
  assert fifty > 50 * 10_000
  assert hundred == pytest.approx(2 * fifty, rel=0.01)
  assert os.path.islink(os.path.join(view, "usr"))  # the root itself is left untouched
  shutil.rmtree(view)


# --------------------------------------------------------------------------- given files

VOCAB = 23


def _tiny_lm():
  model = keras.Sequential([keras.Input((None,), dtype="int32"),
                            keras.layers.Embedding(VOCAB, 32),
                            keras.layers.LSTM(32, return_sequences=True),
                            keras.layers.Dense(VOCAB)])
  model.build()
  return model


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
  """A tiny LM (token ids in) converted in step and in sequence mode, and its step-mode
  dynamic-int8 export."""
  directory = tmp_path_factory.mktemp("lm")
  model = _tiny_lm()
  paths = {}
  for key, mode, quantize in (("step", "step", "none"), ("sequence", "sequence", "none"),
                              ("int8", "step", "dynamic-int8")):
    paths[key] = str(directory / f"lm_{key}.tflite")
    conversion.convert(model, paths[key], mode=mode, seq_len=4, quantize=quantize,
                       verify_samples=1)
  return paths


@pytest.fixture
def run_dir(tmp_path, lm_files):
  """A pipelines.run directory's layout: the step files (the tiny LM twice) and report.json."""
  run = tmp_path / "run"
  run.mkdir()
  for name in arm64_insns.RUN_FILES:
    shutil.copyfile(lm_files["step"], run / name)
  (run / "report.json").write_text(json.dumps({
      "settings": {"units": 32, "compression": 25.0, "recipe": {"name": "demo"}},
      "models": [{"model": "dense", "compression": 1.0, "step_latency_us": 50.0,
                  "speedup_vs_dense": 1.0},
                 {"model": "dkp", "compression": 17.5, "step_latency_us": 10.0,
                  "speedup_vs_dense": 5.0}]}))
  return str(run)


def _given(argv):
  parser = arm64_insns.build_parser()
  args = parser.parse_args(argv)
  return arm64_insns.check_given(parser, args)


def test_given_list():
  assert arm64_insns.given_list("dense=a/d.tflite, dkp-2=b.tflite") == (
      ("dense", "a/d.tflite"), ("dkp-2", "b.tflite"))
  for bad in ("dense", "=a.tflite", "dense=", "de nse=a.tflite", "a=x.tflite,,b=y.tflite"):
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=PATH"):
      arm64_insns.given_list(bad)


def test_output_clashes_name_inputs_among_the_csv_json_and_png(tmp_path):
  report = str(tmp_path / "report.json")
  assert arm64_insns.output_clashes(str(tmp_path / "report.csv"), [report]) == [report]
  assert arm64_insns.output_clashes(str(tmp_path / "insns.csv"), [report]) == []


def test_step_inputs_are_token_ids_below_the_vocabulary_or_normals():
  rng = np.random.default_rng(0)
  ids = arm64_insns.step_inputs((1, 1), np.dtype("int32"), 5, 3, 40, rng)
  assert ids.shape == (3, 1, 40) and ids.dtype == np.int32
  assert ids.min() == 0 and ids.max() == 4  # every id below 5 drawn, none at or above
  floats = arm64_insns.step_inputs((1, 1, 7), np.dtype("float32"), None, 2, 3, rng)
  assert floats.shape == (2, 1, 3, 7) and floats.dtype == np.float32 and floats.std() > 0.5


def _tensor(index, dtype, consumers, sparsity=None, shape=(8, 8)):
  return describe.TensorInfo(subgraph=0, index=index, name=f"t{index}", shape=shape,
                             dtype=dtype, buffer=index, buffer_bytes=1, is_constant=True,
                             sparsity=sparsity, consumers=consumers)


def _sparsity(block):
  blocked = block == (1, 4)
  return describe.SparsityInfo(
      traversal_order=(0, 1, 2) if blocked else (0, 1), block_map=(1,) if blocked else (),
      block_shape=block, dim_formats=("dense", "sparse_csr") + (("dense",) if blocked else ()),
      index_types=("uint16", "uint16"), num_blocks=4, values_bytes=64, indices_bytes=16,
      dense_shape=(8, 8), density=0.25)


@pytest.mark.parametrize("tensors, expected", [
    ([_tensor(0, "float32", ("FULLY_CONNECTED",))], ("dense", "none")),
    ([_tensor(0, "float32", ("FULLY_CONNECTED",), _sparsity((1, 4)))], ("block", "none")),
    ([_tensor(0, "float32", ("FULLY_CONNECTED",), _sparsity((1, 1)))], ("csr", "none")),
    ([_tensor(0, "float32", ("FULLY_CONNECTED",), _sparsity((1, 4))),
      _tensor(1, "float16", ("DEQUANTIZE",))], ("block", "float16")),
    ([_tensor(0, "int8", ("FULLY_CONNECTED",), _sparsity((1, 4)))], ("int8", "dynamic-int8")),
])
def test_file_kernel_words_the_kernel_as_the_built_models_do(tensors, expected):
  info = describe.ModelInfo(file_bytes=0, ops=[], op_counts={}, tensors=tensors, inputs=[],
                            outputs=[], custom_ops=[], num_subgraphs=1)
  assert arm64_insns.file_kernel(info) == expected


def test_a_step_file_is_read_for_its_inputs_and_kernel(lm_files):
  model = arm64_insns.given_model("lm", lm_files["step"], "baseline", 1.0)
  assert model["inputs_shape"] == (1, 1) and model["inputs_dtype"] == "int32"
  assert model["vocab"] == VOCAB and model["kernel"] == "dense" and model["quantize"] == "none"
  assert model["path"] == os.path.abspath(lm_files["step"])
  int8 = arm64_insns.given_model("lm-int8", lm_files["int8"])
  assert (int8["kernel"], int8["quantize"], int8["vocab"]) == ("int8", "dynamic-int8", VOCAB)


def test_run_dir_takes_structure_and_compression_from_the_report(run_dir):
  given, report = _given(["--run-dir", run_dir, "--out", "x.csv"])
  assert [(m["name"], m["structure"], m["compression"]) for m in given] == [
      ("dense", "baseline", 1.0), ("dkp", "dkp", 17.5)]
  assert report["models"][1]["compression"] == 17.5
  sidecar = arm64_insns.given_sidecar(given, run_dir, report)
  assert sidecar["run"]["x86"]["dkp"]["speedup_vs_dense"] == 5.0
  assert "recipe" not in sidecar["run"]["settings"]
  assert sidecar["given"][1]["bytes"] == os.path.getsize(os.path.join(run_dir, "dkp_step.tflite"))
  more, _ = _given(["--run-dir", run_dir, "--tflite", f"other={given[0]['path']}", "--out",
                    "x.csv"])
  assert [m["name"] for m in more] == ["dense", "dkp", "other"]
  assert more[2]["structure"] == "" and more[2]["compression"] is None


def test_given_entries_feed_the_host_run(run_dir, tmp_path):
  """The copies and inputs given_entries writes run in guest_outputs.py (here on x86)."""
  given, _ = _given(["--run-dir", run_dir, "--out", "x.csv"])
  work = str(tmp_path / "work")
  config = {**arm64_insns.DEFAULTS, "samples": 2, "steps": 5}
  entries = arm64_insns.given_entries(given, config, work)
  assert [e["row"] for e in entries] == [
      {"model": "dense", "variant": "", "structure": "baseline", "kernel": "dense"},
      {"model": "dkp", "variant": "", "structure": "dkp", "kernel": "dense"}]
  inputs = np.load(os.path.join(work, entries[0]["inputs"]))
  assert inputs.shape == (2, 1, 5) and 0 <= inputs.min() and inputs.max() < VOCAB
  arm64_parity.write_manifest(entries, work)
  arm64_parity.run_host(work, os.path.join(work, "out"))
  run = arm64_parity.load_run(os.path.join(work, "out"))
  assert run["dense__xnnon"].shape == (2, 1, 5, VOCAB)
  np.testing.assert_allclose(run["dense__xnnoff"], run["dense__xnnon"], rtol=1e-4, atol=1e-5)


def _bad_given_cases(tmp_path, lm_files, run_dir):
  text = tmp_path / "notes.tflite"
  text.write_text("not a model")
  no_report = tmp_path / "empty"
  no_report.mkdir()
  junk = tmp_path / "junk"
  junk.mkdir()
  (junk / "report.json").write_text('{"models": 3}')
  half = tmp_path / "half"
  shutil.copytree(run_dir, half)
  os.remove(half / "dkp_step.tflite")
  out = str(tmp_path / "x.csv")
  step = lm_files["step"]
  return [
      (["--tflite", "dense"], "expected NAME=PATH"),
      (["--tflite", f"dense={step}"], "give its --out"),
      (["--run-dir", run_dir, "--out", arm64_insns.DEFAULT_OUT], "must not overwrite"),
      (["--run-dir", run_dir, "--out", out, "--units", "8"], "--units shapes the models"),
      (["--tflite", f"dense={step}", "--out", out, "--quick"], "--quick shapes the models"),
      (["--tflite", f"a={tmp_path / 'none.tflite'}", "--out", out], "is not a file"),
      (["--tflite", f"a={text}", "--out", out], "not a TFLite model"),
      (["--tflite", f"a={lm_files['sequence']}", "--out", out], "not a step-mode file"),
      (["--tflite", f"a={step},a={step}", "--out", out], "given twice"),
      (["--run-dir", run_dir, "--tflite", f"dkp={step}", "--out", out], "given twice"),
      (["--run-dir", str(tmp_path / "nowhere"), "--out", out], "is not a directory"),
      (["--run-dir", str(no_report), "--out", out], "holds no report.json"),
      (["--run-dir", str(junk), "--out", out], "not a pipelines.run report"),
      (["--run-dir", str(half), "--out", out], "dkp_step.tflite' is not a file"),
      (["--run-dir", run_dir, "--out", os.path.join(run_dir, "report.csv")],
       "would overwrite its input"),
  ]


def test_bad_given_files_are_named_before_any_work(tmp_path, lm_files, run_dir, capsys):
  for argv, message in _bad_given_cases(tmp_path, lm_files, run_dir):
    with pytest.raises(SystemExit):
      arm64_insns.parse_args(argv)
    assert message in capsys.readouterr().err, argv
  assert not os.path.exists(tmp_path / "x.csv")


@pytest.mark.skipif(_why_no_emulation() is not None, reason=_why_no_emulation() or "")
def test_a_run_dir_is_counted_in_the_emulated_root(run_dir, tmp_path):
  """--run-dir end to end: four rows (two files, XNNPack on and off), counted, within the
  tolerance of x86, ratios against the run's dense file; the table, JSON and plot written."""
  out = str(tmp_path / "main_job.csv")
  # A step of this LM is ~10^4 instructions, run-to-run noise a few thousand per run: 50
  # invokes keep it near 1% of a step.
  rows = arm64_insns.main(["--run-dir", run_dir, "--out", out, "--invokes", "50"])
  assert [(r["model"], r["xnnpack"]) for r in rows] == [
      ("dense", True), ("dense", False), ("dkp", True), ("dkp", False)]
  for row in rows:
    dense = rows[0 if row["xnnpack"] else 1]
    assert row["status"] == "ok" and row["insns_per_step"] > 1000
    assert row["max_error_vs_x86"] <= row["tolerance"]
    assert row["insn_speedup_vs_dense"] == dense["insns_per_step"] / row["insns_per_step"]
    assert row["insn_speedup_vs_dense"] == pytest.approx(1.0, rel=0.1)  # the same file twice
  with open(out, encoding="utf-8", newline="") as handle:
    written = list(csv.DictReader(handle))
  assert written[2]["compression"] == "17.5" and written[2]["structure"] == "dkp"
  with open(out[:-4] + ".json", encoding="utf-8") as handle:
    sidecar = json.load(handle)
  assert sidecar["run"]["dir"] == os.path.basename(run_dir) and "units" not in sidecar["config"]
  assert [m["file"] for m in sidecar["given"]] == ["dense_step.tflite", "dkp_step.tflite"]
  assert os.path.getsize(out[:-4] + ".png") > 0
