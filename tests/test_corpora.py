"""`pipelines.corpora`: reST to PTB-like words, the whole-file split, the python-docs corpus."""

import functools
import json
import random

import numpy as np
import pytest

from pipelines import corpora
from pipelines import data
from pipelines import presets
from pipelines import train
from pipelines import training

RST = """\
.. _json-module:

:mod:`json` --- JSON encoder and decoder
========================================

.. module:: json
   :synopsis: Encode and decode the JSON format.

.. sectionauthor:: Bob Ippolito <bob@example.com>

`JSON <https://json.org>`_ is specified by :rfc:`7159` and is
lightweight [#errata]_.  It doesn't parse *every* ``NaN``.

Encoding basic objects::

    >>> import json
    >>> json.dumps([1, 2])

Decoding::

   json.loads("[1]")
Back at Level 1, e.g. Fred L. Drake wrote it.

.. code-block:: shell-session

    $ python -m json.tool

>>> json.loads('2')
2

.. function:: dumps(obj, *, skipkeys=False,
                    indent=None)

   Serialize *obj* using :func:`~os.path.join` and :meth:`str.join`.

   .. versionchanged:: 3.6
      All optional parameters are now keyword-only.

   .. note:: Keys are always strings.

.. index:: single: hidden index words

.. Some comment
   that goes on.

+------+---------+
| cell | table   |
+------+---------+

=====  =====
left   right
=====  =====

* First item costs 1,000 dollars
* Second item: see :ref:`json-commandline`.

.. [#errata] As noted in the errata.
"""

EXPECTED = [
    "json json encoder and decoder",
    "json is specified by rfc N and is lightweight",
    "it does n't parse every nan",
    "encoding basic objects",
    "decoding",
    "back at level N e.g. fred l drake wrote it",
    "serialize obj using join and str join",
    "all optional parameters are now keyword-only",
    "keys are always strings",
    "first item costs N dollars",
    "second item see json commandline",
    "as noted in the errata",
]


def _words(text):
  return [" ".join(corpora.sentence_words(s)) for s in corpora.rst_sentences(text)]


def test_rst_markup_is_stripped_and_code_dropped():
  assert _words(RST) == EXPECTED


def test_sentence_words_are_ptb_like():
  words = corpora.sentence_words("Python 3.11's os.path (e.g. UTF-8) can't: 42, 1.5x & __init__!")
  assert words == ["python", "N", "'s", "os", "path", "e.g.", "utf-8", "ca", "n't", "N", "1.5x",
                   "__init__"]
  assert corpora.sentence_words("--- ... !!!") == []


def test_splits_are_whole_files_by_word_fraction_and_deterministic():
  rng = random.Random(0)
  counts = {f"dir{i % 7}/file{i}.rst.txt": rng.randint(50, 500) for i in range(300)}
  splits = corpora.assign_splits(counts)
  shuffled = dict(sorted(counts.items(), key=lambda item: rng.random()))
  assert corpora.assign_splits(shuffled) == splits  # independent of the input's order
  total = sum(counts.values())
  share = {s: sum(n for p, n in counts.items() if splits[p] == s) / total
           for s in ("train", "valid", "test")}
  assert share["train"] == pytest.approx(0.8, abs=0.01)
  assert share["valid"] == pytest.approx(0.1, abs=0.01)
  # Not contiguous in path order: every split draws from every directory.
  for split in ("valid", "test"):
    assert {p.split("/")[0] for p in splits if splits[p] == split} == {f"dir{i}" for i in range(7)}


def _write_tree(root, files=40, seed=0):
  """A fake _sources tree: files of sentences over a Zipf-ish vocabulary, plus markup."""
  rng = random.Random(seed)
  vocabulary = [f"w{i}" for i in range(300)]
  weights = [1 / (i + 1) for i in range(len(vocabulary))]
  for index in range(files):
    path = root / f"part{index % 3}" / f"doc{index:02d}.rst.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"Title {index}", "=========", ""]
    for _ in range(12):
      lines.append(" ".join(rng.choices(vocabulary, weights, k=8)).capitalize() + ".")
      lines.append("")
    lines += ["Example::", "", "   code_word_never_read()", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
  (root / "notes.txt").write_text("not a source file\n")
  return root


def test_read_python_docs_on_a_fake_tree(tmp_path):
  root = _write_tree(tmp_path / "_sources")
  corpus = corpora.read_python_docs(root, max_vocab=50)
  assert isinstance(corpus, data.Corpus) and corpus.name == "python-docs"
  assert corpus.vocab_size == 50 and corpus.vocab.unk_token == data.UNK
  assert corpus.vocab_options == {"min_count": 1, "max_vocab": 50}
  # Each split is its files' words, in sorted path order, encoded with the train vocabulary.
  paths = sorted(root.rglob("*.rst.txt"), key=lambda p: p.relative_to(root).as_posix())
  words = {p.relative_to(root).as_posix(): [w for s in corpora.rst_sentences(p.read_text())
                                            for w in corpora.sentence_words(s) + [data.EOS]]
           for p in paths}
  splits = corpora.assign_splits({p: len(w) for p, w in words.items()})
  for split in ("train", "valid", "test"):
    expected = [w for p, w in words.items() if splits[p] == split]
    assert expected, split
    stream = [w for file_words in expected for w in file_words]
    assert corpus.vocab.decode(getattr(corpus, split)) == [
        w if w in corpus.vocab else data.UNK for w in stream]
  decoded = corpus.vocab.decode(corpus.train)
  assert "code_word_never_read" not in " ".join(w for ws in words.values() for w in ws)
  assert "N" in decoded and data.UNK in decoded  # titles' numbers; words beyond the cap
  assert np.array_equal(corpora.read_python_docs(root, max_vocab=50).test, corpus.test)
  assert corpora.read_python_docs(root, max_vocab=None).vocab_size > 300 // 2


def test_read_python_docs_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"apt-get install python3\.11-doc"):
    corpora.read_python_docs(tmp_path / "absent")
  (tmp_path / "file").write_text("x")
  with pytest.raises(NotADirectoryError, match="not a directory"):
    corpora.read_python_docs(tmp_path / "file")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match=r"no \*\.rst\.txt files under .*python3\.11-doc"):
    corpora.read_python_docs(tmp_path / "empty")
  one = tmp_path / "one"
  one.mkdir()
  (one / "only.rst.txt").write_text("Just one file.\n")
  with pytest.raises(ValueError, match="no words fall in the valid and test split"):
    corpora.read_python_docs(one)
  bad = _write_tree(tmp_path / "bad", files=5)
  (bad / "latin1.rst.txt").write_bytes("caf\xe9\n".encode("latin-1"))
  with pytest.raises(ValueError, match="latin1.rst.txt: not a UTF-8 text file"):
    corpora.read_python_docs(bad)
  with pytest.raises(ValueError, match="unknown corpus 'wiki'; choose one of"):
    corpora.get_reader("wiki")


@pytest.mark.skipif(not corpora.PYTHON_DOCS_ROOT.is_dir(),
                    reason=f"Debian's {corpora.PYTHON_DOCS_PACKAGE} is not installed "
                    f"({corpora.PYTHON_DOCS_ROOT} absent; apt-get install "
                    f"{corpora.PYTHON_DOCS_PACKAGE} to run it)")
def test_the_real_python_docs_corpus():
  corpus = corpora.read_python_docs()
  sizes = {s: getattr(corpus, s).size for s in ("train", "valid", "test")}
  total = sum(sizes.values())
  assert 1_000_000 < total < 1_600_000, sizes
  assert sizes["train"] / total == pytest.approx(0.8, abs=0.02), sizes
  for split in ("valid", "test"):
    assert sizes[split] / total == pytest.approx(0.1, abs=0.02), sizes
    oov = np.mean(getattr(corpus, split) == corpus.vocab.unk_id)
    assert 0 < oov < 0.06, (split, oov)
  assert corpus.vocab_size == corpora.PYTHON_DOCS_MAX_VOCAB
  assert {"python", "function", "module", "N", "n't", data.EOS} <= set(corpus.vocab.tokens)


TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=1, optimizer="adam", learning_rate=3e-3, corpus_tokens=4000)


@pytest.fixture(name="fake_docs")
def _fake_docs(tmp_path, monkeypatch):
  """`--corpus python-docs` reads a fake tree, and the tiny preset exists."""
  root = _write_tree(tmp_path / "_sources")
  monkeypatch.setitem(corpora.CORPORA, "python-docs",
                      functools.partial(corpora.read_python_docs, root))
  monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
  return root


def test_train_cli_on_the_packaged_corpus_records_it_and_resumes(fake_docs, tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["--corpus", "python-docs", "--max-vocab", "60", "--preset", "tiny", "--method",
          "dense", "--out", str(out), "--quiet"]
  assert train.main(argv) == 0
  settings = json.loads((out / "run.json").read_text())["settings"]
  assert settings["data"] == {"corpus": "python-docs"}
  assert settings["vocabulary"] == {"min_count": 1, "max_vocab": 60}
  assert settings["vocab_size"] == 60
  assert train.main(argv + ["--resume"]) == 0  # same settings: the finished run
  assert train.main(argv[:2] + argv[4:] + ["--resume"]) == 2  # another vocabulary
  assert "vocab_size, vocabulary differ" in capsys.readouterr().err
  # Without --max-vocab the reader's default applies.
  assert training.load_corpus(corpus_name="python-docs").vocab_options == {
      "min_count": 1, "max_vocab": corpora.PYTHON_DOCS_MAX_VOCAB}
  assert train.main(["--corpus", "python-docs", "--data", str(tmp_path), "--preset", "tiny",
                     "--out", str(tmp_path / "two"), "--quiet"]) == 2
  assert "give one corpus, not --data and --corpus" in capsys.readouterr().err
  assert not (tmp_path / "two").exists()
  with pytest.raises(SystemExit):
    train.parse_args(["--corpus", "wiki"])
  assert "invalid choice: 'wiki'" in capsys.readouterr().err


def test_accuracy_passes_the_corpus_to_every_run(fake_docs, tmp_path, monkeypatch):
  from benchmarks import accuracy  # pylint: disable=import-outside-toplevel
  calls = []

  def fake_train_run(out, preset, data_dir, method, compression, **options):
    calls.append((out, data_dir, options["corpus_name"]))
    return {"valid_perplexity": 9.0, "test_perplexity": 9.5, "lstm_params": 10,
            "model_bytes": 100, "lstm_compression": 1.0, "train_seconds": 1.0}

  monkeypatch.setattr(training, "train_run", fake_train_run)
  monkeypatch.chdir(tmp_path)
  assert accuracy.main(["--corpus", "python-docs", "--preset", "tiny", "--methods", "dense",
                        "--seeds", "0,1", "--out", "docs.csv", "--quiet"]) == 0
  assert [c[1:] for c in calls] == [(None, "python-docs")] * 2
  assert all(c[0].startswith("runs/accuracy/python-docs-tiny/") for c in calls)
