"""One construct per concern; each exposes its resources as attributes."""
