"""dkp-keras: doped Kronecker product (DKP) compression for tf_keras models.

>>> import dkp_keras as dkp
>>> layer = dkp.DopedDense(64, compression=10)   # instead of Dense(64)
"""

import os

# tfmot needs Keras 2: make `tf.keras` resolve to tf_keras everywhere, before
# TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position
from dkp_keras.annealing import finalize, prepare_for_annealing  # noqa: E402
from dkp_keras.callbacks import CoMatrixDropout, SparsityAnnealing  # noqa: E402
from dkp_keras.compression import compression_report  # noqa: E402
from dkp_keras.layers import DopedDense  # noqa: E402
from dkp_keras.loading import load_model  # noqa: E402
from dkp_keras.lstm import DKPLSTM, DKPLSTMCell  # noqa: E402

__all__ = ["DopedDense", "DKPLSTM", "DKPLSTMCell", "prepare_for_annealing", "SparsityAnnealing",
           "CoMatrixDropout", "finalize", "compression_report", "load_model"]
__version__ = "0.1.0"
