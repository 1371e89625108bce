"""Model monitoring maths: mergeable profiles, drift, accuracy with late labels, bias.

- `profiles`: `Profile` of a batch (KLL sketches, exact category counts, nulls, prediction,
  per-group confusion counts), merged into hour/day `Window`s that count each delta once.
- `drift`: per-feature and prediction drift against the training baseline profile, with
  Evidently's default test selection, and the dataset verdict.
- `labels`: the label ledger (predictions and late labels joined on inference id);
  `accuracy`: ROC AUC, precision, recall, F1, calibration and label completeness per window.
- `bias`: demographic parity, disparate impact, equalized odds, with confidence intervals.

The services around them (docs/monitoring.md, "The monitoring services"):
- `ingest`: capture records -> profile delta and ledger rows; `feedback`: labels from the API
  and from labels files; `ledger` / `dynamo_labels`: the ledger per adapter set;
- `service`: judge one window (report, findings published once); `runner`: with the platform's
  adapters (the hourly function, `aib monitor run`); `config`: `[monitor.<model>]` settings.

See docs/monitoring.md for what each statistic means, the thresholds and the references.
"""
