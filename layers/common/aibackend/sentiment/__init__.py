"""Customer sentiment: a text classifier whose ONNX graph takes raw strings."""
