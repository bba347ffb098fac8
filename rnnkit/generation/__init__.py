"""Generation: pure batched decoders (decoding.py), option handling (options.py), prompts and runs (generate.py)."""
