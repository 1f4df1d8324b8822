"""Evaluation: metrics, datasets (one module per family), result records, the AP dispatch,
instance evaluation and whole-image (VLAD) search."""
