"""Run folders: checkpoints, the run lock, config and latest-run lookup, and loading a trained run once."""
