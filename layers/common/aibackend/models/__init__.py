"""Model artifacts (model.json / baseline.json) and the onnxruntime loader."""
