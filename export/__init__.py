"""Checkpoint converters: ernie_style <-> Hugging Face transformers, and to PaddleNLP (no paddle import)."""
