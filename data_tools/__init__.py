"""Corpus -> memory-mapped token ids with whole-word boundaries (no paddle import)."""

from .helpers import build_samples_mapping, get_samples_mapping

__all__ = ["build_samples_mapping", "get_samples_mapping"]
