"""negmine: mine, filter, relabel and export hard negatives for retrieval training."""

__version__ = "0.1.0"
