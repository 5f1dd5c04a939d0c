"""kdpipe: nightly knowledge distillation with the projector recipe of Miles & Mikolajczyk (AAAI 2024)."""

__version__ = "0.1.0"
