"""Placeholder replaced by the fine-pruning issue."""
