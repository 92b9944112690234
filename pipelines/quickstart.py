"""Quick start: train a small DKP LSTM language model on the embedded corpus.

``python -m pipelines.quickstart [--epochs 4] [--compression 10] [--out model.keras]
[--verbose]``

Builds Embedding -> DKPLSTM -> DopedDense, anneals the doping matrices to the
sparsity the compression factor needs (with co-matrix dropout), finalizes the
model, prints its compression report and its validation perplexity next to the
unigram baseline and the corpus' best achievable perplexity, and optionally
saves it (`training.train_small_dkp_lm`). Runs in about a minute on 2 CPU
cores. ``--help`` and usage errors answer without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from pipelines import cli


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m pipelines.quickstart",
                                   description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--epochs", type=int, default=4, help="training epochs")
  parser.add_argument("--compression", type=float, default=10.0, help="compression factor")
  parser.add_argument("--tokens", type=int, default=120_000, help="size of the embedded corpus")
  parser.add_argument("--batch", type=int, default=32, help="batch size")
  parser.add_argument("--steps", type=int, default=20, help="time steps per training window")
  parser.add_argument("--cmr", type=float, default=0.8, help="initial co-matrix dropout rate")
  parser.add_argument("--out", help="save the finalized model here (.keras)")
  cli.add_verbose_flag(parser)
  return parser


def main(argv=None):
  parser = build_parser()
  args = cli.parse_then_import_tensorflow(parser, argv)
  from pipelines import training  # pylint: disable=import-outside-toplevel
  try:
    result = training.train_small_dkp_lm(args.epochs, args.compression, args.tokens, args.batch,
                                         args.steps, args.cmr, args.out)
  except ValueError as error:
    parser.error(str(error))
  print("\nCompression report")
  print(result["report"].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
  print(f"\nvalidation perplexity {result['perplexity']:.2f}   unigram baseline "
        f"{result['unigram_perplexity']:.2f}   best achievable "
        f"{result['optimal_perplexity']:.2f}   (trained in {result['train_seconds']:.0f} s)")
  if args.out:
    print(f"saved {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
