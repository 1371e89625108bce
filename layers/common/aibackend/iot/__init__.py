"""IoT anomaly detection: device types and their readings (`devices`), rolling per-device
window features (`window`), the online window table (`store`)."""
