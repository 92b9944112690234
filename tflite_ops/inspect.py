"""Deprecated name of `tflite_ops.describe`, kept for a deprecation period.

The module was renamed because ``inspect`` shadows the standard library's
module of that name. Importing it warns (DeprecationWarning) and gives
`tflite_ops.describe`'s public names; ``python -m tflite_ops.inspect`` prints
one line on stderr and runs ``python -m tflite_ops.describe``.
"""

from __future__ import annotations

import sys
import warnings

from tflite_ops.describe import (  # noqa: F401  pylint: disable=unused-import
    TFLITE_IDENTIFIER, IOInfo, ModelInfo, OpInfo, SparsityInfo, TensorInfo, TFLiteFormatError,
    builtin_code, format_model_info, inspect_model, is_csr_sparse, is_fast_block_sparse, main,
    opcode_index)

DEPRECATION = ("tflite_ops.inspect is deprecated and will be removed; use tflite_ops.describe "
               "(python -m tflite_ops.describe)")

if __name__ == "__main__":
  print(f"warning: {DEPRECATION}", file=sys.stderr)
  sys.exit(main())
else:
  warnings.warn(DEPRECATION, DeprecationWarning, stacklevel=2)
