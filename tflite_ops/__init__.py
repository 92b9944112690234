"""How DKP is lowered for the TFLite converter and how .tflite files are read.

Graph building imports TensorFlow: `lowering` (a Keras model to a
`tf.function`) and `sparse_matmul` (S as TF ops). The file-level modules do
not, at import time: `describe` (what a .tflite holds; it reads the file with
LiteRT's flatbuffer reader, or TensorFlow's when LiteRT is absent, when a
function needs it), `sparse_fc_rewrite` and `quantize` (rewrites of a converted
file), `timing`, `files`, `lowering_options` (the lowering's modes and S
kernels, for parsers), and `quiet_tensorflow` (imports TensorFlow without its
start-up log, when a command line asks it to).

>>> from tflite_ops.describe import inspect_model
>>> inspect_model("model.tflite").op_counts      # doctest: +SKIP
{'FULLY_CONNECTED': 2, 'ADD': 1}
"""
