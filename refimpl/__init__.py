"""refimpl: a readable NumPy-only reference of the BERT and XLNet forward passes.

Importing refimpl never imports TensorFlow; checkpoints are read by refimpl.checkpoint.
"""
from refimpl import checkpoint

__all__ = ["checkpoint"]
__version__ = "0.1.0"
