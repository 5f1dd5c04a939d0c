"""Deployment formats: the ONNX export, its parity and cost, and the cost probe that runs on a target."""
