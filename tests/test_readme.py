"""README.md stays true: its config reference is the dataclasses', its commands are the ones CI runs."""

import subprocess
import sys
from pathlib import Path

from rnnkit.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def test_config_reference_matches_the_dataclasses():
    block = README[README.index(START) + len(START):README.index(END)].strip()
    assert block == reference_markdown(), (
        "README's config reference is stale; regenerate it with: python tests/test_readme.py")


def test_ci_runs_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci_command}\n" in README


def test_the_speed_table_is_what_speed_table_makes_of_the_measured_runs():
    runs = sorted((ROOT / "bench" / "measured").glob("cpu-run*.json"))
    assert len(runs) == 2, runs
    made = subprocess.run([sys.executable, str(ROOT / "bench" / "speed_table.py"), *map(str, runs)],
                          capture_output=True, text=True, check=True).stdout.strip()
    start, end = "<!-- speed-table:start -->", "<!-- speed-table:end -->"
    assert README[README.index(start) + len(start):README.index(end)].strip() == made


def _regenerate() -> None:
    head, rest = README.split(START)
    _, tail = rest.split(END)
    (ROOT / "README.md").write_text(f"{head}{START}\n{reference_markdown()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    _regenerate()
