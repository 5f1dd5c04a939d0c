"""Data: raw sources, the prepared (hashed, manifested) data set, and the in-memory batch loader."""
