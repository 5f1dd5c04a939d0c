"""MLflow: runs, logged models, the registry, async logging, tag names, datasets, links, notes."""
