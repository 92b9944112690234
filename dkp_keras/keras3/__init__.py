"""dkp-keras for Keras 3, on any backend (tensorflow, jax or torch).

>>> import keras
>>> from dkp_keras import keras3 as dkp
>>> layer = dkp.DopedDense(64, compression=10)   # instead of keras.layers.Dense(64)

Importing this package imports Keras 3 and numpy, never tf_keras or
tensorflow-model-optimization, and leaves ``TF_USE_LEGACY_KERAS`` unset.
"""

from dkp_keras.keras3.layers import DopedDense

__all__ = ["DopedDense"]
