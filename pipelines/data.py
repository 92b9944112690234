"""Language-model data: vocabulary, PTB reader, a synthetic corpus, batching.

Pure numpy / stdlib on purpose (no TensorFlow import) so it loads fast in tests
and tools.

Two corpora share one type, :class:`Corpus`:

* :func:`generate_corpus` -- the default, embedded corpus. Text sampled from a
  sparse first-order Markov chain whose entropy rate is known exactly, so a
  report can print the best achievable perplexity ``exp(entropy_rate_nats)``.
* :func:`read_ptb` -- Mikolov's preprocessed Penn Treebank from a directory
  (plain or gzipped files).
* :func:`read_text_files` / :func:`split_text_file` -- a user's own UTF-8 text
  (three files with any names, or one cut into contiguous spans), with an open
  vocabulary (:func:`build_vocabulary`: rare words map to ``<unk>``).

Example::

    >>> corpus = generate_corpus(num_tokens=20_000, seed=0)
    >>> len(corpus.vocab), corpus.train.dtype
    (256, dtype('int32'))
    >>> x, y = batchify_arrays(corpus.train, batch_size=4, num_steps=8)
    >>> x.shape == y.shape
    True
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tflite_ops import files

__all__ = [
    "EOS",
    "UNK",
    "Vocabulary",
    "Corpus",
    "MarkovSource",
    "make_markov_source",
    "generate_corpus",
    "read_ptb",
    "read_text_files",
    "split_text_file",
    "build_vocabulary",
    "unigram_perplexity",
    "batchify",
    "batchify_arrays",
    "num_batches",
    "synthetic_words",
]

EOS = "<eos>"
UNK = "<unk>"

_GZIP_MAGIC = b"\x1f\x8b"
_PTB_SPLITS = ("train", "valid", "test")

# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------


class Vocabulary:
  """Bijection between token strings and integer ids ``0..len-1``.

    ``unk_token`` (optional, must be in ``tokens``) is the id unknown tokens
    encode to; without it, unknown tokens raise ``KeyError``.

    Example::

        >>> v = Vocabulary.from_tokens("b a b c b a".split())
        >>> v.tokens
        ('b', 'a', 'c')
        >>> v.encode(["a", "c"]).tolist(), v.decode([0, 2])
        ([1, 2], ['b', 'c'])
        >>> Vocabulary.from_json(v.to_json()) == v
        True
    """

  _FORMAT = "dkp_keras.vocabulary"
  _VERSION = 1

  def __init__(self, tokens: Iterable[str], unk_token: str | None = None):
    tokens = tuple(tokens)
    for t in tokens:
      if not isinstance(t, str):
        raise TypeError(f"vocabulary tokens must be str, got {type(t).__name__}: {t!r}")
    index = {t: i for i, t in enumerate(tokens)}
    if len(index) != len(tokens):
      dupes = sorted(t for t, c in Counter(tokens).items() if c > 1)
      raise ValueError(f"vocabulary tokens must be unique; duplicated: {dupes[:10]}")
    if unk_token is not None and unk_token not in index:
      raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
    self._tokens = tokens
    self._index = index
    self._unk_token = unk_token

  @classmethod
  def from_tokens(cls, tokens: Iterable[str], unk_token: str | None = None) -> "Vocabulary":
    """Build from a token stream: ids ordered by frequency (desc), ties by token.

        ``unk_token`` is used only if it occurs in ``tokens`` (else ignored).
        """
    counts = Counter(tokens)
    # Deterministic order independent of dict insertion order: frequency
    # rank first (frequent words get small ids), then lexicographic.
    ordered = sorted(counts, key=lambda t: (-counts[t], t))
    return cls(ordered, unk_token=unk_token if unk_token in counts else None)

  # -- basic protocol ---------------------------------------------------

  def __len__(self) -> int:
    return len(self._tokens)

  def __contains__(self, token: object) -> bool:
    return token in self._index

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Vocabulary):
      return NotImplemented
    return self._tokens == other._tokens and self._unk_token == other._unk_token

  def __hash__(self) -> int:
    return hash((self._tokens, self._unk_token))

  def __repr__(self) -> str:
    head = ", ".join(repr(t) for t in self._tokens[:5])
    more = ", ..." if len(self) > 5 else ""
    return f"Vocabulary(size={len(self)}, tokens=[{head}{more}], unk_token={self._unk_token!r})"

  @property
  def tokens(self) -> tuple[str, ...]:
    return self._tokens

  @property
  def unk_token(self) -> str | None:
    return self._unk_token

  @property
  def unk_id(self) -> int | None:
    return None if self._unk_token is None else self._index[self._unk_token]

  def token_to_id(self, token: str) -> int:
    try:
      return self._index[token]
    except KeyError:
      if self._unk_token is not None:
        return self._index[self._unk_token]
      raise KeyError(
          f"token {token!r} is not in the vocabulary (and it has no unk_token)") from None

  def id_to_token(self, idx: int) -> str:
    if not 0 <= int(idx) < len(self):
      raise IndexError(f"id {idx} out of range for vocabulary of size {len(self)}")
    return self._tokens[int(idx)]

  # -- bulk conversion --------------------------------------------------

  def encode(self, tokens: Iterable[str]) -> np.ndarray:
    """Tokens -> ``int32`` array of ids."""
    if isinstance(tokens, str):
      raise TypeError("encode expects a sequence of tokens, not a str; split it first")
    if self._unk_token is None:
      lookup = self.token_to_id
    else:
      unk = self._index[self._unk_token]
      get = self._index.get
      lookup = lambda t: get(t, unk)  # noqa: E731  (fast path, no exception)
    return np.fromiter(map(lookup, tokens), dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Ids -> list of token strings."""
    arr = np.asarray(ids if not isinstance(ids, Iterator) else list(ids))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
      raise TypeError(f"decode expects integer ids, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
      bad = arr[(arr < 0) | (arr >= len(self))][0]
      raise IndexError(f"id {bad} out of range for vocabulary of size {len(self)}")
    toks = self._tokens
    return [toks[i] for i in arr.tolist()]

  # -- persistence (saved next to a model) ------------------------------

  def to_dict(self) -> dict:
    return {
        "format": self._FORMAT,
        "version": self._VERSION,
        "unk_token": self._unk_token,
        "tokens": list(self._tokens),
    }

  @classmethod
  def from_dict(cls, data: dict) -> "Vocabulary":
    if not isinstance(data, dict) or data.get("format") != cls._FORMAT:
      raise ValueError(f"not a serialized Vocabulary (expected format {cls._FORMAT!r})")
    if data.get("version") != cls._VERSION:
      raise ValueError(f"unsupported Vocabulary version {data.get('version')!r}")
    tokens = data.get("tokens")
    if not isinstance(tokens, list):
      raise ValueError("serialized Vocabulary has no 'tokens' list")
    return cls(tokens, unk_token=data.get("unk_token"))

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), ensure_ascii=False)

  @classmethod
  def from_json(cls, text: str) -> "Vocabulary":
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"invalid Vocabulary JSON: {e}") from e
    return cls.from_dict(data)

  def save(self, path: str | os.PathLike) -> Path:
    """Writes the vocabulary as JSON to ``path`` atomically; returns the path."""
    path = Path(path)
    files.write_atomic(path, self.to_json())
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Vocabulary":
    return cls.from_json(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Corpus:
  """Token-id splits of one corpus plus its vocabulary.

    ``entropy_rate_nats`` is the exact per-token entropy rate of the source
    when known (synthetic corpora), else ``None`` (real text). ``source`` is
    the generating :class:`MarkovSource` for synthetic corpora.
    """

  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  vocab: Vocabulary
  name: str
  entropy_rate_nats: float | None = None
  source: "MarkovSource | None" = None
  # How an open vocabulary was built ({"min_count", "max_vocab"}); None when the
  # vocabulary is every train word (PTB's convention, the synthetic corpus).
  vocab_options: dict | None = None

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  @property
  def optimal_perplexity(self) -> float | None:
    """``exp(entropy_rate)``: the best perplexity any model can reach (None if unknown)."""
    return None if self.entropy_rate_nats is None else math.exp(self.entropy_rate_nats)

  def summary(self) -> dict:
    return {
        "name": self.name,
        "vocab_size": self.vocab_size,
        "train_tokens": int(self.train.size),
        "valid_tokens": int(self.valid.size),
        "test_tokens": int(self.test.size),
        "entropy_rate_nats": self.entropy_rate_nats,
        "optimal_perplexity": self.optimal_perplexity,
        "vocab_options": self.vocab_options,
    }


# --------------------------------------------------------------------------
# Synthetic corpus: sparse first-order Markov chain with exact entropy rate
# --------------------------------------------------------------------------

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # 70
MAX_SYNTHETIC_VOCAB = len(_SYLLABLES) + len(_SYLLABLES)**2  # 4970


def synthetic_words(n: int) -> list[str]:
  """``n`` distinct pronounceable words; the first 70 are one syllable ("ba", "be", ...).

    Short words come first because low ids are the frequent ones (Zipf-like).
    """
  if not 0 <= n <= MAX_SYNTHETIC_VOCAB:
    raise ValueError(f"n must be in [0, {MAX_SYNTHETIC_VOCAB}], got {n}")
  s = _SYLLABLES
  words = list(s[:min(n, len(s))])
  for i in range(n - len(words)):
    words.append(s[i // len(s)] + s[i % len(s)])
  return words


class MarkovSource:
  """First-order Markov chain ``P = (1-eps) * S + eps * 1 q^T`` over ``V`` states.

    ``S`` is sparse: state ``i`` moves to its ``k`` successors ``successors[i]``
    with the shared Zipf weights ``successor_probs``; with probability
    ``eps = smoothing`` the next token is instead drawn from the background
    Zipf distribution ``q``. ``eps > 0`` makes every entry of ``P`` positive,
    so the chain is irreducible and aperiodic with a unique stationary
    distribution ``pi``, and the entropy rate is exactly

        H = sum_i pi_i * H(P[i, :])   (nats per token).

    Example::

        >>> src = make_markov_source(vocab_size=50, branching=4, seed=1)
        >>> bool(np.allclose(src.stationary @ src.transition, src.stationary))
        True
    """

  def __init__(self, successors: np.ndarray, successor_probs: np.ndarray, background: np.ndarray,
               smoothing: float):
    successors = np.asarray(successors, dtype=np.int64)
    w = np.asarray(successor_probs, dtype=np.float64)
    q = np.asarray(background, dtype=np.float64)
    V, k = successors.shape
    if q.shape != (V,) or w.shape != (k,):
      raise ValueError(
          f"shape mismatch: successors {successors.shape}, successor_probs {w.shape}, background {q.shape}"
      )
    if not 0.0 < smoothing <= 1.0:
      raise ValueError(f"smoothing must be in (0, 1] (it keeps the chain ergodic), got {smoothing}")
    if successors.min() < 0 or successors.max() >= V:
      raise ValueError("successor ids out of range")
    if np.any(np.sort(successors, axis=1)[:, 1:] == np.sort(successors, axis=1)[:, :-1]):
      raise ValueError("successors of a state must be distinct")
    for name, p in (("successor_probs", w), ("background", q)):
      if np.any(p <= 0) or not math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"{name} must be positive and sum to 1")
    self.successors = successors
    self.successor_probs = w
    self.background = q
    self.smoothing = float(smoothing)

    P = np.tile(smoothing * q, (V, 1))
    np.add.at(P, (np.arange(V)[:, None], successors), (1.0 - smoothing) * w[None, :])
    self.transition = P
    # Stationary distribution: solve pi (P - I) = 0 with sum(pi) = 1 by
    # replacing one (redundant) balance equation with the normalisation.
    A = P.T - np.eye(V)
    A[-1, :] = 1.0
    b = np.zeros(V)
    b[-1] = 1.0
    pi = np.linalg.solve(A, b)
    pi = np.clip(pi, 0.0, None)
    self.stationary = pi / pi.sum()
    self.state_entropies = -(P * np.log(P)).sum(axis=1)  # P > 0 everywhere
    self.entropy_rate = float(self.stationary @ self.state_entropies)

  @property
  def vocab_size(self) -> int:
    return self.successors.shape[0]

  @property
  def unigram_entropy(self) -> float:
    """Entropy of the stationary distribution: the best a context-free model can do."""
    pi = self.stationary[self.stationary > 0]
    return float(-(pi * np.log(pi)).sum())

  def sample(self, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """A stationary sample path (first state drawn from ``pi``) as ``int32``."""
    if num_tokens < 1:
      raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    V, k = self.successors.shape
    succ = self.successors.tolist()
    prev = int(rng.choice(V, p=self.stationary))
    out = [prev]
    # Randomness is drawn vectorised; the successor rank is state-independent,
    # so the only sequential work is a table lookup. Fixed-size chunks make
    # a longer sample extend a shorter one with the same rng seed.
    chunk = 1 << 16
    for start in range(1, num_tokens, chunk):
      m = min(chunk, num_tokens - start)
      reset = rng.random(m) < self.smoothing
      bg = rng.choice(V, size=m, p=self.background)
      rank = rng.choice(k, size=m, p=self.successor_probs)
      for f, r in zip(np.where(reset, bg, -1).tolist(), rank.tolist()):
        prev = f if f >= 0 else succ[prev][r]
        out.append(prev)
    return np.asarray(out, dtype=np.int32)

  def transition_log_probs(self, ids: np.ndarray) -> np.ndarray:
    """``log P(ids[t] | ids[t-1])`` for ``t >= 1`` (length ``len(ids) - 1``)."""
    ids = np.asarray(ids)
    return np.log(self.transition[ids[:-1], ids[1:]])

  def perplexity(self, ids: np.ndarray) -> float:
    """Perplexity of the true model on a sample (the oracle on finite data)."""
    return float(np.exp(-self.transition_log_probs(ids).mean()))


def _zipf(n: int, exponent: float) -> np.ndarray:
  w = 1.0 / np.arange(1, n + 1, dtype=np.float64)**exponent
  return w / w.sum()


def make_markov_source(
    vocab_size: int = 256,
    branching: int = 8,
    zipf_exponent: float = 1.0,
    smoothing: float = 0.05,
    seed: int | np.random.SeedSequence = 0,
) -> MarkovSource:
  """Random sparse Markov source (see :class:`MarkovSource`).

    Successors of each state are drawn without replacement with probability
    proportional to the background Zipf law ``q``, so frequent words are
    frequent successors and the unigram distribution is Zipf-like.
    """
  _check_int("vocab_size", vocab_size, minimum=2)
  _check_int("branching", branching, minimum=1)
  if branching > vocab_size:
    raise ValueError(f"branching ({branching}) cannot exceed vocab_size ({vocab_size})")
  if not (isinstance(zipf_exponent,
                     (int, float)) and math.isfinite(zipf_exponent) and zipf_exponent >= 0):
    raise ValueError(f"zipf_exponent must be a finite number >= 0, got {zipf_exponent!r}")
  if not (isinstance(smoothing, (int, float)) and 0.0 < smoothing <= 1.0):
    raise ValueError(f"smoothing must be in (0, 1] (it keeps the chain ergodic), got {smoothing!r}")
  rng = np.random.default_rng(seed)
  q = _zipf(vocab_size, zipf_exponent)
  # Gumbel top-k == sampling k items without replacement, proportional to q.
  keys = np.log(q)[None, :] + rng.gumbel(size=(vocab_size, vocab_size))
  successors = np.argsort(-keys, axis=1, kind="stable")[:, :branching]
  return MarkovSource(successors, _zipf(branching, zipf_exponent), q, smoothing)


def generate_corpus(
    num_tokens: int = 200_000,
    seed: int = 0,
    *,
    vocab_size: int = 256,
    branching: int = 8,
    zipf_exponent: float = 1.0,
    smoothing: float = 0.05,
    splits: Sequence[float] = (0.9, 0.05, 0.05),
) -> Corpus:
  """The default, embedded corpus: a sample of a sparse Markov chain.

    Deterministic in ``seed`` (which fixes both the chain and the sample).
    One stationary sample path is cut contiguously into train/valid/test.
    Word ids are the chain's states (low id ~ frequent word); words are
    synthetic syllables from :func:`synthetic_words`.

    With the defaults the best achievable perplexity (``optimal_perplexity``)
    is several times below the add-one unigram perplexity (`unigram_perplexity`)
    on valid/test, so there is plenty of structure for an LSTM to learn.

    Example::

        >>> c = generate_corpus(10_000, seed=3)
        >>> c.train.size, c.valid.size, c.test.size
        (9000, 500, 500)
        >>> round(c.optimal_perplexity, 2) == round(math.exp(c.entropy_rate_nats), 2)
        True
    """
  _check_int("num_tokens", num_tokens, minimum=1)
  _check_int("seed", seed, minimum=0)
  fractions = _check_splits(splits)
  sizes = [int(num_tokens * f) for f in fractions[1:]]
  sizes.insert(0, num_tokens - sum(sizes))
  if min(sizes) < 2:
    raise ValueError(f"num_tokens={num_tokens} is too small for splits {tuple(splits)}: "
                     f"split sizes would be {sizes}; every split needs >= 2 tokens")
  if vocab_size > MAX_SYNTHETIC_VOCAB:
    raise ValueError(f"vocab_size must be <= {MAX_SYNTHETIC_VOCAB}, got {vocab_size}")
  # Independent streams for the chain and the sample: changing num_tokens
  # keeps the same source (same entropy rate) and extends the same text.
  source_seq, sample_seq = np.random.SeedSequence(seed).spawn(2)
  source = make_markov_source(vocab_size, branching, zipf_exponent, smoothing, seed=source_seq)
  ids = source.sample(num_tokens, np.random.default_rng(sample_seq))
  a, b = sizes[0], sizes[0] + sizes[1]
  name = f"markov1-v{vocab_size}-k{branching}-s{zipf_exponent:g}-e{smoothing:g}-seed{seed}"
  return Corpus(
      train=ids[:a],
      valid=ids[a:b],
      test=ids[b:],
      vocab=Vocabulary(synthetic_words(vocab_size)),
      name=name,
      entropy_rate_nats=source.entropy_rate,
      source=source,
  )


# --------------------------------------------------------------------------
# Penn Treebank reader
# --------------------------------------------------------------------------


def _read_text(path: Path) -> str:
  """File contents as text, transparently gunzipping; clear errors on corrupt input."""
  raw = path.read_bytes()
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e
  elif path.suffix == ".gz":
    raise ValueError(f"{path}: has a .gz name but is not gzip data (no gzip magic bytes)")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not a UTF-8 text file ({e})") from e
  if "\x00" in text:
    raise ValueError(f"{path}: contains NUL bytes; expected a plain text file")
  return text.removeprefix("\ufeff")  # a byte-order mark is no word


def _read_tokens(path: Path) -> list[str]:
  """The words of a text file, one ``<eos>`` per line; a clear error for an empty file."""
  tokens = _ptb_tokens(_read_text(path))
  if not tokens:
    raise ValueError(f"{path}: empty file; expected one sentence per line")
  return tokens


def _ptb_tokens(text: str) -> list[str]:
  # One sentence per line; one <eos> per line (incl. a last line without "\n").
  text = text.replace("\r\n", "\n")
  if text and not text.endswith("\n"):
    text += "\n"
  return text.replace("\n", f" {EOS} ").split()


def _find_split_file(data_dir: Path, split: str) -> Path | None:
  for name in (f"ptb.{split}.txt", f"ptb.{split}.txt.gz"):  # plain wins if both exist
    p = data_dir / name
    if p.is_file():
      return p
  return None


def read_ptb(data_dir: str | os.PathLike, min_count: int | None = None,
             max_vocab: int | None = None) -> Corpus:
  """Read Mikolov's PTB (``ptb.{train,valid,test}.txt`` or ``.txt.gz``) from ``data_dir``.

    Tokens are whitespace-split with one ``<eos>`` appended per line; the
    vocabulary is built on train (10,000 types for the real data), ordered by
    frequency. Valid/test tokens missing from train map to ``<unk>`` (the real
    data has none), or raise ``ValueError`` if train has no ``<unk>``, unless
    a vocabulary option is given: then the vocabulary is
    :func:`build_vocabulary`'s and every word outside it maps to ``<unk>``.

    Args:
      data_dir: the directory holding the three files.
      min_count: keep train words seen at least this often (opts in).
      max_vocab: keep at most this many words, ``<unk>`` and ``<eos>``
        included (opts in).

    Example::

        corpus = read_ptb("../shared/data/ptb")
        corpus.train.size, len(corpus.vocab)   # (929589, 10000)
    """
  data_dir = Path(data_dir)
  expected = ", ".join(f"ptb.{s}.txt[.gz]" for s in _PTB_SPLITS)
  if not data_dir.exists():
    raise FileNotFoundError(
        f"PTB data directory not found: {data_dir} (expected a directory containing {expected})")
  if not data_dir.is_dir():
    raise NotADirectoryError(
        f"PTB data path is not a directory: {data_dir} (expected a directory containing {expected})"
    )
  paths = {s: _find_split_file(data_dir, s) for s in _PTB_SPLITS}
  missing = [s for s, p in paths.items() if p is None]
  if missing:
    names = ", ".join(f"{data_dir / f'ptb.{s}.txt'}[.gz]" for s in missing)
    raise FileNotFoundError(
        f"PTB split file(s) missing: {names} (expected {expected} in {data_dir})")
  tokens = {s: _read_tokens(p) for s, p in paths.items()}
  if min_count is None and max_vocab is None:
    return _closed_vocabulary_corpus(tokens, paths)
  return _open_vocabulary_corpus(tokens, "ptb", _or_one(min_count), max_vocab)


def read_text_files(train: str | os.PathLike, valid: str | os.PathLike,
                    test: str | os.PathLike, min_count: int | None = None,
                    max_vocab: int | None = None) -> Corpus:
  """A corpus from three UTF-8 text files with any names (plain or gzipped).

    Read like PTB (words split on whitespace, one ``<eos>`` per line), with
    an open vocabulary (:func:`build_vocabulary`): words outside it, in any
    split, map to ``<unk>``.

    Args:
      train, valid, test: the files of the three splits.
      min_count: keep train words seen at least this often (default 1).
      max_vocab: keep at most this many words, ``<unk>`` and ``<eos>``
        included (default: no limit).
    """
  paths = {"train": Path(train), "valid": Path(valid), "test": Path(test)}
  for split, path in paths.items():
    if not path.is_file():
      raise FileNotFoundError(f"{split} text file not found: {path}")
  tokens = {split: _read_tokens(path) for split, path in paths.items()}
  return _open_vocabulary_corpus(tokens, f"text:{paths['train'].name}", _or_one(min_count),
                                 max_vocab)


def split_text_file(path: str | os.PathLike, splits: Sequence[float] = (0.8, 0.1, 0.1),
                    min_count: int | None = None, max_vocab: int | None = None) -> Corpus:
  """A corpus from one UTF-8 text file, cut into train/valid/test by ``splits``.

    The word stream (one ``<eos>`` per line) is cut into three contiguous
    spans in file order, train first, sized by the fractions of its words:
    deterministic, and no word of valid/test is seen in training. The
    vocabulary is open, as in :func:`read_text_files`.

    Args:
      path: the text file.
      splits: fractions (train, valid, test) of the words, summing to 1.
      min_count, max_vocab: as in :func:`read_text_files`.

    Example::

        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = f.write_text("a b a c\\na b\\nb a\\n")
        >>> c = split_text_file(f, (0.5, 0.25, 0.25))
        >>> c.train.size, c.valid.size, c.test.size
        (7, 2, 2)
    """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"text file not found: {path}")
  fractions = _check_splits(splits)
  words = _read_tokens(path)
  sizes = [int(len(words) * f) for f in fractions[1:]]
  sizes.insert(0, len(words) - sum(sizes))
  if min(sizes) < 2:
    raise ValueError(f"{path}: {len(words)} words are too few to split by {tuple(splits)} "
                     f"(split sizes would be {sizes}; every split needs >= 2); give a longer "
                     f"text or other fractions")
  a, b = sizes[0], sizes[0] + sizes[1]
  tokens = {"train": words[:a], "valid": words[a:b], "test": words[b:]}
  return _open_vocabulary_corpus(tokens, f"text:{path.name}", _or_one(min_count), max_vocab)


def build_vocabulary(train_tokens: Iterable[str], min_count: int = 1,
                     max_vocab: int | None = None) -> Vocabulary:
  """The open vocabulary of a corpus: its frequent train words plus ``<unk>`` and ``<eos>``.

    Words seen fewer than ``min_count`` times, and beyond the ``max_vocab``
    most frequent, map to ``<unk>``. Ids are ordered by frequency in the
    mapped stream (``<unk>`` pooled), ties by word, as
    :meth:`Vocabulary.from_tokens` orders them: with ``min_count=1`` and no
    ``max_vocab``, a train split holding ``<unk>`` gets the same ids as there.

    Args:
      train_tokens: the train split's words.
      min_count: the fewest occurrences a kept word has (>= 1).
      max_vocab: the most words kept, ``<unk>`` and ``<eos>`` included (>= 3),
        or None for no limit.

    Example::

        >>> build_vocabulary("a a a b b c d <eos>".split(), min_count=2).tokens
        ('a', '<unk>', 'b', '<eos>')
    """
  _check_int("min_count", min_count, minimum=1)
  reserved = (UNK, EOS)  # always kept: the fallback and the sentence boundary
  if max_vocab is not None:
    _check_int("max_vocab", max_vocab, minimum=len(reserved) + 1)
  counts = Counter(train_tokens)
  words = sorted((t for t in counts if t not in reserved and counts[t] >= min_count),
                 key=lambda t: (-counts[t], t))
  if max_vocab is not None:
    words = words[:max_vocab - len(reserved)]
  mapped_out = sum(counts.values()) - sum(counts[t] for t in words) - counts[EOS]
  pooled = {**{t: counts[t] for t in words}, EOS: counts[EOS], UNK: mapped_out}
  return Vocabulary(sorted(pooled, key=lambda t: (-pooled[t], t)), unk_token=UNK)


def _or_one(min_count):
  return 1 if min_count is None else min_count  # 0 is refused, not taken for "not given"


def _closed_vocabulary_corpus(tokens: dict, paths: dict) -> Corpus:
  """PTB's convention: every train word, and valid/test words must be among them (or <unk>)."""
  vocab = Vocabulary.from_tokens(tokens["train"], unk_token=UNK)
  for s in ("valid", "test"):
    oov = sorted({t for t in tokens[s] if t not in vocab})
    if oov and vocab.unk_token is None:
      raise ValueError(
          f"{paths[s]}: {len(oov)} token type(s) not in the train vocabulary and train has no "
          f"{UNK!r} to map them to, e.g. {oov[:5]}; give a vocabulary option (min_count / "
          f"--min-count, max_vocab / --max-vocab) to map words outside the vocabulary to "
          f"{UNK!r}")
  return _encoded_corpus(tokens, vocab, "ptb", None)


def _open_vocabulary_corpus(tokens: dict, name: str, min_count: int,
                            max_vocab: int | None) -> Corpus:
  vocab = build_vocabulary(tokens["train"], min_count, max_vocab)
  return _encoded_corpus(tokens, vocab, name, {"min_count": min_count, "max_vocab": max_vocab})


def _encoded_corpus(tokens: dict, vocab: Vocabulary, name: str,
                    vocab_options: dict | None) -> Corpus:
  return Corpus(
      train=vocab.encode(tokens["train"]),
      valid=vocab.encode(tokens["valid"]),
      test=vocab.encode(tokens["test"]),
      vocab=vocab,
      name=name,
      entropy_rate_nats=None,
      vocab_options=vocab_options,
  )


# --------------------------------------------------------------------------
# Baseline
# --------------------------------------------------------------------------


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
  """Perplexity on ``eval_ids`` of the add-one smoothed unigram model fit on ``train_ids``.

    Example::

        >>> round(unigram_perplexity([0, 0, 1], [0, 1], vocab_size=2), 4)
        2.0412
    """
  _check_int("vocab_size", vocab_size, minimum=1)
  train = _as_ids("train_ids", train_ids, vocab_size)
  ev = _as_ids("eval_ids", eval_ids, vocab_size)
  if ev.size == 0:
    raise ValueError("eval_ids is empty; perplexity is undefined")
  counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
  logp = np.log(counts) - math.log(train.size + vocab_size)
  return float(np.exp(-logp[ev].mean()))


# --------------------------------------------------------------------------
# Batching for stateful LM training
# --------------------------------------------------------------------------


def num_batches(num_tokens: int, batch_size: int, num_steps: int) -> int:
  """Number of ``(x, y)`` windows :func:`batchify` yields for ``num_tokens`` ids."""
  _check_int("num_tokens", num_tokens, minimum=0)
  _check_int("batch_size", batch_size, minimum=1)
  _check_int("num_steps", num_steps, minimum=1)
  return max(0, (num_tokens // batch_size - 1) // num_steps)


def _stream_matrix(ids, batch_size: int, num_steps: int) -> tuple[np.ndarray, int]:
  _check_int("batch_size", batch_size, minimum=1)
  _check_int("num_steps", num_steps, minimum=1)
  ids = _as_ids("ids", ids)
  n = num_batches(ids.size, batch_size, num_steps)
  if n == 0:
    need = batch_size * (num_steps + 1)
    raise ValueError(
        f"too few tokens ({ids.size}) for batch_size={batch_size}, num_steps={num_steps}: "
        f"need at least {need} for one batch")
  row_len = ids.size // batch_size
  # Row b is the b-th contiguous slice of the stream; the tail that does not
  # fill a whole row is dropped (standard Zaremba et al. 2014 batching).
  return ids[:batch_size * row_len].reshape(batch_size, row_len), n


def batchify(ids, batch_size: int, num_steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yield ``(x, y)`` windows of shape ``(batch_size, num_steps)``, ``y`` = ``x`` shifted by one.

    The stream is split into ``batch_size`` contiguous rows; window ``i`` is
    columns ``[i*num_steps, (i+1)*num_steps)``, so row ``b`` of window ``i+1``
    continues row ``b`` of window ``i`` (carry LSTM state across windows).
    Arguments are validated eagerly (on call, not on first ``next``).

    Example::

        >>> [(x.tolist(), y.tolist()) for x, y in batchify(np.arange(10), 2, 2)]
        [([[0, 1], [5, 6]], [[1, 2], [6, 7]]), ([[2, 3], [7, 8]], [[3, 4], [8, 9]])]
    """
  data, n = _stream_matrix(ids, batch_size, num_steps)

  def windows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(n):
      s = i * num_steps
      yield data[:, s:s + num_steps], data[:, s + 1:s + num_steps + 1]

  return windows()


def batchify_arrays(ids, batch_size: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
  """All :func:`batchify` windows stacked into ``x, y`` of shape ``(num_batches*batch_size, num_steps)``.

    Order: rows ``[i*batch_size, (i+1)*batch_size)`` are window ``i``, so for
    a stateful Keras model use ``model.fit(x, y, batch_size=batch_size,
    shuffle=False)``: sample ``b`` of every batch then continues sample ``b``
    of the previous batch. Equivalently ``x[i*batch_size + b] ==
    batchify(...)[i][0][b]``.

    Example::

        >>> x, y = batchify_arrays(np.arange(10), 2, 2)
        >>> x.tolist(), y.tolist()
        ([[0, 1], [5, 6], [2, 3], [7, 8]], [[1, 2], [6, 7], [3, 4], [8, 9]])
    """
  data, n = _stream_matrix(ids, batch_size, num_steps)
  span = n * num_steps

  def stack(m: np.ndarray) -> np.ndarray:
    # (B, n*T) -> (B, n, T) -> (n, B, T) -> (n*B, T): window-major order.
    return np.ascontiguousarray(m.reshape(batch_size, n, num_steps).transpose(1, 0, 2)).reshape(
        n * batch_size, num_steps)

  return stack(data[:, :span]), stack(data[:, 1:span + 1])


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_splits(splits: Sequence[float]) -> tuple[float, float, float]:
  try:
    fr = tuple(float(f) for f in splits)
  except TypeError:
    raise TypeError(f"splits must be a sequence of 3 fractions, got {splits!r}") from None
  if len(fr) != 3 or any(
      not (0.0 < f < 1.0) for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-9):
    raise ValueError(
        f"splits must be 3 fractions in (0, 1) summing to 1 (train, valid, test), got {splits!r}")
  return fr  # type: ignore[return-value]


def _as_ids(name: str, ids, vocab_size: int | None = None) -> np.ndarray:
  arr = np.asarray(ids)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
  if arr.size == 0:
    arr = arr.astype(np.int64)
  if not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}")
  if arr.size and arr.min() < 0:
    raise ValueError(f"{name} contains negative ids (min {arr.min()})")
  if vocab_size is not None and arr.size and arr.max() >= vocab_size:
    raise ValueError(f"{name} contains id {arr.max()} >= vocab_size {vocab_size}")
  return arr
