"""On-device benchmark scripts: the output parser and the scripts' --dry-run (no adb)."""

import ast
import csv
import inspect
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ON_DEVICE = os.path.join(ROOT, "benchmarks", "on_device")
sys.path.insert(0, ON_DEVICE)

import parse_results  # noqa: E402  pylint: disable=wrong-import-position
import time_tflite  # noqa: E402  pylint: disable=wrong-import-position

from tflite_ops import timing  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

# benchmark_model of TF 2.4-era builds: summary line, no memory monitoring.
OLD_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [1]
Graph: [/data/local/tmp/dkp/dkp_25x_step.tflite]
#threads used for CPU inference: [1]
Use xnnpack: [0]
Loaded model /data/local/tmp/dkp/dkp_25x_step.tflite
The input model file size (MB): 0.180644
Initialized session in 5.685ms.
Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=463 first=1137 curr=1051 min=1012 max=1530 avg=1082.33 std=61

Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=955 first=1066 curr=1040 min=1001 max=1397 avg=1047.59 std=38

Inference timings in us: Init: 5685, First inference: 1137, Warmup (avg): 1082.33, Inference (avg): 1047.59
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=2.8125 overall=6.26953
"""

# Recent LiteRT benchmark_model: INFO-prefixed, "Timings (microseconds)", memory lines.
NEW_OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [100]
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/dkp/dense_1x_step.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/dkp/dense_1x_step.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 4.41322
INFO: Initialized session in 12.408ms.
INFO: Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: Timings (microseconds): count=688 first=812 curr=701 min=690 max=1650 avg=726.4 std=55
INFO: Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: Timings (microseconds): count=1411 first=715 curr=702 min=688 max=1203 avg=709.82 std=30 p5=692 median=704 p95=760
INFO: Inference timings in us: Init: 12408, First inference: 812, Warmup (avg): 726.4, Inference (avg): 709.82
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=8.44531 overall=10.3125
INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.8672
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 17 MB
"""

LITERT_JSON = {
    "model": "models/dkp_25x_step.tflite", "model_size_mb": 0.18,
    "accelerators": ["CPU"], "signature": "serving_default", "fully_accelerated": True,
    "num_threads": 1,
    "latency": {"init_ms": 3.1, "warmup_first_ms": 0.61, "warmup_avg_ms": 0.43,
                "num_warmup_runs": 10, "avg_ms": 0.41, "min_ms": 0.38, "max_ms": 0.9,
                "median_ms": 0.4, "std_ms": 0.05, "p5_ms": 0.38, "p95_ms": 0.52,
                "num_runs": 300},
    "throughput_mb_s": 440.0,
}


def test_parse_old_benchmark_model():
  result = parse_results.parse_benchmark_model(OLD_OUTPUT)
  assert result["latency_us_mean"] == pytest.approx(1047.59)
  assert result["latency_us_median"] is None  # benchmark_model prints no median here
  assert (result["latency_us_min"], result["latency_us_max"]) == (1001, 1397)
  assert result["latency_us_std"] == 38 and result["runs"] == 955  # the timed runs, not warm-up
  assert result["init_us"] == 5685 and result["warmup_us_mean"] == pytest.approx(1082.33)
  assert result["num_threads"] == 1 and result["use_xnnpack"] == "0"


def test_parse_new_benchmark_model():
  result = parse_results.parse_benchmark_model(NEW_OUTPUT)
  assert result["latency_us_mean"] == pytest.approx(709.82)
  assert result["latency_us_median"] == 704  # percentiles present
  assert result["runs"] == 1411 and result["latency_us_min"] == 688
  assert result["peak_memory_mb"] == pytest.approx(14.8672)
  assert result["num_threads"] == 2


def test_parse_benchmark_model_stats_only_and_garbage():
  only_stats = "\n".join(line for line in NEW_OUTPUT.splitlines()
                         if "Inference timings" not in line)
  assert parse_results.parse_benchmark_model(only_stats)["latency_us_mean"] == pytest.approx(
      709.82)
  with pytest.raises(ValueError):
    parse_results.parse_benchmark_model("ERROR: Could not open 'x.tflite'.\n")


def test_parse_litert_json():
  result = parse_results.parse_litert_json(json.dumps(LITERT_JSON))
  assert result["latency_us_mean"] == pytest.approx(410)
  assert result["latency_us_median"] == pytest.approx(400)
  assert result["runs"] == 300 and result["tool"] == "benchmark_litert_model"
  timed = parse_results.parse_litert_json({
      "model": "m.tflite", "num_threads": 1, "xnnpack": False, "runs": 5,
      "latency_us_median": 100.0, "latency_us_p10": 90.0, "latency_us_p90": 120.0,
      "latency_us_mean": 101.0})
  assert timed["latency_us_p10"] == 90.0 and timed["tool"] == "time_tflite"


def test_model_fields(tmp_path):
  path = tmp_path / "fused-lstm_1x_sequence.tflite"
  path.write_bytes(b"1234")
  assert parse_results.model_fields(str(path)) == {
      "structure": "fused-lstm", "compression": 1.0, "mode": "sequence", "model_bytes": 4,
      "model": "fused-lstm_1x_sequence"}
  assert parse_results.model_fields(str(tmp_path / "mine.tflite"))["structure"] == "mine"


def test_cli_writes_csv(tmp_path):
  models, raw = tmp_path / "models", tmp_path / "raw"
  models.mkdir()
  raw.mkdir()
  (models / "dense_1x_step.tflite").write_bytes(b"x" * 100)
  (models / "dkp_25x_step.tflite").write_bytes(b"x" * 4)
  (raw / "dense_1x_step__t1__xnnoff.txt").write_text(OLD_OUTPUT)
  (raw / "dkp_25x_step__t1__xnnoff.txt").write_text(
      OLD_OUTPUT.replace("Inference (avg): 1047.59", "Inference (avg): 104.759"))
  (raw / "dkp_25x_step__t1__xnnon.json").write_text(json.dumps(LITERT_JSON))
  (raw / "broken__t1__xnnon.txt").write_text("Segmentation fault\n")
  out = tmp_path / "results.csv"
  subprocess.run([sys.executable, os.path.join(ON_DEVICE, "parse_results.py"), "--model-dir",
                  str(models), "--raw-dir", str(raw), "--out", str(out), "--device", "pixel"],
                 check=True, capture_output=True, text=True)
  with open(out, encoding="utf-8") as handle:
    rows = list(csv.DictReader(handle))
  assert list(rows[0]) == parse_results.COLUMNS
  assert len(rows) == 3  # the broken output is skipped
  by = {(r["structure"], r["xnnpack"]): r for r in rows}
  dkp = by[("dkp", "False")]
  assert dkp["compression"] == "25.0" and dkp["mode"] == "step" and dkp["model_bytes"] == "4"
  assert dkp["latency_us_median"] == "" and dkp["source"] == "benchmark_model"
  assert float(dkp["speedup_vs_dense"]) == pytest.approx(10.0)
  assert dkp["device"] == "pixel"
  assert by[("dkp", "True")]["source"] == "benchmark_litert_model"
  assert by[("dkp", "True")]["speedup_vs_dense"] == ""  # no dense row with XNNPack on


@pytest.fixture(name="model_dir")
def fixture_model_dir(tmp_path):
  directory = tmp_path / "my models"  # a space, to check quoting
  directory.mkdir()
  for name in ("dense_1x_step.tflite", "dkp_25x_step.tflite"):
    (directory / name).write_bytes(b"")
  return directory


def _script(name, *args, env=None):
  return subprocess.run(["bash", os.path.join(ON_DEVICE, name), *map(str, args)],
                        capture_output=True, text=True, timeout=60, check=False,
                        env=env)


def _env(**extra):
  """The environment without TFLITE_BENCHMARK_MODEL, plus ``extra``."""
  env = {k: v for k, v in os.environ.items() if k != "TFLITE_BENCHMARK_MODEL"}
  env.update(extra)
  return env


@pytest.mark.parametrize("threads", [("1", "2"), ("4",)])
def test_android_dry_run(model_dir, threads):
  result = _script("android.sh", model_dir, "--dry-run", "--threads", ",".join(threads),
                   "--cores", "big", env=_env())
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert any(re.search(r"adb push .*benchmark_model /data/local/tmp/dkp/benchmark_model", l)
             for l in lines)
  for stem in ("dense_1x_step", "dkp_25x_step"):
    assert any("adb push" in l and f"{stem}.tflite /data/local/tmp/dkp/" in l for l in lines)
    for thread in threads:
      for flag in ("true", "false"):
        matching = [l for l in lines if f"--graph=/data/local/tmp/dkp/{stem}.tflite" in l
                    and f"--num_threads={thread} " in l and f"--use_xnnpack={flag}" in l]
        assert len(matching) == 1, (stem, thread, flag)
        assert "taskset f0 " in matching[0] and "--num_runs=100" in matching[0]
        assert "--warmup_runs=10" in matching[0]
  assert "parse_results.py" in result.stdout


def test_android_mask_and_missing_binary(model_dir, tmp_path):
  result = _script("android.sh", model_dir, "--dry-run", "--mask", "c0", "--xnnpack", "off")
  assert result.returncode == 0 and "taskset c0 " in result.stdout
  assert "--use_xnnpack=true" not in result.stdout
  fake_bin = tmp_path / "bin"  # a stand-in adb: the binary is what is missing
  fake_bin.mkdir()
  (fake_bin / "adb").write_text("#!/bin/sh\necho adb was called >&2\nexit 1\n")
  (fake_bin / "adb").chmod(0o755)
  env = _env(PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
  result = _script("android.sh", model_dir, env=env)
  assert result.returncode != 0
  assert "--benchmark-model" in result.stderr and "TFLITE_BENCHMARK_MODEL" in result.stderr
  assert "adb was called" not in result.stderr
  missing = _script("android.sh", model_dir, "--benchmark-model", tmp_path / "nope", env=env)
  assert missing.returncode != 0 and "not found" in missing.stderr


def test_rpi_dry_run(model_dir):
  result = _script("rpi.sh", model_dir, "--dry-run", "--threads", "1,2", "--runs", "50")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert "cpu:" in result.stdout and "taskset -c 3" in result.stdout
  for stem in ("dense_1x_step", "dkp_25x_step"):
    for thread in ("1", "2"):
      for xnn in ("on", "off"):
        matching = [l for l in lines if f"{stem}.tflite" in l and f"--num_threads {thread} " in l
                    and f"{stem}__t{thread}__xnn{xnn}.json" in l]
        assert len(matching) == 1, (stem, thread, xnn)
        assert "--num_runs 50" in matching[0]
        if xnn == "off":  # the LiteRT tool cannot turn XNNPack off
          assert "time_tflite.py" in matching[0] and "--xnnpack off" in matching[0]
  python_only = _script("rpi.sh", model_dir, "--dry-run", "--timer", "python", "--xnnpack", "on")
  assert python_only.returncode == 0
  assert "benchmark_litert_model" not in python_only.stdout
  assert python_only.stdout.count("time_tflite.py") == 4


@pytest.mark.parametrize("script", ["android.sh", "rpi.sh"])
def test_missing_model_dir(tmp_path, script):
  result = _script(script, tmp_path / "nowhere", "--dry-run")
  assert result.returncode != 0
  assert "is not a directory" in result.stderr and "nowhere" in result.stderr
  empty = _script(script, tmp_path, "--dry-run")
  assert empty.returncode != 0 and "no *.tflite" in empty.stderr
  usage = _script(script, "-h")
  assert usage.returncode == 0 and "Usage:" in usage.stdout and "--dry-run" in usage.stdout
  bad = _script(script, tmp_path, "--xnnpack", "maybe")
  assert bad.returncode != 0 and "--xnnpack" in bad.stderr


# --- the emulated arm64 target (benchmarks/on_device/emulated) -------------------------------

EMULATED = os.path.join(ON_DEVICE, "emulated")
sys.path.insert(0, EMULATED)

import guest_cpuinfo  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order


@pytest.mark.parametrize("target,cpu", [("emulated-a72", "cortex-a72"),
                                        ("emulated-a76", "cortex-a76"), ("emulated-max", "max")])
def test_rpi_emulated_dry_run(model_dir, tmp_path, target, cpu):
  root = tmp_path / "arm root"
  out = tmp_path / "emu.csv"
  result = _script("rpi.sh", model_dir, "--dry-run", "--target", target, "--root", root,
                   "--threads", "1", "--runs", "7", "--out", out)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert f"cpu: emulated {cpu} " in result.stdout and "(aarch64)" in result.stdout
  assert "taskset" not in result.stdout.split("dry run")[0]  # no board advice
  runs = [l for l in lines if "time_tflite.py" in l]
  assert len(runs) == 4
  for line in runs:  # the board's command, run by the root's python under a pinned CPU
    assert line.startswith("+ env -i ") and f" QEMU_CPU={cpu} " in line
    assert re.search(r"chroot " + re.escape(str(root).replace(" ", "\\ ")) +
                     r" /opt/dkp-venv/bin/python /tmp/dkp-rpi\.DRYRUN/time_tflite\.py ", line)
    assert "--model /tmp/dkp-rpi.DRYRUN/models/" in line and "--num_runs 7" in line
    assert "--result_json /tmp/dkp-rpi.DRYRUN/raw/" in line
  for stem in ("dense_1x_step", "dkp_25x_step"):
    for xnn in ("on", "off"):
      assert sum(f"{stem}__t1__xnn{xnn}.json" in l for l in runs) == 1
  copy = [l for l in lines if l.startswith("+ cp ")]
  assert len(copy) == 1 and "/tmp/dkp-rpi.DRYRUN/raw/" in copy[0]
  parse = [l for l in lines if "parse_results.py" in l]  # the host parses, as the board does
  assert len(parse) == 1 and not parse[0].startswith("+ env -i")
  assert "--model-dir " + str(model_dir).replace(" ", "\\ ") in parse[0]
  assert f"--device emulated\\ {cpu}\\ aarch64" in parse[0]


def test_rpi_emulated_refusals(model_dir, tmp_path):
  bad_target = _script("rpi.sh", model_dir, "--dry-run", "--target", "pi9")
  assert bad_target.returncode == 2 and "--target must be board, emulated-a72" in bad_target.stderr
  stray_root = _script("rpi.sh", model_dir, "--dry-run", "--root", tmp_path)
  assert stray_root.returncode == 2 and "--root applies to emulated targets" in stray_root.stderr
  fake = tmp_path / "bin"  # `id -u` decides; chroot and mount must never be reached
  fake.mkdir()
  for tool in ("chroot", "mount"):
    (fake / tool).write_text(f"#!/bin/sh\necho {tool} was called >&2\nexit 99\n")
    (fake / tool).chmod(0o755)
  for uid, message in (("1000", "emulated targets need root"),
                       ("0", "no finished arm64 root at")):
    (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (fake / "id").chmod(0o755)
    result = _script("rpi.sh", model_dir, "--target", "emulated-a72", "--root",
                     tmp_path / "absent", "--out", tmp_path / "x.csv",
                     env=_env(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "was called" not in result.stderr
  assert "build_root.sh" in result.stderr
  assert not (tmp_path / "x_raw").exists()


def test_guest_cpuinfo_features_and_format():
  hwcap = 1 << 0 | 1 << 1 | 1 << 20 | 1 << 22  # fp asimd asimddp sve
  hwcap2 = 1 << 1 | 1 << 13  # sve2 i8mm
  vector = {guest_cpuinfo.AT_HWCAP: hwcap, guest_cpuinfo.AT_HWCAP2: hwcap2, 6: 4096}
  names = guest_cpuinfo.features(vector)
  assert names == ["fp", "asimd", "asimddp", "sve", "sve2", "i8mm"]
  text = guest_cpuinfo.cpuinfo(0x414fd0b1, 2, names)  # Cortex-A76 r4p1
  assert text.count("processor\t:") == 2 and "processor\t: 1\n" in text
  assert "CPU implementer\t: 0x41\n" in text and "CPU part\t: 0xd0b\n" in text
  assert "CPU variant\t: 0x4\n" in text and "CPU revision\t: 1\n" in text
  assert "Features\t: fp asimd asimddp sve sve2 i8mm\n" in text
  assert guest_cpuinfo.features({}) == []


def _run_in_root(*args, env=None):
  return subprocess.run(["bash", os.path.join(EMULATED, "run_in_root.sh"), *map(str, args)],
                        capture_output=True, text=True, timeout=60, check=False, env=env)


def test_run_in_root_dry_run_and_refusals(tmp_path):
  result = _run_in_root("--dry-run", "--root", tmp_path, "--cpu", "max,sme=off", "--",
                        "/opt/dkp-venv/bin/python", "-c", "print(1)")
  assert result.returncode == 0, result.stderr
  words = shlex.split(result.stdout.strip().lstrip("+ "))
  assert words[:2] == ["env", "-i"] and "QEMU_CPU=max,sme=off" in words
  assert words[-4:] == [str(tmp_path), "/opt/dkp-venv/bin/python", "-c", "print(1)"]
  assert words[-5].endswith("chroot")
  for args, message in ((["--cpu", "cortex-a53", "--", "/bin/true"], "--cpu must be"),
                        (["--cpu", "max,sme=off;rm", "--", "/bin/true"], "--cpu takes"),
                        (["--cpu", "max"], "no COMMAND given"),
                        (["--share", tmp_path / "nope", "--", "/bin/true"], "is not a directory")):
    refused = _run_in_root("--root", tmp_path, *args)
    assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
  fake = tmp_path / "bin"
  fake.mkdir()
  (fake / "id").write_text("#!/bin/sh\necho 0\n")
  (fake / "id").chmod(0o755)
  missing = _run_in_root("--root", tmp_path / "absent", "--", "/bin/true",
                         env=_env(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}"))
  assert missing.returncode == 2 and "no finished arm64 root" in missing.stderr


def test_time_tflite_is_standalone_and_builds_its_interpreter_as_tflite_ops_timing_does():
  """time_tflite.py runs alone on a board, so it carries a copy of timing's interpreter set-up."""
  assert (inspect.getsource(time_tflite.timing_interpreter)
          == inspect.getsource(timing.timing_interpreter)), \
      "edit tflite_ops.timing.timing_interpreter and copy it into time_tflite.py"
  with open(time_tflite.__file__, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  imported = {alias.name.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.Import) for alias in node.names}
  imported |= {node.module.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom)}
  assert imported <= set(sys.stdlib_module_names) | {"numpy", "ai_edge_litert"}, imported


def test_private_apt_state_reads_only_its_own_directory(tmp_path):
  """common.sh's apt options (build_plugins.sh, fetch_qemu.sh): lists, cache and sources in DIR."""
  state = tmp_path / "apt state"
  script = (f'die() {{ exit 9; }}; source {shlex.quote(os.path.join(ON_DEVICE, "common.sh"))}; '
            f'private_apt_state {shlex.quote(str(state))}; printf "%s\\n" "${{APT[@]}}"')
  result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
  assert result.returncode == 0, result.stderr
  assert (state / "lists" / "partial").is_dir()
  assert (state / "cache" / "archives" / "partial").is_dir()
  options = [o for o in result.stdout.splitlines() if o != "-o"]
  assert options == [f"Dir::Etc::SourceList={state}/sources.list",
                     "Dir::Etc::SourceParts=/dev/null", f"Dir::State::Lists={state}/lists",
                     f"Dir::Cache={state}/cache", "Debug::NoLocking=1", "APT::Sandbox::User=root"]


def test_one_argument_command_lines(tmp_path):
  """build_root.sh and build_plugins.sh take -h and one argument (common.sh's parser)."""
  for script in ("build_root.sh", "build_plugins.sh"):
    two = subprocess.run(["bash", os.path.join(EMULATED, script), str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True, timeout=60,
                         check=False)
    name = "ROOT" if script == "build_root.sh" else "DEST"
    assert two.returncode == 2, two.stderr
    assert f"one {name} only (got '{tmp_path / 'a'}' and '{tmp_path / 'b'}')" in two.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
