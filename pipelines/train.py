"""Train a (compressed) LSTM language model: ``python -m pipelines.train``.

``python -m pipelines.train [--data DIR | --corpus python-docs | --train F --valid F
--test F | --text F [--split 0.8,0.1,0.1]] [--min-count N] [--max-vocab N]
[--preset demo|ptb-small|ptb-medium]
[--method dkp|kp|lmf|hmd|dense|prune|...] [--compression 25] [--cmr RATE]
[--cmr-granularity G] [--cmr-decay D] [--block-size RxC] [--structure-fraction F]
[--anneal-end F] [--block-switch F] [--block-pooling AVG|MAX]
[--epochs N] [--out runs/NAME] [--resume | --force] [--strategy mirrored|multiworker]
[--keras 2|3] [--quiet] [--verbose]``

Without a corpus it trains on the embedded Markov corpus; ``--data DIR``
reads Mikolov's ``ptb.{train,valid,test}.txt`` (plain or .gz); ``--corpus NAME``
a corpus that ships with a system package (`corpora.CORPORA`); ``--train/--valid/
--test`` or ``--text`` read a user's own UTF-8 text, whose words outside the
vocabulary (``--min-count``, ``--max-vocab``) map to ``<unk>``. Everything is
checked before the run directory is made. It gets ``run.json`` (the
settings), ``vocab.json``, TensorBoard logs (``logs/``: loss, perplexity,
validation perplexity, S sparsity per layer, CMR rate), a checkpoint per epoch
(``backup/``, Keras `BackupAndRestore`: ``--resume`` continues a killed run to
the same result, history included), and at the end ``model.keras`` and
``metrics.json``. Perplexity is per word, <eos> included, with LSTM states
carried across batches (`training.evaluate_perplexity`). ``--keras 3`` builds
and trains the same model with Keras 3 (`dkp_keras.keras3`) on the backend
``KERAS_BACKEND`` names (default tensorflow); its ``model.keras`` is a Keras 3
file that ``pipelines.convert`` converts. The work is
`pipelines.training`'s; this module is the command line, which answers
``--help`` and usage errors without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys

from dkp_keras import cmr
from pipelines import choices
from pipelines import cli
from pipelines import corpora
from pipelines import models
from pipelines import presets
from tflite_ops import quiet_tensorflow


class _DeprecatedAlias(argparse.Action):
  """Stores the value like the flag it stands for, with a note to use that flag."""

  def __call__(self, parser, namespace, values, option_string=None):
    print(f"note: {option_string} is now {self.metavar}; it still works for now",
          file=sys.stderr)
    setattr(namespace, self.dest, values)


def _block_size(text):
  """argparse type of --block-size: "1x1" -> (1, 1)."""
  try:
    rows, cols = (int(part) for part in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected ROWSxCOLS such as 4x1, got {text!r}") from None
  return rows, cols


def _fractions(text):
  """argparse type of --split: "0.8,0.1,0.1" -> (0.8, 0.1, 0.1)."""
  try:
    return tuple(float(part) for part in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected three comma-separated fractions such as "
                                     f"0.8,0.1,0.1, got {text!r}") from None


def build_parser():
  """The CLI's parser; every flag has a help line that shows its default."""
  parser = argparse.ArgumentParser(prog="python -m pipelines.train",
                                   description=__doc__.splitlines()[0])
  corpus = parser.add_argument_group(
      "corpus (default: the embedded Markov corpus)",
      "Text is split into words on whitespace, with one <eos> per line.")
  corpus.add_argument("--data", metavar="DIR",
                      help="directory with ptb.{train,valid,test}.txt[.gz]; every valid/test "
                           "word must occur in train unless train has <unk> or a vocabulary "
                           "option below is given")
  corpus.add_argument("--corpus", choices=sorted(corpora.CORPORA),
                      help="a real corpus that ships with a system package: python-docs is the "
                           f"Python 3.11 documentation (Debian's {corpora.PYTHON_DOCS_PACKAGE}); "
                           "its vocabulary: the --max-vocab most frequent train words "
                           f"(default: {corpora.PYTHON_DOCS_MAX_VOCAB})")
  corpus.add_argument("--train", metavar="FILE", help="your train text (UTF-8, any name); with "
                      "--valid and --test")
  corpus.add_argument("--valid", metavar="FILE", help="your validation text")
  corpus.add_argument("--test", metavar="FILE", help="your test text")
  corpus.add_argument("--text", metavar="FILE",
                      help="one UTF-8 text file, cut by --split into three contiguous spans of "
                           "its words in file order (train first)")
  corpus.add_argument("--split", type=_fractions, metavar="T,V,E",
                      help="--text's train,valid,test fractions of its words (default: "
                           f"{','.join(f'{f:g}' for f in choices.TEXT_SPLIT)})")
  corpus.add_argument("--min-count", type=int, metavar="N",
                      help="keep train words seen at least N times, the rest become <unk> "
                           "(default: 1 for text files; PTB data keeps every train word)")
  corpus.add_argument("--max-vocab", type=int, metavar="N",
                      help="keep at most the N most frequent words, <unk> and <eos> included "
                           "(default: no limit)")
  parser.add_argument("--preset", default="demo",
                      help=f"model size and training recipe, one of {sorted(presets.PRESETS)} "
                           "(default: %(default)s)")
  parser.add_argument("--method", default="dkp", metavar="METHOD",
                      help=f"compression method, one of {list(models.METHODS)} "
                           "(default: %(default)s)")
  parser.add_argument("--structure", dest="method", action=_DeprecatedAlias, metavar="--method",
                      default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
  parser.add_argument("--compression", type=float,
                      help="factor for the LSTM layers; dense, int8 and int4 reach only 1x, 4x "
                           f"and 8x (default: {choices.DEFAULT_COMPRESSION:g}, or the method's "
                           "only factor)")
  knobs = parser.add_argument_group(
      "DKP options", "knobs of the doped methods (models.DKP_OPTIONS); default: the method's, "
      "else the preset's, else the layers'")
  knobs.add_argument("--cmr", type=float, metavar="RATE",
                     help="initial co-matrix dropout rate (dkp; 0: no CMR)")
  knobs.add_argument("--cmr-granularity", choices=cmr.GRANULARITIES,
                     help="what co-matrix dropout drops: rows of S, all of it, or blocks (dkp)")
  knobs.add_argument("--cmr-decay", choices=cmr.DECAYS,
                     help="how the CMR rate falls to 0 over the annealing window (dkp)")
  knobs.add_argument("--block-size", type=_block_size, metavar="RxC",
                     help="S's blocks, [in, out] rows x cols of the kernel (the layers': 4x1, "
                          "TFLite's 1x4 sparse layout)")
  knobs.add_argument("--structure-fraction", type=float, metavar="F",
                     help="share of the parameter budget the structure may use (S gets the rest)")
  knobs.add_argument("--anneal-end", type=float, metavar="F",
                     help="fraction of the training steps S anneals over (then fine-tunes)")
  knobs.add_argument("--block-switch", type=float, metavar="F",
                     help="S anneals entry by entry until this fraction of the steps, then in "
                          "its blocks (at most --anneal-end)")
  knobs.add_argument("--block-pooling", choices=models.BLOCK_POOLINGS,
                     help="how a block of S is scored for annealing: mean or largest |w|")
  parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the weights and the dropout draws (default: %(default)s)")
  parser.add_argument("--out", metavar="DIR", help="run directory (default: "
                      "runs/<preset>-<method>-<compression>x)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the killed or finished run in --out (same options)")
  parser.add_argument("--force", action="store_true",
                      help="start --out over (deletes our run files there, keeps others)")
  parser.add_argument("--strategy", default="default", choices=choices.STRATEGIES,
                      help="tf.distribute strategy; multiworker: run the same command on "
                           "every worker (each with its TF_CONFIG) with one --out they share; "
                           "worker 0 writes it (default: %(default)s)")
  parser.add_argument("--keras", default="2", choices=choices.KERAS_VERSIONS,
                      help="2: tf_keras (every method and strategy); 3: Keras 3 on the backend "
                           "KERAS_BACKEND names (tensorflow, jax or torch; default tensorflow), "
                           "the methods but prune, int8 and int4, one device "
                           "(default: %(default)s)")
  parser.add_argument("--from-model", metavar="FILE",
                      help="int8/int4: quantize this trained dense model.keras (same preset "
                           "and data) instead of training one (default: train one)")
  parser.add_argument("--deployed-perplexity", action="store_true",
                      help="also measure the test perplexity of the step-mode .tflite files "
                           f"({', '.join(choices.DEPLOYED_EXPORTS)}) run through LiteRT")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  cli.add_verbose_flag(parser)
  return parser


def parse_args(argv=None):
  """The CLI's options, with ``text_files`` = (train, valid, test) or None."""
  parser = build_parser()
  args = parser.parse_args(argv)
  text_files = (args.train, args.valid, args.test)
  if any(text_files) and not all(text_files):
    parser.error("--train, --valid and --test go together (or give one --text file)")
  args.text_files = text_files if all(text_files) else None
  return args


def main(argv=None):
  args = parse_args(argv)  # parses and checks, so TensorFlow loads after (as in cli's helper)
  if args.keras == "2" or os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    quiet_tensorflow.import_tensorflow(verbose=args.verbose, legacy_keras=args.keras == "2")
  from pipelines import training  # pylint: disable=import-outside-toplevel
  try:
    compression = training.run_compression(args.method, args.compression)
    out = args.out or f"runs/{args.preset}-{args.method}-{compression:g}x"
    metrics = training.train_run(out, args.preset, args.data, args.method, compression, args.cmr,
                        args.epochs, args.seed, args.strategy, args.resume, args.force,
                        verbose=0 if args.quiet else 1, base_model=args.from_model,
                        text_files=args.text_files, text_file=args.text, split=args.split,
                        min_count=args.min_count, max_vocab=args.max_vocab,
                        deployed_exports=(choices.DEPLOYED_EXPORTS if args.deployed_perplexity
                                          else ()),
                        corpus_name=args.corpus,
                        options={name: getattr(args, name) for name in models.DKP_OPTIONS},
                        keras=args.keras)
  except (ValueError, TypeError, OSError, UnicodeDecodeError) as error:
    return cli.fail(error, 2)
  keras = metrics.get("keras")
  on = f", Keras 3 on {keras['backend']}" if keras else ""
  print(f"\n{metrics['method']} ({metrics['preset']}{on}): LSTM {metrics['lstm_compression']:.1f}x "
        f"smaller ({metrics['lstm_params']:,} of {metrics['lstm_dense_params']:,} parameters); "
        f"valid perplexity {metrics['valid_perplexity']:.2f}, test "
        f"{metrics['test_perplexity']:.2f}; trained in {metrics['train_seconds']:.0f} s")
  for export, value in metrics.get("deployed_test_perplexity", {}).items():
    print(f"test perplexity of the {export} .tflite (step mode, LiteRT): {value:.2f}")
  if metrics.get("target_warning"):
    print(f"warning: {metrics['target_warning']}", file=sys.stderr)
  print(f"run directory: {out} (model.keras, metrics.json, logs/ for TensorBoard)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
