"""Corpus readers, one per on-disk layout, and the download of public archives."""
