"""Readers of the corpus formats the field already uses: JSON-lines/CSV manifests (NeMo,
SpeechBrain), Kaldi/ESPnet data dirs, Lhotse manifests and Hugging Face ``datasets``."""
