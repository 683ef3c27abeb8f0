"""Corpus -> memory-mapped token ids with whole-word boundaries (no paddle import)."""
