"""benchmarks.results_page: the committed results page is what the result files give."""

import csv
import os
import shutil

import pandas as pd
import pytest

from benchmarks import accuracy
from benchmarks import common
from benchmarks import results_page

ROOT = common.PROJECT_ROOT


def _copy_results(tmp_path):
  """A project root under ``tmp_path`` holding a copy of the committed result files."""
  for directory in results_page.RESULT_DIRS:
    source = os.path.join(ROOT, directory)
    if os.path.isdir(source):
      shutil.copytree(source, tmp_path / directory)
  return tmp_path


def _append_rows(path, rows):
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    columns = reader.fieldnames
    template = next(reader)
  with open(path, "a", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    for row in rows:
      writer.writerow({**template, **row})


def test_committed_page_is_what_the_result_files_give():
  with open(os.path.join(ROOT, results_page.PAGE), encoding="utf-8") as f:
    committed = f.read()
  assert committed == results_page.render(), (
      "docs/results.md is stale: run `python -m benchmarks.results_page` and commit it")


def test_every_result_file_has_a_section():
  assert results_page.unlisted_results() == []


def test_every_section_names_its_source_and_command():
  page = results_page.render()
  for section in results_page.SECTIONS:
    start = page.index(f'<a id="{section.anchor}"></a>')
    body = page[start:page.find('<a id="', start + 1)]
    assert f"Source: [`{results_page.find_result(section.source)}`]" in body
    assert "Regenerate: `python -m benchmarks." in body or "Regenerate: `sudo python -m" in body


def test_rows_added_to_an_accuracy_csv_show_up(tmp_path):
  root = _copy_results(tmp_path)
  path = root / results_page.find_result("ptb_small.csv", ROOT)
  # A fourth dense seed moves the dense mean; a new method gets its own row.
  _append_rows(path, [{"method": "dense", "compression": "1", "seed": "3", "test_ppl": "140.0"},
                      {"method": "dkp-new-knob", "compression": "25", "seed": "0",
                       "test_ppl": "130.0", "valid_ppl": "138.0"}])
  page = results_page.render(str(root))
  dense_line = next(line for line in page.splitlines() if line.startswith("| dense | 1x |"))
  assert "| 0,1,2,3 |" in dense_line
  new_line = next(line for line in page.splitlines() if line.startswith("| dkp-new-knob |"))
  assert "| 130.00 |" in new_line and "| 138.00 |" in new_line
  assert page != results_page.render()


def test_an_uncovered_result_file_is_an_error(tmp_path):
  root = _copy_results(tmp_path)
  (root / results_page.RESULT_DIRS[0] / "new_benchmark.json").write_text("{}")
  with pytest.raises(ValueError, match="new_benchmark.json"):
    results_page.render(str(root))


def test_a_missing_result_file_is_an_error(tmp_path):
  root = _copy_results(tmp_path)
  os.remove(root / results_page.find_result("checkpoint_size.json", ROOT))
  with pytest.raises(FileNotFoundError, match="checkpoint_size.json"):
    results_page.render(str(root))


def test_a_study_is_found_under_studies_with_its_own_command():
  page = results_page.render(ROOT)
  assert "Source: [`benchmarks/studies/results/sgd_probe.json`]" in page
  assert "`python -m benchmarks.studies.sgd_probe" in page


def test_a_result_file_is_looked_up_in_every_result_directory(tmp_path):
  root = _copy_results(tmp_path)
  # A study's result that (still) sits in benchmarks/results is found there.
  shutil.move(str(root / "benchmarks" / "studies" / "results" / "sgd_probe.json"),
              str(root / results_page.RESULT_DIRS[0] / "sgd_probe.json"))
  page = results_page.render(str(root))
  assert "Source: [`benchmarks/results/sgd_probe.json`]" in page


def test_check_flag_reports_a_stale_page(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(results_page.common, "PROJECT_ROOT", str(_copy_results(tmp_path)))
  os.makedirs(tmp_path / "docs")
  (tmp_path / "docs" / "results.md").write_text("stale\n")
  monkeypatch.setattr(results_page, "render", lambda: "fresh\n")
  assert results_page.main(["--check"]) == 1
  assert "stale" in capsys.readouterr().err
  assert results_page.main([]) == 0
  assert results_page.main(["--check"]) == 0


def test_keras3_rows_are_their_own_line_beside_the_tf_keras_rows(tmp_path):
  rows = [{"method": m, "compression": c, "seed": seed, "valid_ppl": ppl, "test_ppl": ppl,
           "params": 1, "model_bytes": 1, "lstm_compression": c, "epochs": 6, "preset": "p",
           "recipe": "r", "commit": "abc", "wall_s": 60.0, "corpus": "ptb", "frontend": frontend}
          for m, c, seed, ppl, frontend in (
              ("dense", 1.0, 0, 100.0, "tf_keras"), ("dkp", 25.0, 0, 104.0, "tf_keras"),
              ("dkp", 25.0, 1, 106.0, "tf_keras"), ("dkp", 25.0, 0, 110.0, "keras3-jax"))]
  path = tmp_path / "a.csv"
  pd.DataFrame(rows).reindex(columns=accuracy.COLUMNS).to_csv(path, index=False)
  text = "\n".join(results_page.render_accuracy(str(path)))
  assert "| dkp | 25x | 25.0x | 0.0k | 0,1 | 105.00 | 105.00 (104.00–106.00) | +5.0% |" in text
  assert "| dkp [keras3-jax] | 25x | 25.0x | 0.0k | 0 | 110.00 | 110.00 | +10.0% |" in text
  assert ("dkp 25x on keras3-jax (1 seeds) vs tf_keras (2 seeds, 6 epochs): test perplexity "
          "110.00 vs 105.00 (104.00–106.00), +4.8%; within or below the tf_keras seeds' "
          "spread: **missed**") in text
