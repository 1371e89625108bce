"""Training entry points (SageMaker training-container contract) and the local runner.

Training needs the `train` extra (scikit-learn, skl2onnx, onnx); none of it ships in a function.
"""
