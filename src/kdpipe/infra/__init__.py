"""The bottom layer: files (atomic writes, free-space checks), factories, errors, object storage."""
