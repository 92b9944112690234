"""Tests for pipelines.data (pure numpy; the whole file runs in a few seconds)."""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow plain `pytest` as well as `python -m pytest`
  sys.path.insert(0, str(REPO))

from pipelines.data import (  # noqa: E402
    EOS, UNK, Corpus, MarkovSource, Vocabulary, batchify, batchify_arrays, build_vocabulary,
    generate_corpus, make_markov_source, num_batches, read_ptb, read_text_files,
    split_text_file, synthetic_words, unigram_perplexity,
)

PTB_DIR = REPO.parent / "shared" / "data" / "ptb"


@pytest.fixture(scope="module")
def default_corpus() -> Corpus:
  return generate_corpus()


# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------


def test_vocabulary_order_and_round_trip(tmp_path):
  toks = "the cat sat on the mat the end cat".split()
  v = Vocabulary.from_tokens(toks)
  # frequency desc, then lexicographic among ties
  assert v.tokens == ("the", "cat", "end", "mat", "on", "sat")
  ids = v.encode(toks)
  assert ids.dtype == np.int32
  assert v.decode(ids) == toks
  assert len(v) == 6 and "cat" in v and "dog" not in v

  assert Vocabulary.from_json(v.to_json()) == v
  assert Vocabulary.load(v.save(tmp_path / "vocab.json")) == v


def test_vocabulary_unknown_tokens_and_errors():
  v = Vocabulary.from_tokens(["a", "b", "<unk>"], unk_token="<unk>")
  assert v.decode(v.encode(["a", "zzz"])) == ["a", "<unk>"]

  strict = Vocabulary(["a", "b"])
  with pytest.raises(KeyError, match="zzz"):
    strict.encode(["a", "zzz"])
  with pytest.raises(IndexError, match="out of range"):
    strict.decode([0, 2])
  with pytest.raises(ValueError, match="unique"):
    Vocabulary(["a", "a"])
  with pytest.raises(ValueError, match="unk_token"):
    Vocabulary(["a"], unk_token="<unk>")
  with pytest.raises(TypeError, match="split"):
    strict.encode("a b")
  with pytest.raises(ValueError, match="Vocabulary"):
    Vocabulary.from_json('{"tokens": ["a"]}')


# --------------------------------------------------------------------------
# Synthetic corpus
# --------------------------------------------------------------------------


def test_generate_corpus_deterministic_and_split(default_corpus):
  c = default_corpus
  again = generate_corpus()
  for a, b in ((c.train, again.train), (c.valid, again.valid), (c.test, again.test)):
    np.testing.assert_array_equal(a, b)
  assert c.entropy_rate_nats == again.entropy_rate_nats

  other = generate_corpus(seed=1)
  assert not np.array_equal(c.train[:1000], other.train[:1000])
  assert other.entropy_rate_nats != c.entropy_rate_nats

  assert (c.train.size, c.valid.size, c.test.size) == (180_000, 10_000, 10_000)
  assert all(a.dtype == np.int32 for a in (c.train, c.valid, c.test))
  assert len(c.vocab) == c.vocab_size == 256
  assert c.train.max() < 256 and c.train.min() >= 0
  assert c.optimal_perplexity == pytest.approx(math.exp(c.entropy_rate_nats))
  # A longer sample of the same seed extends the same text from the same source.
  longer = generate_corpus(num_tokens=400_000)
  np.testing.assert_array_equal(longer.train[:180_000], c.train)
  assert longer.entropy_rate_nats == c.entropy_rate_nats


def test_generate_corpus_argument_validation():
  with pytest.raises(ValueError, match="num_tokens"):
    generate_corpus(num_tokens=0)
  with pytest.raises(ValueError, match="too small"):
    generate_corpus(num_tokens=20)
  with pytest.raises(ValueError, match="smoothing"):
    generate_corpus(1000, smoothing=0.0)
  with pytest.raises(ValueError, match="branching"):
    generate_corpus(1000, vocab_size=10, branching=11)
  with pytest.raises(ValueError, match="splits"):
    generate_corpus(1000, splits=(0.9, 0.2, 0.1))
  with pytest.raises(TypeError, match="num_tokens"):
    generate_corpus(num_tokens=1e5)


def test_synthetic_words_are_distinct():
  words = synthetic_words(4970)
  assert len(set(words)) == 4970
  assert words[:3] == ["ba", "be", "bi"]


def test_entropy_rate_two_state_closed_form():
  # successors: 0 -> 0, 1 -> 1; background q = (0.9, 0.1); eps = 0.5
  # => P = [[0.95, 0.05], [0.45, 0.55]], pi = (0.9, 0.1).
  src = MarkovSource(np.array([[0], [1]]), np.array([1.0]), np.array([0.9, 0.1]), smoothing=0.5)
  np.testing.assert_allclose(src.transition, [[0.95, 0.05], [0.45, 0.55]])
  np.testing.assert_allclose(src.stationary, [0.9, 0.1])

  def h(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))

  assert src.entropy_rate == pytest.approx(0.9 * h(0.05) + 0.1 * h(0.45), rel=1e-12)


def test_stationary_distribution_is_exact(default_corpus):
  src = default_corpus.source
  P = src.transition
  assert np.all(P > 0)
  np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
  np.testing.assert_allclose(src.stationary @ P, src.stationary, atol=1e-12)
  # Independent route: power iteration converges to the same pi.
  np.testing.assert_allclose(np.linalg.matrix_power(P, 512)[0], src.stationary, atol=1e-10)
  # The sample's unigram frequencies match pi.
  freq = np.bincount(default_corpus.train, minlength=src.vocab_size) / default_corpus.train.size
  assert np.abs(freq - src.stationary).sum() < 0.05


def test_entropy_rate_matches_empirical_log_loss(default_corpus):
  src = default_corpus.source
  n = 400_000
  ids = src.sample(n, np.random.default_rng(12345))
  nll = -src.transition_log_probs(ids)
  stderr = nll.std() / math.sqrt(nll.size)  # ~0.002 nats; chain mixes fast
  assert abs(nll.mean() - src.entropy_rate) < 6 * stderr
  assert abs(nll.mean() - src.entropy_rate) < 0.015


def _plugin_conditional_entropy(ids: np.ndarray, V: int) -> float:
  """Plug-in estimate of H(X_t | X_{t-1}) from bigram counts (biased low)."""
  ids = ids.astype(np.int64)
  c = np.bincount(ids[:-1] * V + ids[1:], minlength=V * V).reshape(V, V).astype(np.float64)
  rows = c.sum(axis=1, keepdims=True)
  nz = c > 0
  return float(-(c[nz] * np.log((c / np.maximum(rows, 1))[nz])).sum() / c.sum())


def test_entropy_rate_matches_bigram_conditional_entropy(default_corpus):
  # Small chain: 400 bigram cells, so the plug-in estimate is nearly unbiased.
  small = make_markov_source(vocab_size=20, branching=3, smoothing=0.1, seed=5)
  est = _plugin_conditional_entropy(small.sample(200_000, np.random.default_rng(0)), 20)
  assert est == pytest.approx(small.entropy_rate, abs=0.01)

  # Default chain: 65k cells, the plug-in estimate under-counts rare bigrams,
  # so it sits slightly below the true rate but must be close.
  src = default_corpus.source
  est = _plugin_conditional_entropy(src.sample(400_000, np.random.default_rng(1)), src.vocab_size)
  assert src.entropy_rate - 0.06 < est < src.entropy_rate + 0.005


def test_unigram_perplexity_well_above_optimum(default_corpus):
  c = default_corpus
  uni = unigram_perplexity(c.train, c.valid, c.vocab_size)
  assert uni > 4 * c.optimal_perplexity  # ~56 vs ~8: structure to learn
  # The true model attains ~exp(H) on held-out data; the unigram cannot beat exp(H(pi)).
  assert c.source.perplexity(c.test) == pytest.approx(c.optimal_perplexity, rel=0.05)
  assert uni >= math.exp(c.source.unigram_entropy) * 0.98


def test_unigram_perplexity_small_and_errors():
  # counts+1 = (3, 2) over 5 -> p = (0.6, 0.4)
  assert unigram_perplexity([0, 0, 1], [0, 1],
                            2) == pytest.approx(math.exp(-(math.log(0.6) + math.log(0.4)) / 2))
  assert unigram_perplexity([], [0, 1, 2], 3) == pytest.approx(3.0)
  with pytest.raises(ValueError, match="vocab_size"):
    unigram_perplexity([0, 5], [0], 3)
  with pytest.raises(ValueError, match="empty"):
    unigram_perplexity([0], [], 3)
  with pytest.raises(ValueError, match="vocab_size"):
    unigram_perplexity([0], [0], 0)


# --------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------


def test_batchify_small_example():
  ids = np.arange(23)
  windows = list(batchify(ids, batch_size=2, num_steps=3))
  # rows: 0..10 and 11..21 (tail 22 dropped); (11 - 1) // 3 = 3 windows
  assert len(windows) == 3 == num_batches(23, 2, 3)
  x0, y0 = windows[0]
  assert x0.tolist() == [[0, 1, 2], [11, 12, 13]]
  assert y0.tolist() == [[1, 2, 3], [12, 13, 14]]
  x, y = batchify_arrays(ids, 2, 3)
  assert x.tolist() == [[0, 1, 2], [11, 12, 13], [3, 4, 5], [14, 15, 16], [6, 7, 8], [17, 18, 19]]
  np.testing.assert_array_equal(y, x + 1)


def test_batchify_validates_eagerly():
  with pytest.raises(ValueError, match="batch_size"):
    batchify(np.arange(100), 0, 5)  # raises on call, before iteration
  with pytest.raises(ValueError, match="num_steps"):
    batchify_arrays(np.arange(100), 2, -1)
  with pytest.raises(ValueError, match="too few tokens"):
    batchify(np.arange(10), 5, 5)
  with pytest.raises(TypeError, match="batch_size"):
    batchify(np.arange(100), 2.0, 5)
  with pytest.raises(TypeError, match="integer"):
    batchify_arrays(np.linspace(0, 1, 100), 2, 5)
  with pytest.raises(ValueError, match="1-D"):
    batchify_arrays(np.zeros((10, 10), dtype=int), 2, 2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=400),
    batch_size=st.integers(min_value=1, max_value=12),
    num_steps=st.integers(min_value=1, max_value=12),
)
def test_batchify_shapes_and_shift(n, batch_size, num_steps):
  ids = np.arange(n, dtype=np.int32)  # id == stream position, makes order checks trivial
  nb = num_batches(n, batch_size, num_steps)
  if nb == 0:
    with pytest.raises(ValueError, match="too few tokens"):
      batchify(ids, batch_size, num_steps)
    return
  windows = list(batchify(ids, batch_size, num_steps))
  x, y = batchify_arrays(ids, batch_size, num_steps)
  assert len(windows) == nb
  assert x.shape == y.shape == (nb * batch_size, num_steps)
  assert x.dtype == np.int32
  np.testing.assert_array_equal(y, x + 1)  # target = next token
  row_len = n // batch_size
  for i, (wx, wy) in enumerate(windows):
    assert wx.shape == wy.shape == (batch_size, num_steps)
    np.testing.assert_array_equal(x[i * batch_size:(i + 1) * batch_size], wx)
    np.testing.assert_array_equal(y[i * batch_size:(i + 1) * batch_size], wy)
    # row b of window i starts where row b of window i-1 stopped (stateful order)
    np.testing.assert_array_equal(wx[:, 0], np.arange(batch_size) * row_len + i * num_steps)
  assert y.max() < n


# --------------------------------------------------------------------------
# PTB reader
# --------------------------------------------------------------------------

FAKE = {
    "train": " the cat sat on the mat \n the dog sat <unk> \n a cat \n",
    "valid": " the dog sat \n a mat \n",
    "test": " a cat sat on a dog \n",
}


def _write_fake(d: Path, gz: bool, texts=FAKE) -> Path:
  d.mkdir(parents=True, exist_ok=True)
  for split, text in texts.items():
    data = text.encode("utf-8")
    if gz:
      (d / f"ptb.{split}.txt.gz").write_bytes(gzip.compress(data))
    else:
      (d / f"ptb.{split}.txt").write_bytes(data)
  return d


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_read_ptb_fake(tmp_path, gz):
  c = read_ptb(_write_fake(tmp_path / "ptb", gz))
  assert c.name == "ptb" and c.entropy_rate_nats is None and c.optimal_perplexity is None
  assert (c.train.size, c.valid.size, c.test.size) == (6 + 1 + 4 + 1 + 2 + 1, 3 + 1 + 2 + 1, 6 + 1)
  assert c.vocab.decode(
      c.train) == "the cat sat on the mat <eos> the dog sat <unk> <eos> a cat <eos>".split()
  assert c.vocab.tokens[:4] == ("<eos>", "the", "cat", "sat")  # frequency, then lexicographic
  assert c.vocab.decode(c.test)[-1] == EOS
  assert all(a.dtype == np.int32 for a in (c.train, c.valid, c.test))


def test_read_ptb_oov_and_last_line_without_newline(tmp_path):
  texts = {"train": "a b <unk>\nb", "valid": "a zzz", "test": "b\n"}
  c = read_ptb(_write_fake(tmp_path / "p", gz=False, texts=texts))
  assert c.vocab.decode(c.train) == "a b <unk> <eos> b <eos>".split()
  assert c.vocab.decode(c.valid) == ["a", "<unk>", EOS]

  texts = {"train": "a b\n", "valid": "a zzz\n", "test": "b\n"}
  with pytest.raises(ValueError, match="zzz"):
    read_ptb(_write_fake(tmp_path / "q", gz=False, texts=texts))


def test_read_ptb_refusal_names_the_vocabulary_options_that_fix_it(tmp_path):
  texts = {"train": "a b b\n", "valid": "a zzz\n", "test": "b yyy\n"}
  d = _write_fake(tmp_path / "q", gz=False, texts=texts)
  with pytest.raises(ValueError, match=r"ptb\.valid\.txt: 1 token type.*'zzz'.*--min-count.*"
                     r"--max-vocab.*'<unk>'"):
    read_ptb(d)
  c = read_ptb(d, min_count=1)  # opted in: words outside the vocabulary become <unk>
  assert c.vocab.decode(c.valid) == ["a", UNK, EOS]
  assert c.vocab.decode(c.test) == ["b", UNK, EOS]
  assert c.vocab_options == {"min_count": 1, "max_vocab": None}
  assert read_ptb(d, max_vocab=3).vocab.tokens == ("b", EOS, UNK)  # "a" is the 4th word


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_read_ptb_default_is_unchanged_by_a_neutral_vocabulary_option(tmp_path, gz):
  """PTB holds <unk>: --min-count 1 keeps every word with the same id (the default's)."""
  d = _write_fake(tmp_path / "ptb", gz)
  default, opted = read_ptb(d), read_ptb(d, min_count=1)
  assert default.vocab_options is None
  assert opted.vocab.tokens == default.vocab.tokens
  for split in ("train", "valid", "test"):
    np.testing.assert_array_equal(getattr(opted, split), getattr(default, split))


def test_build_vocabulary_min_count_and_max_vocab():
  words = "a a a a b b b c c d <eos> <eos>".split()
  assert build_vocabulary(words).tokens == ("a", "b", "<eos>", "c", "d", UNK)  # <unk>: none
  kept = build_vocabulary(words, min_count=2)
  assert kept.tokens == ("a", "b", "<eos>", "c", UNK)  # d -> <unk>
  assert kept.decode(kept.encode("d zzz a".split())) == [UNK, UNK, "a"]
  top = build_vocabulary(words, max_vocab=4)  # <unk> pools c and d: 3, as often as b
  assert top.tokens == ("a", UNK, "b", EOS) and top.unk_token == UNK
  assert len(build_vocabulary(words, min_count=2, max_vocab=3)) == 3
  # <eos> is kept however rare: it marks the lines.
  assert EOS in build_vocabulary(words, min_count=3)
  with pytest.raises(ValueError, match="min_count must be >= 1"):
    build_vocabulary(words, min_count=0)
  with pytest.raises(ValueError, match="max_vocab must be >= 3"):
    build_vocabulary(words, max_vocab=2)


def test_read_text_files_with_any_names_maps_unseen_words_to_unk(tmp_path):
  (tmp_path / "mine.md").write_text("\ufeffone two two\r\nthree two\n", encoding="utf-8")
  (tmp_path / "held").write_text("two four\n", encoding="utf-8")
  (tmp_path / "last.txt.gz").write_bytes(gzip.compress("one five\n".encode()))
  c = read_text_files(tmp_path / "mine.md", tmp_path / "held", tmp_path / "last.txt.gz")
  assert c.vocab.decode(c.train) == "one two two <eos> three two <eos>".split()  # BOM, CRLF
  assert c.vocab.decode(c.valid) == ["two", UNK, EOS]
  assert c.vocab.decode(c.test) == ["one", UNK, EOS]
  assert c.vocab_options == {"min_count": 1, "max_vocab": None}
  rare = read_text_files(tmp_path / "mine.md", tmp_path / "held", tmp_path / "last.txt.gz",
                         min_count=2, max_vocab=10)
  assert rare.vocab.decode(rare.train) == f"{UNK} two two {EOS} {UNK} two {EOS}".split()
  assert rare.vocab_options == {"min_count": 2, "max_vocab": 10}
  with pytest.raises(FileNotFoundError, match="valid text file not found: .*nope"):
    read_text_files(tmp_path / "mine.md", tmp_path / "nope", tmp_path / "held")
  (tmp_path / "empty").write_text("")
  with pytest.raises(ValueError, match="empty file"):
    read_text_files(tmp_path / "mine.md", tmp_path / "held", tmp_path / "empty")
  with pytest.raises(ValueError, match="min_count must be >= 1, got 0"):
    read_text_files(tmp_path / "mine.md", tmp_path / "held", tmp_path / "held", min_count=0)


def test_split_text_file_cuts_contiguous_spans_of_words(tmp_path):
  lines = [" ".join(f"w{(i * 7 + j) % 13}" for j in range(i % 5 + 1)) for i in range(40)]
  path = tmp_path / "story.txt"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  words = " ".join(f"{line} {EOS}" for line in lines).split()
  c = split_text_file(path, (0.7, 0.2, 0.1))
  assert (c.valid.size, c.test.size) == (int(len(words) * 0.2), int(len(words) * 0.1))
  assert c.train.size + c.valid.size + c.test.size == len(words)
  # In file order, train first; words unseen in train's span become <unk>.
  for split, span in (("train", words[:c.train.size]),
                      ("valid", words[c.train.size:c.train.size + c.valid.size]),
                      ("test", words[c.train.size + c.valid.size:])):
    assert c.vocab.decode(getattr(c, split)) == [w if w in c.vocab else UNK for w in span]
  again = split_text_file(path, (0.7, 0.2, 0.1))
  np.testing.assert_array_equal(again.test, c.test)  # deterministic
  with pytest.raises(ValueError, match="3 fractions in \\(0, 1\\) summing to 1"):
    split_text_file(path, (0.7, 0.2, 0.2))
  (tmp_path / "short.txt").write_text("a b c\n")
  with pytest.raises(ValueError, match="4 words are too few to split"):
    split_text_file(tmp_path / "short.txt")
  with pytest.raises(FileNotFoundError, match="text file not found"):
    split_text_file(tmp_path / "missing.txt")


def test_read_ptb_missing(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match="nope") as e:
    read_ptb(missing)
  assert "ptb.train.txt" in str(e.value)

  d = _write_fake(tmp_path / "partial", gz=True)
  (d / "ptb.valid.txt.gz").unlink()
  with pytest.raises(FileNotFoundError, match=r"ptb\.valid\.txt"):
    read_ptb(d)


def test_read_ptb_corrupt_gzip(tmp_path):
  d = _write_fake(tmp_path / "trunc", gz=True)
  good = (d / "ptb.test.txt.gz").read_bytes()
  (d / "ptb.test.txt.gz").write_bytes(good[:len(good) // 2])  # truncated stream
  with pytest.raises(ValueError, match=r"ptb\.test\.txt\.gz.*gzip"):
    read_ptb(d)

  d = _write_fake(tmp_path / "notgz", gz=True)
  (d / "ptb.train.txt.gz").write_bytes(b"this is not gzip data")
  with pytest.raises(ValueError, match=r"ptb\.train\.txt\.gz.*not gzip"):
    read_ptb(d)

  d = _write_fake(tmp_path / "garbage", gz=True)
  (d / "ptb.valid.txt.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)))
  with pytest.raises(ValueError, match=r"ptb\.valid\.txt\.gz"):
    read_ptb(d)


def test_read_ptb_binary_plain_file(tmp_path):
  d = _write_fake(tmp_path / "bin", gz=False)
  (d / "ptb.valid.txt").write_bytes(bytes(range(256)))
  with pytest.raises(ValueError, match=r"ptb\.valid\.txt.*UTF-8"):
    read_ptb(d)


def test_read_ptb_real():
  if not (PTB_DIR / "ptb.train.txt.gz").exists() and not (PTB_DIR / "ptb.train.txt").exists():
    pytest.skip(f"real PTB not available at {PTB_DIR} (expected ptb.{{train,valid,test}}.txt[.gz])")
  c = read_ptb(PTB_DIR)
  # Counts from shared/data/ptb/README.md (tokens incl. one <eos> per line).
  assert (c.train.size, c.valid.size, c.test.size) == (929_589, 73_760, 82_430)
  assert len(c.vocab) == 10_000
  assert c.vocab.tokens[:3] == ("the", "<unk>", "<eos>")
  assert c.vocab.unk_token == "<unk>"
  assert np.count_nonzero(c.train == c.vocab.token_to_id(EOS)) == 42_068
  # every valid/test type also occurs in train: no id is out of range, and
  # the unigram baseline lands in its well-known ballpark (~700).
  assert 500 < unigram_perplexity(c.train, c.valid, len(c.vocab)) < 900


def test_vocabulary_save_never_leaves_a_half_written_file(tmp_path):
  path = tmp_path / "vocab.json"
  good = Vocabulary(["a", "b"])
  good.save(path)
  with pytest.raises(UnicodeEncodeError):  # a lone surrogate fails mid-write
    Vocabulary(["a", "\ud800"]).save(path)
  assert Vocabulary.load(path) == good
  assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]
