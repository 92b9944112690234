"""Tests for tflite_ops.describe on tiny models converted once per module."""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tflite_ops import describe  # noqa: E402
from tflite_ops.describe import (  # noqa: E402
    SparsityInfo, TFLiteFormatError, format_model_info, inspect_model, is_fast_block_sparse, main)

N_IN, N_OUT, DENSITY = 64, 128, 0.05
REPO = pathlib.Path(__file__).resolve().parents[1]


def planted_blocks(block, density=DENSITY, seed=0):
  """A Keras [in, out] kernel with nonzero ``block``s at ``density``; (kernel, block mask)."""
  bh, bw = block
  rng = np.random.default_rng(seed)
  grid = (N_IN // bh, N_OUT // bw)
  mask = np.zeros(grid[0] * grid[1], bool)
  mask[rng.choice(mask.size, round(density * mask.size), replace=False)] = True
  mask = mask.reshape(grid)
  # Values away from 0 so every planted block is really nonzero throughout.
  kernel = np.where(np.kron(mask, np.ones(block, bool)), rng.uniform(0.5, 1.5, (N_IN, N_OUT)), 0)
  return kernel.astype(np.float32), mask


def convert(fn, specs, sparsity=False):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  module = tf.Module()
  module.f = tf.function(fn, input_signature=[tf.TensorSpec(s, tf.float32) for s in specs])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.f.get_concrete_function()], module)
  if sparsity:
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  return converter.convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """Convert every test model once: name -> (path, extra facts)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  w = rng.standard_normal((N_IN, 32)).astype(np.float32)
  b = rng.standard_normal(32).astype(np.float32)
  s41, mask41 = planted_blocks((4, 1))
  s14, mask14 = planted_blocks((1, 4))
  a = rng.standard_normal((4, 8)).astype(np.float32)
  bt = rng.standard_normal((8, 16)).astype(np.float32)
  built = {
      # x @ W + b fuses into one FULLY_CONNECTED with a bias; adding a second
      # input keeps a real ADD.
      "dense": (convert(lambda x, r: tf.matmul(x, w) + b + r, [[1, N_IN], [1, 32]]), None),
      "block41": (convert(lambda x: tf.matmul(x, s41), [[1, N_IN]], sparsity=True), mask41),
      "block14": (convert(lambda x: tf.matmul(x, s14), [[1, N_IN]], sparsity=True), mask14),
      # A Kronecker-style product: reshape, matmul, transpose.
      "kron": (convert(lambda x: tf.reshape(tf.transpose(
          tf.matmul(a, tf.reshape(x, [8, 8]) @ bt), [1, 0]), [1, 64]), [[1, N_IN]]), None),
  }
  root = tmp_path_factory.mktemp("tflite")
  out = {}
  for name, (data, extra) in built.items():
    path = root / f"{name}.tflite"
    path.write_bytes(data)
    out[name] = (path, extra)
  return out


def test_dense_model(models):
  path, _ = models["dense"]
  info = inspect_model(path)
  assert [op.name for op in info.ops] == ["FULLY_CONNECTED", "ADD"]
  assert info.op_counts == {"FULLY_CONNECTED": 1, "ADD": 1}
  assert all(op.subgraph == 0 for op in info.ops)
  assert info.weights_bytes == 4 * N_IN * 32 + 4 * 32
  assert info.sparse_tensors == []
  assert info.file_bytes == path.stat().st_size
  # The converter orders signature inputs by name: r before x.
  assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [
      ("serving_default_r:0", (1, 32), "float32"), ("serving_default_x:0", (1, N_IN), "float32")]
  assert [(o.shape, o.dtype) for o in info.outputs] == [((1, 32), "float32")]
  assert not info.uses_flex and info.custom_ops == []
  weight = max(info.constant_tensors, key=lambda t: t.buffer_bytes)
  assert weight.shape == (32, N_IN) and weight.consumers == ("FULLY_CONNECTED",)
  assert inspect_model(path.read_bytes()).summary() == info.summary()  # bytes in, same answer


def test_block_sparse_on_inputs_is_fast(models):
  path, mask = models["block41"]
  info = inspect_model(path)
  assert info.op_counts == {"FULLY_CONNECTED": 1}
  [t] = info.sparse_tensors
  s = t.sparsity
  planted = int(mask.sum())
  assert t.shape == s.dense_shape == (N_OUT, N_IN)   # TFLite weight is [out, in]
  assert is_fast_block_sparse(t) and is_fast_block_sparse(s)
  assert s.block_shape == (1, 4) and s.block_map == (1,) and s.traversal_order == (0, 1, 2)
  assert s.dim_formats == ("dense", "sparse_csr", "dense")
  assert s.num_blocks == planted
  assert s.values_bytes == t.buffer_bytes == planted * 4 * 4
  assert s.density == pytest.approx(planted * 4 / (N_IN * N_OUT))
  assert s.density == pytest.approx(DENSITY, abs=0.005)
  # 129 row segments <= 102 and 16 block columns both fit uint8.
  assert s.index_types == ("uint8", "uint8")
  assert s.indices_bytes == (N_OUT + 1) + planted
  assert info.weights_bytes == s.values_bytes


def test_accounting_matches_the_file(models):
  """dkp_keras.compression's byte count of S is what the converter really stores."""
  from dkp_keras.compression import sparse_bytes  # pylint: disable=import-outside-toplevel
  path, mask = models["block41"]
  [t] = inspect_model(path).sparse_tensors
  kernel = np.kron(mask, np.ones((4, 1))).astype(np.float32)
  assert sparse_bytes(kernel, (4, 1)) == t.sparsity.total_bytes


def test_block_layout_is_inputs_of_one_output(models):
  """Decode the stored CSR: block (row r, index c) covers inputs 4c..4c+3 of output r."""
  path, mask = models["block41"]
  fbu, _ = describe._flatbuffer_modules()  # pylint: disable=protected-access
  model = fbu.read_model_from_bytearray(bytearray(path.read_bytes()))
  [tensor] = [t for t in model.subgraphs[0].tensors if t.sparsity is not None]
  dim = tensor.sparsity.dimMetadata[1]
  segments, indices = dim.arraySegments.values, dim.arrayIndices.values
  stored = {(r, int(c)) for r in range(N_OUT) for c in indices[segments[r]:segments[r + 1]]}
  assert stored == {(int(r), int(c)) for c, r in zip(*np.nonzero(mask))}


def test_block_sparse_on_outputs_is_densified(models):
  # 4 consecutive outputs are 4x1 in TFLite's [out, in] layout, a block the float
  # FC does not support: the converter stores the weight as unstructured CSR and
  # inserts DENSIFY, so the FC runs dense (measured: no faster than dense).
  path, mask = models["block14"]
  info = inspect_model(path)
  [t] = info.sparse_tensors
  s = t.sparsity
  assert not is_fast_block_sparse(t) and not is_fast_block_sparse(s)
  assert s.block_shape == (1, 1) and s.block_map == () and s.dim_formats == ("dense", "sparse_csr")
  assert s.num_blocks == 4 * int(mask.sum()) and s.values_bytes == 4 * s.num_blocks
  assert s.index_types == ("uint16", "uint8")   # 408 stored values need uint16 segments
  assert t.consumers == ("DENSIFY",) and info.op_counts == {"DENSIFY": 1, "FULLY_CONNECTED": 1}
  assert "DENSIFY (runs dense)" in format_model_info(info)


@pytest.mark.parametrize("sparsity, fast", [
    (SparsityInfo((0, 1, 2), (1,), (1, 4), ("dense", "sparse_csr", "dense"), ("uint8", "uint8"),
                  1, 16, 2, (8, 8), 0.0625), True),
    # 4 outputs of one input (block on dim 0): stored, but not the fast kernel.
    (SparsityInfo((0, 1, 2), (0,), (4, 1), ("dense", "sparse_csr", "dense"), ("uint8", "uint8"),
                  1, 16, 2, (8, 8), 0.0625), False),
    (SparsityInfo((0, 1), (), (1, 1), ("dense", "sparse_csr"), ("uint8", "uint8"),
                  4, 16, 6, (8, 8), 0.0625), False),
    (None, False),
])
def test_is_fast_block_sparse_layouts(sparsity, fast):
  assert is_fast_block_sparse(sparsity) is fast


def test_reshape_and_transpose_appear(models):
  info = inspect_model(models["kron"][0])
  assert {"RESHAPE", "TRANSPOSE"} <= set(info.op_counts)
  assert info.sparse_tensors == []
  assert info.op_counts["RESHAPE"] == sum(op.name == "RESHAPE" for op in info.ops)


def test_both_flatbuffer_readers_agree(models):
  """LiteRT's light reader (the default) and TensorFlow's parse the same indices."""
  data = bytearray(models["block41"][0].read_bytes())

  def stored_indices(backend):
    fbu, _ = describe._flatbuffer_modules(backend)  # pylint: disable=protected-access
    model = fbu.read_model_from_bytearray(data)
    [t] = [t for t in model.subgraphs[0].tensors if t.sparsity is not None]
    return t.sparsity.dimMetadata[1].arrayIndices.values.tolist()

  assert stored_indices("litert") == stored_indices("tensorflow")


# What tflite_ops/__init__.py promises: these modules import no TensorFlow.
LIGHT_MODULES = ("describe", "sparse_fc_rewrite", "quantize", "timing", "files", "inspect",
                 "lowering_options", "quiet_tensorflow")


def test_file_level_modules_import_no_tensorflow():
  """Importing them (in a fresh process) leaves TensorFlow and Keras unloaded (dkp_keras' pure
  numpy modules, such as `blocks`, are allowed)."""
  code = ("import sys, warnings\nwarnings.simplefilter('ignore')\n"
          + "".join(f"import tflite_ops.{name}\n" for name in LIGHT_MODULES)
          + "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras', "
            "'keras'}))")
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=120, check=False)
  assert run.returncode == 0, run.stderr
  assert run.stdout.strip() == "[]"


def test_init_names_every_module_and_whether_it_imports_tensorflow():
  """The package docstring lists each module; the ones it calls TensorFlow-free are tested above."""
  doc = (REPO / "tflite_ops" / "__init__.py").read_text()
  modules = {p.stem for p in (REPO / "tflite_ops").glob("*.py")} - {"__init__", "inspect"}
  assert all(f"`{name}`" in doc for name in modules), modules
  heavy = modules - set(LIGHT_MODULES)
  assert heavy == {"lowering", "sparse_matmul"}
  for name in heavy:  # they import TensorFlow at module level, as the docstring says
    tree = ast.parse((REPO / "tflite_ops" / f"{name}.py").read_text())
    assert any(a.name == "tensorflow" for n in tree.body if isinstance(n, ast.Import)
               for a in n.names), name


def test_cli_prints_table_and_writes_json(models, tmp_path):
  path = models["block41"][0]
  out = tmp_path / "info.json"
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  run = subprocess.run([sys.executable, "-m", "tflite_ops.describe", str(path), "--json", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                       check=False)
  assert run.returncode == 0, run.stderr
  assert "FULLY_CONNECTED" in run.stdout and "1x4 blocks" in run.stdout
  assert "fast sparse FC" in run.stdout
  summary = json.loads(out.read_text())
  assert summary["op_counts"] == {"FULLY_CONNECTED": 1}
  [sparse] = summary["sparse_tensors"]
  assert sparse["fast_block_sparse"] and sparse["block_shape"] == [1, 4]
  assert [p.name for p in tmp_path.iterdir()] == ["info.json"]   # no temp file left behind


def test_old_cli_name_still_works_and_says_it_is_deprecated(models, tmp_path):
  """``python -m tflite_ops.inspect`` (the name before the rename) prints the same table."""
  path = models["block41"][0]
  env = {**os.environ, "PYTHONPATH": str(REPO)}

  def cli(module):
    return subprocess.run([sys.executable, "-m", module, str(path)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120, check=False)

  new, old = cli("tflite_ops.describe"), cli("tflite_ops.inspect")
  assert new.returncode == old.returncode == 0, old.stderr
  assert old.stdout == new.stdout and "fast sparse FC" in old.stdout
  assert "deprecated" not in new.stderr
  assert "tflite_ops.inspect is deprecated" in old.stderr and "tflite_ops.describe" in old.stderr


def test_old_module_name_warns_and_gives_the_same_functions(monkeypatch):
  monkeypatch.delitem(sys.modules, "tflite_ops.inspect", raising=False)
  with pytest.warns(DeprecationWarning, match="use tflite_ops.describe"):
    old = importlib.import_module("tflite_ops.inspect")
  assert old.inspect_model is describe.inspect_model and old.main is describe.main
  assert old.is_fast_block_sparse is describe.is_fast_block_sparse


def test_cli_hides_tensorflows_start_up_log_unless_verbose(models, tmp_path):
  """Without LiteRT the file is read with TensorFlow's reader, whose import logs at start-up."""
  no_litert = tmp_path / "no_litert" / "ai_edge_litert"
  no_litert.mkdir(parents=True)
  (no_litert / "__init__.py").write_text("raise ImportError('LiteRT left out for this test')\n")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(no_litert.parent)])

  def cli(*flags):
    return subprocess.run([sys.executable, "-m", "tflite_ops.describe", str(models["dense"][0]),
                           *flags], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=180, check=False)

  verbose = cli("--verbose")
  assert verbose.returncode == 0 and "FULLY_CONNECTED" in verbose.stdout, verbose.stderr
  if "absl::InitializeLog" not in verbose.stderr:
    pytest.skip("this TensorFlow prints nothing at start-up: nothing to hide")
  quiet = cli()
  assert quiet.returncode == 0 and quiet.stdout == verbose.stdout, quiet.stderr
  assert quiet.stderr == ""


def run_main(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    main([str(a) for a in argv])
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return exit_info.value.code, err


def test_cli_missing_file(tmp_path, capsys):
  code, err = run_main([tmp_path / "nope.tflite"], capsys)
  assert code == 2 and "not found" in err and "nope.tflite" in err


def test_cli_text_file_is_not_a_model(tmp_path, capsys):
  fake = tmp_path / "notes.tflite"
  fake.write_text("these are some notes, not a model\n")
  code, err = run_main([fake], capsys)
  assert code == 2 and f"{fake} is not a TFLite model" in err
  with pytest.raises(TFLiteFormatError, match="not a TFLite model"):
    inspect_model(b"TFL")


def test_cli_truncated_model(models, tmp_path, capsys):
  data = models["dense"][0].read_bytes()
  for keep in (len(data) // 2, 64, len(data) - 200):
    cut = tmp_path / f"cut{keep}.tflite"
    cut.write_bytes(data[:keep])
    code, err = run_main([cut], capsys)
    assert code == 2 and "truncated" in err, err


def test_main_returns_zero_and_json(models, tmp_path, capsys):
  out = tmp_path / "dense.json"
  assert main([str(models["dense"][0]), "--json", str(out)]) == 0
  assert "ADD" in capsys.readouterr().out
  assert json.loads(out.read_text())["weights_bytes"] == 4 * N_IN * 32 + 4 * 32
