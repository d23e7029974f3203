"""speechlab: a Hydra + Lightning experiment framework for speech."""

__version__ = "0.1.0"
