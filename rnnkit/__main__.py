"""`python -m rnnkit` runs the CLI (also what `torchrun -m rnnkit` starts on each rank)."""

from rnnkit.cli import main

if __name__ == "__main__":
    main()
