"""rnnkit: train, evaluate, decode from and diagnose hand-written recurrent networks."""

__version__ = "0.1.0"
