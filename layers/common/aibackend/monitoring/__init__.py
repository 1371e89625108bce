"""Model monitoring maths: mergeable profiles, drift, accuracy with late labels, bias.

- `profiles`: `Profile` of a batch (KLL sketches, exact category counts, nulls, prediction,
  per-group confusion counts), merged into hour/day `Window`s that count each delta once.
- `drift`: per-feature and prediction drift against the training baseline profile, with
  Evidently's default test selection, and the dataset verdict.
- `labels`: the label ledger (predictions and late labels joined on inference id);
  `accuracy`: ROC AUC, precision, recall, F1, calibration and label completeness per window.
- `bias`: demographic parity, disparate impact, equalized odds, with confidence intervals.

See docs/monitoring.md for what each statistic means, the thresholds and the references.
"""
