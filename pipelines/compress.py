"""Post-training compression of a trained dense model: ``python -m pipelines.compress``.

``python -m pipelines.compress trained_dense.keras --compression 25 --out compressed.keras
[--finetune-epochs N] [--data DIR] [--preset demo] [--structure kronecker|lowrank]
[--layers NAME,NAME | --min-params N] [--force] [--quiet] [--verbose]``

Every LSTM and Dense layer with at least ``--min-params`` weights (or the
layers named by ``--layers``) becomes its DKP twin, initialized from the
trained weights: the nearest Kronecker product of each matrix (Van
Loan–Pitsianis; truncated SVD for ``lowrank``) plus S = the largest residual
blocks, as many as the factor allows. The model is then fine-tuned for N
epochs with S's mask held at its target and co-matrix dropout, and the
perplexity is reported before (dense), right after the projection, and after
fine-tuning (``<out>.json`` beside the model). A Keras 3 model file is read
as its tf_keras twin (same layers and weights); the compressed model is a
tf_keras file (`dkp_keras.load_model`). The work is
`pipelines.post_training`'s; this module is the command line, which answers
``--help`` and usage errors without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from pipelines import choices
from pipelines import cli


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m pipelines.compress",
                                   description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("model", help="trained dense .keras model (tf_keras or Keras 3)")
  parser.add_argument("--compression", type=float, default=25.0,
                      help="compression factor of each compressed layer")
  parser.add_argument("--out", required=True, help="compressed .keras model to write")
  parser.add_argument("--finetune-epochs", type=int, default=1,
                      help="epochs of fine-tuning after the projection (0: none)")
  parser.add_argument("--data", help="PTB directory (default: the embedded corpus)")
  parser.add_argument("--preset", default="demo", help="recipe for fine-tuning and batching")
  parser.add_argument("--structure", default="kronecker", choices=choices.STRUCTURES,
                      help="structure the layers are projected onto")
  parser.add_argument("--layers", type=lambda text: [n for n in text.split(",") if n],
                      help="comma-separated names of the LSTM / Dense layers to compress "
                           "(default: every one with at least --min-params weights)")
  parser.add_argument("--min-params", type=int, default=choices.DEFAULT_MIN_PARAMS,
                      help="size threshold of the default layer choice")
  parser.add_argument("--include-dense", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--force", action="store_true", help="overwrite --out")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  cli.add_verbose_flag(parser)
  return parser


def main(argv=None):
  args = cli.parse_then_import_tensorflow(build_parser(), argv)
  from pipelines import post_training  # pylint: disable=import-outside-toplevel
  try:
    report = post_training.compress(args.model, args.out, args.compression, args.finetune_epochs,
                                    args.data, args.preset, args.structure, args.layers,
                                    args.min_params, args.force, verbose=0 if args.quiet else 1)
  except (ValueError, OSError) as error:
    return cli.fail(error, 2)
  for stage, values in report["perplexity"].items():
    print(f"{stage:>10}: valid perplexity {values['valid']:.2f}, test {values['test']:.2f}")
  print("compressed layers: " + ", ".join(
      f"{row['layer']} {row['compression']:.1f}x" for row in report["layers"]
      if row["target_compression"] > 1))
  print(f"whole model: {report['model_compression']:.1f}x fewer parameters, "
        f"{report['model_byte_compression']:.1f}x fewer bytes as stored")
  if report["target_warning"]:
    print(f"warning: {report['target_warning']}", file=sys.stderr)
  if report.get("input_keras") == "3":
    print("note: the Keras 3 model was read as its tf_keras twin (same layers and weights); "
          f"{args.out} is a tf_keras file: load it with dkp_keras.load_model")
  print(f"saved {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
