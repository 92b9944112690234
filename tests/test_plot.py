"""benchmarks.plot: both PNGs from a latency CSV; a wrong CSV is named."""

import pandas as pd

from benchmarks import plot


def test_writes_both_plots(tmp_path):
  rows = [{"structure": s, "compression": c, "mode": "step", "threads": 1, "xnnpack": x,
           "latency_us_median": 100.0 / c, "model_bytes": 1e6 / c}
          for s, cs in (("dense", [1.0]), ("dkp", [10.0, 25.0])) for c in cs
          for x in (True, False)]
  csv = tmp_path / "latency.csv"
  pd.DataFrame(rows).to_csv(csv, index=False)
  written = plot.plot(str(csv))
  assert [p.rsplit("/", 1)[-1] for p in written] == [
      "latency_latency_vs_compression.png", "latency_size_vs_latency.png"]
  assert all((tmp_path / p.rsplit("/", 1)[-1]).stat().st_size > 1000 for p in written)


def test_rejects_a_csv_without_the_columns(tmp_path, capsys):
  csv = tmp_path / "other.csv"
  csv.write_text("a,b\n1,2\n")
  assert plot.main([str(csv)]) == 1
  assert "missing columns" in capsys.readouterr().err
