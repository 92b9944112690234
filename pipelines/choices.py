"""The choices and defaults the product's commands offer, importable without TensorFlow.

The command lines build their parsers from these (so ``--help`` and usage
errors answer before TensorFlow loads); the modules that do the work
(`training`, `conversion`, `post_training`, `deployed`) check their arguments
against the same names.
"""

from __future__ import annotations

# pipelines.train / pipelines.training
KERAS_VERSIONS = ("2", "3")  # --keras: tf_keras, or Keras 3 on KERAS_BACKEND's backend
STRATEGIES = ("default", "mirrored", "multiworker")  # tf.distribute strategies
DEFAULT_COMPRESSION = 25.0  # for the methods that reach any factor
TEXT_SPLIT = (0.8, 0.1, 0.1)  # --text: fractions of its words for train, valid, test
# The step-mode .tflite files whose perplexity --deployed-perplexity measures (pipelines.deployed).
DEPLOYED_EXPORTS = ("float32", "dynamic-int8")

# pipelines.convert / pipelines.conversion
QUANTIZATIONS = ("none", "float16", "dynamic-int8")
# Max normwise error of the .tflite against Keras a verification accepts, per quantization.
TOLERANCES = {"none": 1e-4, "float16": 1e-2, "dynamic-int8": 1e-1}
# Sequence length when the model fixes none (PTB's unroll length).
DEFAULT_SEQ_LEN = 35

# pipelines.compress / pipelines.post_training
STRUCTURES = ("kronecker", "lowrank")  # what the layers are projected onto
# Layers with fewer weights gain little from compression and often cannot reach the factor.
DEFAULT_MIN_PARAMS = 4096
