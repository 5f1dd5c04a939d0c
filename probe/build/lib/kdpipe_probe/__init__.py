"""kdpipe's inference-cost probe, installable without torch: measure an exported student where it will run."""

__version__ = "0.1.0"
