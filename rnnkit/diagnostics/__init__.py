"""Diagnostics of a network's training dynamics: gradients through time, gates, spectra (inspect-grads)."""
