"""LightningModules, one per task: steps, losses, metrics, what they log."""
