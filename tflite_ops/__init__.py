"""How DKP is lowered for the TFLite converter and how .tflite files are read.

Nothing here imports TensorFlow at import time: the modules load it (or the
lighter LiteRT flatbuffer reader) when a function needs it.

>>> from tflite_ops.describe import inspect_model
>>> inspect_model("model.tflite").op_counts      # doctest: +SKIP
{'FULLY_CONNECTED': 2, 'ADD': 1}
"""
