"""Text: tokenizers, transcript normalisation, the espeak-ng binding."""
