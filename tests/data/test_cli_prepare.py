"""`rnnkit prepare` end to end through Typer's CliRunner."""

from typer.testing import CliRunner

from rnnkit.cli import app

runner = CliRunner()


def test_prepare_prints_a_summary_then_reuses(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\ufeffHello there.\r\nHow are you\u2019re doing? Fine! " * 20, encoding="utf-8")
    args = ["prepare", "mine", "--from", str(corpus), "--data-dir", str(tmp_path / "data"), "--min-len", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for word in ("vocabulary", "sentences", "mapped", "removed", "train", "(built)"):
        assert word in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reused" in again.output


def test_missing_file_is_one_line_without_traceback(tmp_path):
    result = runner.invoke(app, ["prepare", "mine", "--from", str(tmp_path / "nope.txt"),
                                 "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.txt" in lines[0] and "no such file" in lines[0]
    assert "Traceback" not in result.output


def test_unknown_source_and_bad_option_exit_2(tmp_path):
    result = runner.invoke(app, ["prepare", "novel", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--from" in result.output
    result = runner.invoke(app, ["prepare", "reber", "--charset", "latin1", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "data.charset" in result.output
