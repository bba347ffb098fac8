"""A run is loaded once: `rnnkit.load`, the commands built on it, and what they never need (the run lock)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import train_run, working_folder
from typer.testing import CliRunner

import rnnkit
from rnnkit.cli import app
from rnnkit.io import tensors
from rnnkit.runs.checkpoint import load_checkpoint

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu",
              "log_every": 2},
    "generate": {"max_len": 20},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder holding one tiny trained run, runs/tiny, with RNNKIT_DATA inside it."""
    with working_folder(tmp_path_factory.mktemp("loaded")) as root:
        train_run(root, TINY)
        yield root


def test_load_reads_config_task_model_and_the_step_of_its_weights(work):
    run = rnnkit.load("runs/tiny", device="cpu")
    assert run.which == "best" and run.cfg.model.cell == "gru" and run.device.type == "cpu"
    best = load_checkpoint("runs/tiny", "best", with_optimizer=False)
    assert run.step == best.step and run.metrics == best.state["best_metrics"]
    assert not run.model.training
    samples = run.generate(prompt="B", num=2, temperature=0.7, seed=3)
    assert len(samples) == 2 and all(set(s.text) <= set(run.vocab.chars) for s in samples)
    record = run.evaluate("val")
    assert record["step"] == run.step and record["bpc"] == pytest.approx(run.metrics["bpc"], rel=1e-6)


def test_eval_with_text_and_free_running_metrics_reads_the_weights_once(work, monkeypatch):
    opened = []
    real = tensors.safe_open

    def counting(path, *args, **kwargs):
        opened.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tensors, "safe_open", counting)
    result = CliRunner().invoke(app, ["eval", "runs/tiny", "--generate", "3", "--free-running", "--references", "0",
                                      "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert "generation" in record and "free_running" in record
    assert [p for p in opened if p.endswith("model.safetensors")] == ["runs/tiny/best/model.safetensors"]


def test_plain_progress_lines_when_stderr_is_not_a_terminal(work):
    result = CliRunner().invoke(app, ["train", "tiny.yaml", "--set", "run.name=logged"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("logged step ")]
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("char/s" in line and "eta" in line for line in lines)


def test_read_only_commands_and_the_api_need_no_fcntl(work):
    """Windows has no fcntl: eval, generate and rnnkit.load must still import and run (the lock is training's)."""
    script = textwrap.dedent("""
        import sys
        sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError, as on Windows
        import rnnkit
        from rnnkit.cli import main
        run = rnnkit.load("runs/tiny", device="cpu")
        print("loaded", run.step)
        for argv in (["eval", "runs/tiny", "--json"], ["generate", "runs/tiny", "--json", "--seed", "1"]):
            try:
                main(argv)
            except SystemExit as done:
                assert done.code in (0, None), (argv, done.code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("loaded ") and '"bpc"' in done.stdout and '"text"' in done.stdout


def test_the_readme_python_example_runs(work, capsys):
    """The README's `## From Python` block, run as written against a quickstart run."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    quick = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml").read_text())
    (work / "quick.yaml").write_text(yaml.safe_dump(quick))
    args = ["train", "quick.yaml", "--quiet", "--set", "run.name=quickstart", "--set", "train.max_steps=20",
            "--set", "train.eval_every=10"]
    assert CliRunner().invoke(app, args).exit_code == 0
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("best 20 ") and len(out) == 4 and out[-1] == "True True"
