"""qmlrp: graph-convolution models of QM9 properties, explained with layer-wise relevance propagation."""

__version__ = "0.1.0"
