"""Pure torch modules (no Lightning, no Hydra): encoders, attention, spellers, Tacotron 2,
vocoders."""
