"""The offline generators of the embedded corpora, each writing a real corpus layout."""
