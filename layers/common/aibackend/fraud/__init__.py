"""Card-fraud domain: transaction contract, feature definitions, synthetic data."""
