"""torchrun with 2 CPU processes (gloo) gives the losses and weights of one process on the combined batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rnnkit.config import load_config
from rnnkit.training import train

CONFIG = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 120, "max_len": 30},
    "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 10, "eval_every": 5, "checkpoint_every": 5, "log_every": 1,
              "histogram_every": 0, "seed": 1, "lr": 0.01, "device": "cpu"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_two_gloo_processes_match_one_process(tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "run": {"name": "ddp", "dir": str(tmp_path / "runs")}}))
    env = {**os.environ, "RNNKIT_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "rnnkit", "train", str(config), "--quiet"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    single = train(load_config(config), quiet=True, run_dir=tmp_path / "single", data_root=tmp_path / "data")
    ddp_dir = tmp_path / "runs" / "ddp"
    assert _scalars(ddp_dir, "train/loss") == pytest.approx(single.losses, rel=1e-5)
    assert _scalars(ddp_dir, "val/loss") == pytest.approx(_scalars(tmp_path / "single", "val/loss"), rel=1e-5)
    a, b = load_file(str(ddp_dir / "last" / "model.safetensors")), load_file(str(tmp_path / "single" / "last" /
                                                                              "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert not list(ddp_dir.glob(".*tmp*")), "rank 1 must not write"


@pytest.mark.slow  # 30 s on 2 cores; the row sharding itself is tested in tests/data/test_stream_batches.py
def test_two_gloo_processes_each_carry_their_own_rows_of_a_stream(tmp_path):
    corpus = tmp_path / "keys.txt"
    corpus.write_text("".join(f"{k}abcdefghij{k}\n" for k in "xyyxyxxyyyxyxyxx" * 40))
    stream = {**CONFIG, "data": {"source": "keys", "path": str(corpus), "mode": "stream", "window": 16},
              "train": {**CONFIG["train"], "batch_size": 8, "checkpoint_every": 4},
              "run": {"name": "ddp", "dir": str(tmp_path / "runs")}}
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(stream))
    env = {**os.environ, "RNNKIT_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "rnnkit", "train", str(config), "--quiet"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    single = train(load_config(config), quiet=True, run_dir=tmp_path / "single", data_root=tmp_path / "data")
    ddp_dir = tmp_path / "runs" / "ddp"
    assert _scalars(ddp_dir, "train/loss") == pytest.approx(single.losses, rel=1e-5)
    assert _scalars(ddp_dir, "val/loss") == pytest.approx(_scalars(tmp_path / "single", "val/loss"), rel=1e-5)
    # `last` holds the carried state of all 8 rows, gathered from both processes, as one process has it.
    a, b = (load_file(str(folder / "last" / "carried.safetensors")) for folder in (ddp_dir, tmp_path / "single"))
    assert a["state.0"].shape == (1, 8, 8)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
