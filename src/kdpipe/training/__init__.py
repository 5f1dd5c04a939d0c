"""The training loop, the runtime it runs on, distributed training and its diagnostics."""
