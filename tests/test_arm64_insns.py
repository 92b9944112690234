"""arm64 instruction counts: plugin log parsing, the estimate and the CSV math on recorded
values (no arm64 root needed), and one real count where the root and plugins exist."""

import os
import shutil

import pytest

from benchmarks import arm64_insns

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
