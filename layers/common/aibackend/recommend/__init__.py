"""Product recommendations: synthetic interactions, interaction files, ranking metrics, the
item-embedding scorer (numpy reference and ONNX graph) and the serving-side recommender.

numpy only at import time: onnx and scipy are imported inside the training-time functions.
"""
