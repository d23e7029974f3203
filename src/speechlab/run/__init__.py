"""The Hydra runner: train, evaluate, resume, run records, sweep summaries, loggers, reports."""
