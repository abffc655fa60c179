"""Verification: the exported model against PyTorch eager, on input sets beyond the example."""
