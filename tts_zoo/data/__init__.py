"""Corpora, manifests, datasets, batching."""
