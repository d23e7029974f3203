"""Audio file I/O and the features computed from it on the device."""
