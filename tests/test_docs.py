"""The documentation: README and guides carry no measured numbers, links resolve, the CLI
reference is generated from the parsers, and the README's example runs."""

import importlib
import os
import re
import sys

import pytest

from benchmarks import cli_page
from benchmarks import common

ROOT = common.PROJECT_ROOT
# Documents that must carry no measured numbers: the numbers live in docs/results.md
# (generated) and the result files. docs/bad_inputs.md is a table of messages.
NUMBER_FREE = ["README.md", os.path.join("benchmarks", "README.md")] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md") and name not in ("results.md", "bad_inputs.md"))
DOCUMENTS = NUMBER_FREE + [os.path.join("docs", name) for name in ("results.md", "bad_inputs.md")]

# What a measured number looks like in prose: a ratio, a percentage, a time, a size, a
# perplexity, a count with thousands separators. Settings (`compression=25`, "25x",
# "2x650", "row CMR from 0.8") are not; neither is anything in code.
_MEASURED = [
    re.compile(r"\d+\.\d+\s?(?:x|×)(?![A-Za-z0-9])"),                   # 9.6x, 0.69x
    re.compile(r"\d+(?:\.\d+)?\s?%"),                                    # 85%, -1.8 %
    re.compile(r"\d+(?:\.\d+)?\s?(?:µs|us|ms|s|sec|seconds|min|minutes|h|hours)(?![A-Za-z])"),
    re.compile(r"\d+(?:\.\d+)?\s?(?:B|KB|KiB|MB|MiB|GB|GiB|bytes)(?![A-Za-z])"),
    re.compile(r"\d+(?:\.\d+)?x\s+(?:faster|slower|smaller|larger|fewer|more|better|worse)"),
    re.compile(r"(?:perplexity|ppl)\D{0,20}(?<![A-Za-z])\d{2,}"),      # perplexity of 134
    re.compile(r"\d{2,}(?:\.\d+)?\s+(?:test\s+|valid\s+)?(?:perplexity|ppl)"),  # 7285 perplexity
    re.compile(r"(?<![\d.])\d+\.\d{2,}(?![\d.])"),                       # 131.55, 0.88
    re.compile(r"\b\d{1,3}(?:,\d{3})+\b"),                               # 1,329,408
]
# Version numbers are not measurements: "Python 3.11", "TF 2.21", "qemu 10.0".
_VERSION = re.compile(r"(?:python|tf|tensorflow|litert|qemu|debian|version|v)\s?[\d.]+$",
                      re.IGNORECASE)


def prose(text):
  """``text`` without fenced code blocks, inline code, link targets and HTML comments."""
  text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
  text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
  text = re.sub(r"`[^`\n]*`", "", text)
  return re.sub(r"\]\([^)]*\)", "]", text)


def measured_numbers(text):
  """The measured-looking numbers in ``text``'s prose."""
  found = []
  plain = prose(text)
  for pattern in _MEASURED:
    for match in pattern.finditer(plain):
      before = plain[max(0, match.start() - 12):match.end()]
      if _VERSION.search(before):
        continue
      found.append(match.group(0))
  return found


@pytest.mark.parametrize("sentence", [
    "a 2x650 step is 9.6x faster than dense", "DKP 25x step 0.69x of dense",
    "DKP reaches 131.55 test", "85% error on a 37-input layer", "dense 198.2 µs",
    "the file is 5,197 KiB", "it takes about 3 minutes on 2 cores", "about 0.7 GB to download",
    "a test perplexity of 134", "params 1,329,408", "the structure alone is at 7285 perplexity",
    "9x smaller", "took 178 s"])
def test_the_check_finds_measured_numbers(sentence):
  assert measured_numbers(sentence), sentence


@pytest.mark.parametrize("sentence", [
    "`DKPLSTM(650, compression=25)` at 25x", "a 2x650 LSTM", "row CMR from 0.8",
    "the Python 3.11 documentation", "`block_size=(4, 1)` is TFLite's 1x4 layout",
    "```\nspeed 9.6x faster\n```", "[results](results.md#latency-1x1)", "TF 2.21, qemu 10.0",
    "two factors, four gates, 35 time steps"])
def test_the_check_leaves_settings_and_code_alone(sentence):
  assert measured_numbers(sentence) == [], sentence


@pytest.mark.parametrize("path", NUMBER_FREE)
def test_docs_carry_no_measured_numbers(path):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    found = measured_numbers(f.read())
  assert found == [], (f"{path} carries measured numbers {found}: they belong in the result files "
                       "and docs/results.md (link there)")


def test_readme_is_short_and_keeps_the_two_commands():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  lines = readme.splitlines()
  assert len(lines) <= 150
  commands = [line for line in lines if line.startswith("python -m pip install")]
  assert any("python -m pipelines.run" in line for line in commands)
  # CI runs this line: it must stay exactly as it is.
  assert any(line.startswith('python -m pip install -e ".[test]" && python -m pytest -q')
             for line in commands)
  long = [line for line in lines if len(line) > 120 and line not in commands
          and not line.startswith("|")]
  assert long == []


def _slug(heading):
  """GitHub's anchor of a Markdown heading."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(path):
  with open(path, encoding="utf-8") as f:
    text = f.read()
  anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
  anchors |= {_slug(h) for h in re.findall(r"^#+ (.+)$", prose(text), flags=re.MULTILINE)}
  return anchors


@pytest.mark.parametrize("path", DOCUMENTS)
def test_relative_links_resolve(path):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    text = re.sub(r"^```.*?^```", "", f.read(), flags=re.MULTILINE | re.DOTALL)
  broken = []
  for target in re.findall(r"\]\(([^)\s]+)\)", text):
    if re.match(r"[a-z]+://", target):
      continue
    file_part, _, anchor = target.partition("#")
    resolved = (os.path.normpath(os.path.join(ROOT, os.path.dirname(path), file_part))
                if file_part else os.path.join(ROOT, path))
    if not os.path.exists(resolved):
      broken.append(target)
    elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
      broken.append(target)
  assert broken == [], f"{path}: broken links {broken}"


def test_cli_reference_is_generated_from_the_parsers():
  with open(os.path.join(ROOT, cli_page.PAGE), encoding="utf-8") as f:
    committed = f.read()
  assert committed == cli_page.render(), (
      "docs/cli.md is stale: run `python -m benchmarks.cli_page` and commit it")


def test_every_cli_is_in_the_reference():
  names = cli_page.cli_modules()
  assert {"pipelines.train", "pipelines.convert", "pipelines.run", "benchmarks.latency",
          "benchmarks.results_page"} <= set(names)
  page = cli_page.render()
  for name in names:
    section = page.split(f"## `python -m {name}`\n")[1].split("\n## ")[0]
    module = importlib.import_module(name)
    if cli_page.is_deprecated(module):
      assert "usage:" not in section
    else:
      assert f"usage: python -m {name}" in section


def test_a_deprecated_alias_is_listed_without_its_help(tmp_path, monkeypatch):
  package = tmp_path / "dkp_docs_fake_tools"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "old_tool.py").write_text(
      '"""Deprecated name of `pipelines.train`."""\nif __name__ == "__main__":\n  pass\n')
  monkeypatch.setattr(cli_page, "PACKAGES", ("dkp_docs_fake_tools",))
  monkeypatch.syspath_prepend(str(tmp_path))
  page = cli_page.render(str(tmp_path))
  heading = "## `python -m dkp_docs_fake_tools.old_tool`"
  assert f"{heading}\n\nDeprecated name of `pipelines.train`.\n" in page
  assert "usage:" not in page


def test_readme_example_runs(tmp_path, monkeypatch):
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    example = re.search(r"```python\n(.*?)```", f.read(), flags=re.DOTALL).group(1)
  monkeypatch.chdir(tmp_path)
  exec(compile(example, "README.md", "exec"), {})  # pylint: disable=exec-used
  assert (tmp_path / "lm.keras").exists() and (tmp_path / "lm.tflite").exists()
