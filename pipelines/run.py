"""The main job: dense baseline vs DKP on the embedded corpus, trained, converted, timed.

``python -m pipelines.run [--out runs/demo] [--epochs 4] [--compression 25] [--units 512] [--force]
[--verbose]``

Trains a dense LSTM language model and its DKP twin (S annealed with
co-matrix dropout) on the embedded Markov corpus, converts both to TFLite in
step mode (the streaming model a device runs), verifies them against Keras,
times one step of each (1 thread, interleaved repetitions, medians), and writes
``report.md``, ``report.json`` and ``report.png`` (perplexity vs size vs
latency) into the run directory, printing a short table. A few minutes on 2
CPU cores. The work is `pipelines.dense_vs_dkp`'s; this module is the command
line, which answers ``--help`` and usage errors without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines import cli


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m pipelines.run",
                                   description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--out", default="runs/demo", help="run directory")
  parser.add_argument("--epochs", type=int, default=4, help="training epochs of both models")
  parser.add_argument("--compression", type=float, default=25.0,
                      help="compression factor of the DKP model")
  parser.add_argument("--tokens", type=int, default=120_000,
                      help="size of the embedded corpus")
  parser.add_argument("--units", type=int, default=512, help="LSTM units")
  parser.add_argument("--force", action="store_true",
                      help="start over: delete this job's files in --out (others are kept)")
  cli.add_verbose_flag(parser)
  return parser


def main(argv=None):
  args = cli.parse_then_import_tensorflow(build_parser(), argv)
  from pipelines import conversion, dense_vs_dkp  # pylint: disable=import-outside-toplevel
  try:
    report = dense_vs_dkp.compare_dense_and_dkp(
        args.out, epochs=args.epochs, compression=args.compression, tokens=args.tokens,
        units=args.units, force=args.force)
  except (ValueError, OSError, conversion.ConversionError) as error:
    return cli.fail(error)
  print("\n" + dense_vs_dkp.format_table(report))
  print(f"\nreport: {os.path.join(args.out, 'report.md')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
