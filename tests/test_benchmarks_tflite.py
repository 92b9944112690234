"""Smoke tests of the LiteRT benchmarks (sparse kernels, conversion time): tiny sizes."""

import json

from benchmarks import convert_time
from benchmarks import sparse_kernels


def test_sparse_kernels_quick(tmp_path):
  out = tmp_path / "results" / "sparse_kernels.json"
  data = sparse_kernels.main([
      "--quick", "--in", "32", "--out", "48", "--densities", "0.05,0.4", "--repeats", "2",
      "--invokes", "5", "--out-json", str(out)
  ])
  written = json.loads(out.read_text())
  assert written["config"] == data["config"]
  assert list(tmp_path.joinpath("results").iterdir()) == [out]  # no temp file left behind
  assert written["host"]["ai_edge_litert"] and written["host"]["tensorflow"]
  variants = {v["name"]: v for v in written["variants"]}
  # baseline + 2 patterns x 2 densities x 3 kernels (+ 'auto' where the rule picks dense)
  assert "baseline" in variants and len(variants) >= 13
  for name, variant in variants.items():
    assert variant["file_bytes"] > 0, name
    for resolver in sparse_kernels.RESOLVERS:
      timing = variant["timings"][resolver]
      assert timing["median_us"] > 0 and len(timing["samples_us"]) == 2, (name, resolver)
      assert timing["speedup_vs_dense"] > 0
      assert variant["max_normwise_error"][resolver] < 1e-4, (name, resolver)
  assert variants["baseline"]["timings"]["xnnpack"]["speedup_vs_dense"] == 1.0
  assert not variants["baseline"]["stored_sparse"]
  # (4, 1) Keras blocks are stored in TFLite's fast 1x4 layout; the dense kernel never sparse.
  assert variants["block41/0.05/block"]["fast_1x4"]
  assert not variants["block41/0.05/dense"]["stored_sparse"]
  assert len(written["auto_rule"]) == 2 * 2 * len(sparse_kernels.RESOLVERS)
  for row in written["auto_rule"]:
    assert row["auto_pick"] in ("block", "csr", "dense") and row["fastest"] in sparse_kernels.METHODS
    assert isinstance(row["auto_wrong"], bool)


def test_convert_time_quick(tmp_path):
  out = tmp_path / "convert_time.json"
  data = convert_time.main([
      "--quick", "--units", "16", "--vocab", "100", "--seq-len", "3", "--out-json", str(out)
  ])
  written = json.loads(out.read_text())
  assert written["config"] == data["config"]
  assert set(written["conversions"]) == {f"{kind}/{mode}" for kind in convert_time.MODELS
                                         for mode in convert_time.MODES}
  for name, entry in written["conversions"].items():
    assert 0 < entry["convert_seconds"] <= entry["total_seconds"], name
    assert entry["file_bytes"] > 0 and entry["lstm_file_bytes"] > 0
    assert entry["verification"]["max_error"] <= entry["verification"]["tolerance"]
    assert {"file", "sparse_values", "dense_model_float32"} <= set(entry["bytes"])
    assert "fast_block_sparse" in entry["sparsity"]
  dkp_entry = written["conversions"]["dkp/sequence"]
  # Annealed S is stored in the fast layout, and the LSTM weights shrink.
  assert dkp_entry["sparsity"]["fast_block_sparse"] >= 1
  assert dkp_entry["lstm_file_compression"] > 1.5
  assert written["conversions"]["dense/sequence"]["op_counts"].get(
      "UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
