"""Training side of bring-your-own-model: never shipped to Lambda (the common layer leaves out
every `training` folder). scikit-learn and skl2onnx are imported only inside the functions
that need them.

- `csvfile`: read a CSV as it comes (encoding, delimiter, BOM, ragged rows);
- `columns`: decide each column's role and the task;
- `train`: the SageMaker-contract entry point (`python -m aibackend.byom.training.train`);
- `local`: run it as a subprocess, register and promote the result.
"""
