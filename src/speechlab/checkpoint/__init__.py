"""The checkpoint file: the recipe in it, load and restore, last.ckpt and exact resume, averaging,
partial loads."""
