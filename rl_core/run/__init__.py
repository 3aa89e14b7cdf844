"""A training run end to end: the training loop, lineage, reproduction, and the CLI."""
