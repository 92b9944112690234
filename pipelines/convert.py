"""Lower a Keras model with DKP layers to a verified `.tflite` file.

``python -m pipelines.convert model.keras --out model.tflite [--mode sequence|step]
[--seq-len 35] [--batch 1] [--sparse-kernel auto|block|csr|gather|dense]
[--quantize none|float16|dynamic-int8] [--verify N] [--verify-data x.npy]
[--report report.json] [--force] [--verbose]``

Accepts a `.keras` / `.h5` file (tf_keras or Keras 3) or a SavedModel directory
(`conversion.convert` also an in-memory model). The Kronecker part becomes
reshape / FULLY_CONNECTED / TRANSPOSE ops and S a sparse kernel (see
`tflite_ops`: 1x4-block S as the converter's block-sparse weight, other sparse S
rewritten as a CSR weight after conversion); only TFLite builtin ops are
allowed. The written file is read back: its ops, bytes per component and sparse
weights are reported, and it is run with LiteRT against the Keras model on
``--verify`` random inputs (and ``--verify-data``). A file that fails
verification is kept as ``<out>.unverified`` and the command exits 1; nothing is
ever half-written at ``--out`` (temp file + rename). Every output location is
checked before any work: no output is an input or another output, and an
existing file is replaced only with ``--force``. The work is
`pipelines.conversion`'s; this module is the command line, which answers
``--help`` and usage errors without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from pipelines import choices
from pipelines import cli
from tflite_ops import lowering_options


def _whole_number(text):
  """argparse type: an integer >= 0."""
  try:
    value = int(text)
  except ValueError:
    value = -1
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0: none), got {text!r}")
  return value


def _tolerance(text):
  """argparse type: a number >= 0 (not NaN)."""
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not value >= 0:
    raise argparse.ArgumentTypeError(f"expected a number >= 0 (the max normwise error "
                                     f"accepted), got {text!r}")
  return value


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m pipelines.convert",
                                   description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("model", help=".keras / .h5 file (tf_keras or Keras 3) or SavedModel "
                      "directory")
  parser.add_argument("--out", required=True, help="the .tflite file to write")
  parser.add_argument("--mode", choices=lowering_options.MODES, default="sequence",
                      help="sequence: whole sequences in, outputs out; step: one time step "
                           "with the LSTM states as inputs and outputs (streaming)")
  parser.add_argument("--seq-len", type=int, help="sequence length (default: the model's, "
                      f"else {choices.DEFAULT_SEQ_LEN})")
  parser.add_argument("--batch", type=int, default=1, help="batch size (0: dynamic)")
  parser.add_argument("--sparse-kernel", choices=lowering_options.KERNELS, default="auto",
                      help="how S runs: auto picks block (1x4 S), csr (other sparse S) or "
                           "dense per matrix")
  parser.add_argument("--quantize", choices=choices.QUANTIZATIONS, default="none",
                      help="weight quantization of the file")
  parser.add_argument("--fuse-doping", action="store_true",
                      help="step mode: one S per DKP LSTM layer over its input and state "
                           "(faster; S's input part is padded to whole blocks, so the file "
                           "is a little larger than the asked compression)")
  parser.add_argument("--verify", type=_whole_number, default=8, metavar="N",
                      help="random inputs to verify on (0: none)")
  parser.add_argument("--verify-data", help=".npy array of inputs (examples, steps, ...)")
  tolerances = ", ".join(f"{k} {v:g}" for k, v in choices.TOLERANCES.items())
  parser.add_argument("--tolerance", type=_tolerance,
                      help=f"max normwise error accepted (default: {tolerances})")
  parser.add_argument("--report", help="write the report as JSON here")
  parser.add_argument("--force", action="store_true",
                      help="overwrite an existing --out / --report / <out>.unverified")
  cli.add_verbose_flag(parser)
  return parser


def main(argv=None):
  args = cli.parse_then_import_tensorflow(build_parser(), argv)
  from pipelines import conversion  # pylint: disable=import-outside-toplevel
  try:
    result = conversion.convert(args.model, args.out, mode=args.mode, seq_len=args.seq_len,
                                batch_size=args.batch or None, sparse_kernel=args.sparse_kernel,
                                quantize=args.quantize, verify_samples=args.verify,
                                verify_data=args.verify_data, report_path=args.report,
                                force=args.force, tolerance=args.tolerance,
                                fuse_doping=args.fuse_doping)
  except (FileNotFoundError, ValueError, conversion.ConversionError, OSError) as error:
    return cli.fail(error)
  print(conversion.format_report(result.report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
