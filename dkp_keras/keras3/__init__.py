"""dkp-keras for Keras 3, on any backend (tensorflow, jax or torch).

>>> import keras
>>> from dkp_keras import keras3 as dkp
>>> layer = dkp.DopedDense(64, compression=10)   # instead of keras.layers.Dense(64)
>>> # model.fit(..., callbacks=[dkp.SparsityAnnealing(0, 20_000), dkp.CoMatrixDropout()])
>>> # model = dkp.finalize(model); print(dkp.compression_report(model))

Importing this package imports Keras 3, numpy and pandas, never tf_keras or
tensorflow-model-optimization, and leaves ``TF_USE_LEGACY_KERAS`` unset.
"""

from dkp_keras.keras3.annealing import finalize
from dkp_keras.keras3.callbacks import CoMatrixDropout, SparsityAnnealing
from dkp_keras.keras3.compression import compression_report
from dkp_keras.keras3.layers import DopedDense
from dkp_keras.keras3.lstm import DKPLSTM, DKPLSTMCell

__all__ = ["DopedDense", "DKPLSTM", "DKPLSTMCell", "SparsityAnnealing", "CoMatrixDropout",
           "finalize", "compression_report"]
