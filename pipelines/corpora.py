"""Real corpora that ship with a system package: no download at run time.

Pure python (no TensorFlow), like `pipelines.data`, whose :class:`~pipelines.data.Corpus`
type, vocabulary (`data.build_vocabulary`) and ``<eos>``/``<unk>`` conventions it
reuses.

* :func:`read_python_docs` -- ``python-docs``: the reStructuredText sources of the
  Python 3.11 documentation in Debian's ``python3.11-doc`` package
  (``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``), technical English
  turned into a PTB-like word stream (:func:`rst_sentences`, :func:`sentence_words`).

`CORPORA` maps the names ``pipelines.train --corpus`` and ``benchmarks.accuracy
--corpus`` take to their readers.

Example::

    >>> rst = "Title\\n=====\\n\\nUse :func:`os.getcwd` in 3.11::\\n\\n   print(1)\\n\\nDone.\\n"
    >>> [sentence_words(s) for s in rst_sentences(rst)]
    [['title'], ['use', 'os', 'getcwd', 'in', 'N'], ['done']]
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pipelines import data

__all__ = [
    "CORPORA",
    "PYTHON_DOCS_ROOT",
    "PYTHON_DOCS_PACKAGE",
    "read_python_docs",
    "assign_splits",
    "rst_sentences",
    "sentence_words",
    "get_reader",
]

PYTHON_DOCS_PACKAGE = "python3.11-doc"
PYTHON_DOCS_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
PYTHON_DOCS_SUFFIX = ".rst.txt"
# PTB's vocabulary size, so a PTB preset's softmax fits this corpus unchanged.
PYTHON_DOCS_MAX_VOCAB = 10_000
# Fractions of the words in train, valid and test (whole files; `assign_splits`).
PYTHON_DOCS_SPLIT = (0.8, 0.1, 0.1)
NUMBER = "N"  # PTB's token for every number

# Directives whose argument and body are code, tables of contents, index entries or
# metadata, not prose: the whole block is dropped.
_DROPPED_DIRECTIVES = frozenset({
    "code-block", "sourcecode", "code", "highlight", "literalinclude", "doctest", "testcode",
    "testoutput", "testsetup", "testcleanup", "productionlist", "parsed-literal", "index",
    "toctree", "contents", "include", "raw", "image", "figure", "tabularcolumns",
    "limited-api-list", "miscnews", "module", "currentmodule", "moduleauthor",
    "sectionauthor", "program", "availability",
})
# Directives whose argument is prose (an admonition's text, a heading); the others'
# arguments are signatures, names or paths (code, not sentences) and are dropped.
_PROSE_ARGUMENT_DIRECTIVES = frozenset({
    "note", "warning", "important", "tip", "hint", "caution", "attention", "danger", "error",
    "seealso", "impl-detail", "admonition", "topic", "sidebar", "rubric",
})
# Directives whose argument is version number(s) then prose: how many leading fields to drop.
_VERSION_DIRECTIVES = {"versionadded": 1, "versionchanged": 1, "deprecated": 1,
                       "deprecated-removed": 2}

_DIRECTIVE = re.compile(r"(\s*)\.\. ([\w:-]+)::(.*)$")
_EXPLICIT = re.compile(r"\s*\.\.(\s|$)")  # comments, targets, substitutions, footnotes
_FOOTNOTE = re.compile(r"\s*\.\. \[[^\]]+\]\s*(.*)$")
_OPTION = re.compile(r":[\w-]+:(\s|$)")
_BULLET = re.compile(r"\s*([*+-]|\d+\.|#\.|\(\d+\)|:[\w -]+:(?!`))(\s+|$)")
_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1{2,}")  # section lines, transitions
_SIMPLE_TABLE_BORDER = re.compile(r"=+( +=+)+")
_GRID_TABLE_BORDER = re.compile(r"\+[-=+]+")

# Inline markup, applied in order to a paragraph.
_ROLE = re.compile(r":((?:[\w-]+:)+)`([^`]*)`")
_LINK_WITH_TARGET = re.compile(r"`([^`<]*?)\s*<[^>`]*>`_{0,2}")
_REFERENCE = re.compile(r"`([^`]+)`_{1,2}")
_FOOTNOTE_REFERENCE = re.compile(r"\s*\[[#*\w.-]*\]_")
_SUBSTITUTION = re.compile(r"\|([\w-]+)\|_{0,2}")
# Not after a single letter and its dot: initials ("Fred L. Drake"), "e.g.", "i.e.".
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b\w\.)\s+(?=[\"'(\[]?[A-Z])")

# Words as PTB has them: contractions split off ("do n't", "it 's"), abbreviations of
# single letters kept with their dots ("e.g."), hyphenated words kept whole, every other
# punctuation mark dropped (PTB has almost none), numbers -> N.
_CONTRACTION = re.compile(r"(\w)(n't|'(?:s|re|ve|ll|d|m))\b")
_WORD = re.compile(r"\b(?:[a-z]\.){2,}|n't|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+\w*|\w+(?:-\w+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip(" "))


def _skip_block(lines: list[str], start: int, base: int) -> int:
  """The index after the block at ``start``: its lines blank or indented deeper than ``base``."""
  i = start
  while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
    i += 1
  return i


def _skip_simple_table(lines: list[str], start: int) -> int:
  """The index after the simple table whose top border is ``lines[start]``."""
  for i in range(start + 1, len(lines)):
    if _SIMPLE_TABLE_BORDER.fullmatch(lines[i].strip()) and (
        i + 1 == len(lines) or not lines[i + 1].strip()):
      return i + 1
  return len(lines)


def _paragraphs(text: str) -> list[str]:
  """The prose paragraphs of reST ``text`` (markup kept inline), code and tables dropped."""
  lines = [line.expandtabs(8).rstrip() for line in text.replace("\r\n", "\n").split("\n")]
  paragraphs, paragraph = [], []
  text_column = literal_base = None  # continuation column; base of an announced literal block

  def flush():
    if paragraph:
      paragraphs.append(" ".join(paragraph))
      paragraph.clear()

  i = 0
  while i < len(lines):
    line, stripped, indent = lines[i], lines[i].strip(), _indent(lines[i])
    if not stripped:
      flush()
      i += 1
      continue
    if literal_base is not None:  # the first line after a paragraph ending "::"
      base, literal_base = literal_base, None
      if indent > base:
        i = _skip_block(lines, i, base)
        continue
    if _SIMPLE_TABLE_BORDER.fullmatch(stripped):
      flush()  # tables hold code fragments and cell pieces, not sentences
      i = _skip_simple_table(lines, i)
      continue
    if _GRID_TABLE_BORDER.fullmatch(stripped) or stripped.startswith(">>>"):
      flush()  # a grid table or a doctest block: both run to the next blank line
      while i < len(lines) and lines[i].strip():
        i += 1
      continue
    if _ADORNMENT.fullmatch(stripped):
      flush()  # a section title's over/underline or a transition ends a paragraph
      i += 1
      continue
    directive = _DIRECTIVE.match(line)
    if directive:
      flush()
      i = _directive(lines, i, directive, paragraphs)
      continue
    if _EXPLICIT.match(line):
      flush()
      footnote = _FOOTNOTE.match(line)
      if footnote:  # a footnote's text is prose; its label is not
        paragraph.append(footnote.group(1))
        text_column = indent + 3
        i += 1
      else:  # a comment, a hyperlink target or a substitution definition
        i = _skip_block(lines, i + 1, indent)
      continue
    bullet = _BULLET.match(line)
    if bullet:
      flush()
      paragraph.append(line[bullet.end():].strip())
      text_column = bullet.end() if line[bullet.end():].strip() else indent + 2
    elif paragraph and indent == text_column:
      paragraph.append(stripped)
    else:  # another indentation: a definition, a block quote, a new paragraph
      flush()
      paragraph.append(stripped)
      text_column = indent
    if stripped.endswith("::"):
      literal_base = text_column
      paragraph[-1] = paragraph[-1][:-1]  # "Example::" reads "Example:"
    i += 1
  flush()
  return [p for p in paragraphs if p.strip()]


def _directive(lines: list[str], i: int, match: re.Match, paragraphs: list[str]) -> int:
  """Handles the directive at ``lines[i]``; appends its prose header; returns where to go on.

  Its body (after the header: the argument's continuation lines and options) is left
  to the caller, as prose, unless the directive is one of `_DROPPED_DIRECTIVES`.
  """
  base, name, argument = len(match.group(1)), match.group(2), match.group(3).strip()
  end = i + 1
  while end < len(lines) and lines[end].strip() and _indent(lines[end]) > base:
    end += 1
  if name in _DROPPED_DIRECTIVES:
    return _skip_block(lines, end, base)
  header = [argument] + [line.strip() for line in lines[i + 1:end]]
  if name in _VERSION_DIRECTIVES:
    fields = argument.split(maxsplit=_VERSION_DIRECTIVES[name])
    header[0] = fields[-1] if len(fields) > _VERSION_DIRECTIVES[name] else ""
  elif name not in _PROSE_ARGUMENT_DIRECTIVES:
    return end  # a signature, a name, a path: code
  prose = " ".join(part for part in header if part and not _OPTION.match(part))
  if prose:
    paragraphs.append(prose)
  return end


def _inline_text(role: str, role_text: str) -> str:
  """What a role shows: its title if it has one, else its target (``~a.b`` shows ``b``).

  ``:pep:`8``` shows "PEP 8"; a ``:ref:`` or ``:doc:`` without a title shows a
  section's title, unknown here: its label's words stand in for it.
  """
  titled = re.fullmatch(r"(.*?)\s*<[^>]*>", role_text, re.S)
  if titled and titled.group(1):
    return titled.group(1)
  text = role_text.lstrip("!")
  if text.startswith("~"):
    text = text[1:].rsplit(".", 1)[-1]
  if role in ("pep", "rfc"):
    return f"{role.upper()} {text}"
  if role in ("ref", "doc"):
    return re.sub(r"[-_/]+", " ", text)
  return text


def _strip_inline_markup(paragraph: str) -> str:
  text = _ROLE.sub(lambda m: _inline_text(m.group(1).strip(":"), m.group(2)), paragraph)
  text = _LINK_WITH_TARGET.sub(r"\1", text)
  text = _REFERENCE.sub(r"\1", text)
  text = _FOOTNOTE_REFERENCE.sub("", text)
  text = _SUBSTITUTION.sub(r"\1", text)
  return text.replace("\\", "")  # escapes; `` * ** are dropped with the punctuation


def rst_sentences(text: str) -> list[str]:
  """The prose sentences of reStructuredText ``text``, inline markup stripped, case kept.

  Dropped: literal blocks (after ``::``), doctest blocks, code, index, toctree and
  metadata directives, directive arguments that are signatures or names, comments,
  hyperlink targets, grid and simple tables, section adornments. Kept: paragraphs,
  titles, list items, footnotes, the bodies of the other directives (a function's
  description, a note, a version change's text). Roles show their text
  (``:func:`~os.path.join``` -> ``join``), links their title. A paragraph is cut into
  sentences after ``.``, ``!`` or ``?`` followed by a capital.

  Args:
    text: the reST source.
  """
  sentences = []
  for paragraph in _paragraphs(text):
    prose = " ".join(_strip_inline_markup(paragraph).split())
    sentences.extend(s for s in _SENTENCE_END.split(prose) if s.strip())
  return sentences


def sentence_words(sentence: str) -> list[str]:
  """A sentence's words as PTB has them: lowercase, numbers ``N``, no punctuation.

  Contractions are split off (``don't`` -> ``do n't``), abbreviations of single
  letters keep their dots (``e.g.``), hyphenated words stay whole (``utf-8``),
  dotted names split (``os.path`` -> ``os path``); other punctuation is dropped.

  Args:
    sentence: one sentence of plain text.
  """
  text = _CONTRACTION.sub(r"\1 \2", sentence.lower())
  words = []
  for word in _WORD.findall(text):
    if _NUMBER.fullmatch(word):
      words.append(NUMBER)
    elif word.strip("_"):
      words.append(word)
  return words


def assign_splits(word_counts: dict[str, int],
                  fractions: tuple[float, float, float] = PYTHON_DOCS_SPLIT) -> dict[str, str]:
  """Whole files to splits, ~``fractions`` of the words: ``{relative path: split name}``.

  Files are ordered by a stable hash (SHA-256) of their relative path and cut where
  the running word count crosses each fraction (a file goes to the split its first
  word falls in). Deterministic, and every split draws from every part of the
  documentation (tutorial, library, C API, what's new), where contiguous spans of
  the sorted paths would give valid and test to a few sections.

  Args:
    word_counts: each file's relative path (``/`` separators) and number of words.
    fractions: (train, valid, test) fractions of the words.

  Example::

      >>> assign_splits({"a.rst.txt": 8, "b.rst.txt": 1, "c.rst.txt": 1})
      {'a.rst.txt': 'train', 'b.rst.txt': 'valid', 'c.rst.txt': 'test'}
  """
  def digest(path):
    return hashlib.sha256(path.encode("utf-8")).digest()

  total = sum(word_counts.values())
  bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
  splits, seen = {}, 0
  for path in sorted(word_counts, key=digest):
    splits[path] = "train" if seen < bounds[0] else "valid" if seen < bounds[1] else "test"
    seen += word_counts[path]
  return dict(sorted(splits.items()))


def _rst_words(path: Path) -> list[str]:
  try:
    text = path.read_text(encoding="utf-8")
  except UnicodeDecodeError as error:
    raise ValueError(f"{path}: not a UTF-8 text file ({error})") from error
  words = []
  for sentence in rst_sentences(text):
    tokens = sentence_words(sentence)
    if tokens:
      words.extend(tokens)
      words.append(data.EOS)
  return words


def read_python_docs(root: str | os.PathLike = PYTHON_DOCS_ROOT,
                     max_vocab: int | None = PYTHON_DOCS_MAX_VOCAB,
                     min_count: int = 1) -> data.Corpus:
  """The ``python-docs`` corpus: the Python 3.11 documentation's reST sources as PTB-like text.

  Every ``*.rst.txt`` file under ``root`` becomes prose sentences
  (:func:`rst_sentences`) of PTB-like words (:func:`sentence_words`), one ``<eos>``
  after each. Whole files go to train, valid or test, ~80/10/10% of the words, in
  the order of a hash of their relative path (:func:`assign_splits`); within a
  split, files follow in sorted path order. The vocabulary is the ``max_vocab`` most
  frequent train words (`data.build_vocabulary`, ``<unk>`` and ``<eos>`` included);
  every other word, in any split, maps to ``<unk>``.

  Args:
    root: the ``_sources`` directory of the HTML documentation; the default is where
      Debian's ``python3.11-doc`` package installs it.
    max_vocab: the most words kept (PTB's 10,000 by default), or None for every train
      word.
    min_count: keep train words seen at least this often.

  Example::

      corpus = read_python_docs()   # needs: apt-get install python3.11-doc
      corpus.summary()
  """
  root = Path(root)
  install = f"it ships with Debian's {PYTHON_DOCS_PACKAGE} package: apt-get install " \
            f"{PYTHON_DOCS_PACKAGE}"
  if not root.exists():
    raise FileNotFoundError(f"Python documentation sources not found: {root} ({install}, or "
                            f"give the _sources directory of the HTML documentation)")
  if not root.is_dir():
    raise NotADirectoryError(f"Python documentation path is not a directory: {root} "
                             f"(expected the _sources directory of the HTML documentation)")
  paths = sorted((p for p in root.rglob(f"*{PYTHON_DOCS_SUFFIX}") if p.is_file()),
                 key=lambda p: p.relative_to(root).as_posix())
  if not paths:
    raise FileNotFoundError(f"no *{PYTHON_DOCS_SUFFIX} files under {root} ({install}; "
                            f"expected the _sources directory of the HTML documentation)")
  words = {path.relative_to(root).as_posix(): _rst_words(path) for path in paths}
  splits = assign_splits({path: len(file_words) for path, file_words in words.items()})
  tokens = {"train": [], "valid": [], "test": []}
  for path, file_words in words.items():  # sorted path order within each split
    tokens[splits[path]].extend(file_words)
  empty = [split for split, words in tokens.items() if not words]
  if empty:
    raise ValueError(f"{root}: no words fall in the {' and '.join(empty)} split(s) of its "
                     f"{len(paths)} *{PYTHON_DOCS_SUFFIX} files (whole files go to one split "
                     f"each); give the full documentation sources")
  vocab = data.build_vocabulary(tokens["train"], min_count, max_vocab)
  return data.Corpus(train=vocab.encode(tokens["train"]), valid=vocab.encode(tokens["valid"]),
                     test=vocab.encode(tokens["test"]), vocab=vocab, name="python-docs",
                     vocab_options={"min_count": min_count, "max_vocab": max_vocab})


# Corpora by the name --corpus takes: reader(max_vocab=..., min_count=...) -> data.Corpus.
CORPORA = {"python-docs": read_python_docs}


def get_reader(name: str):
  """The reader of corpus ``name``; a clear error naming the known ones."""
  try:
    return CORPORA[name]
  except KeyError:
    raise ValueError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}") from None
