"""Gradient diagnostics: the dL/dh_t profile and its verdicts, clipping, gates, spectra, outputs, CLI."""

import builtins
import importlib.util
import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnkit.diagnostics.gradients import (
    GradReport,
    fit_decay,
    gate_stats,
    gradient_profile,
    judge,
    layer_profile,
    matrix_spectrum,
    spectra_of,
)
from rnnkit.errors import UsageError
from rnnkit.models import CharLM

V = 12  # vocabulary of the synthetic batches (ids 2.. are "characters")


def random_batches(seed, T, B=8, n=1):
    """n LM batches of random windows: (inputs (T, B), targets (T, B), lengths (B,))."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(2, V, (T + 1, B), generator=g)
        out.append((x[:-1], x[1:], torch.full((B,), T)))
    return out


def fresh(cell, seed, hidden=16, **kw):
    torch.manual_seed(seed)
    return CharLM(V, cell=cell, hidden_size=hidden, embedding_dim=8, **kw)


# ---------------------------------------------------------------- the headline behaviour


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_elman_loses_far_more_gradient_than_lstm_with_forget_bias(seed):
    batches = random_batches(seed, T=80)
    rnn = gradient_profile(fresh("rnn", seed), batches).layers[0]
    lstm = gradient_profile(fresh("lstm", seed, forget_bias=1.0), batches).layers[0]
    assert rnn.verdict == "vanishing"
    # Measured margins are ~1e10 over 80 steps (x0.5/step against x0.8/step); 1e4 leaves room.
    assert rnn.attenuation > 1e4 * lstm.attenuation
    assert rnn.step_factor < lstm.step_factor


def test_scaling_elman_recurrent_weights_up_explodes_and_down_vanishes():
    verdicts = {}
    for k in (0.3, 8.0):
        model = fresh("rnn", 0)
        with torch.no_grad():
            model.rnn.weight_hh_l0.mul_(k)
        report = gradient_profile(model, random_batches(0, T=60, B=16, n=2))
        verdicts[k] = report.layers[0].verdict
        assert report.layers[0].evidence  # the numbers behind the verdict are given
    assert verdicts == {0.3: "vanishing", 8.0: "exploding"}


def test_profile_is_the_total_gradient_through_the_recurrence():
    model = fresh("gru", 0)
    batch = random_batches(0, T=6, B=2)[0]
    report = gradient_profile(model, [batch])
    norms = report.layers[0].norms
    # The loss sits on the last step only, so anything at d >= 1 came through the recurrence.
    assert len(norms) == 6 and all(n > 0 for n in norms)
    # d = 0: the last h only reaches the loss through the decoder; check against a direct computation.
    m = model.double().eval()
    m.rnn.record_hidden = True
    logits, _ = m(batch[0])
    loss = torch.nn.functional.cross_entropy(logits[-1], batch[1][-1])
    (g,) = torch.autograd.grad(loss, m.rnn.last_hidden["layer0"][-1])
    assert norms[0] == pytest.approx(float(g.norm(dim=-1).mean()), rel=1e-9)


def test_variable_lengths_align_at_each_sequence_end():
    model = fresh("lstm", 0)
    T = 5
    x = torch.randint(2, V, (T, 2))
    lengths = torch.tensor([5, 3])
    report = gradient_profile(model, [(x, x, lengths)])
    profile = report.layers[0]
    assert profile.counts == [2, 2, 2, 1, 1]
    assert profile.span == 4  # 1 of 2 sequences still >= the 25% coverage rule


def test_multi_layer_reports_each_layer_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = CharLM(V, cell="lstm", hidden_size=8, num_layers=2, embedding_dim=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = gradient_profile(model, random_batches(0, T=10))
    assert [p.name for p in report.layers] == ["layer0", "layer1"]
    assert model.rnn.record_hidden is False and model.rnn.last_hidden == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.decoder.weight.dtype == torch.float32 and model.decoder.weight.grad is None


def test_loss_at_all_and_bad_options():
    report = gradient_profile(fresh("rnn", 0), random_batches(0, T=20), loss_at="all")
    # Every step has its own loss: the profile no longer falls by orders of magnitude.
    assert report.layers[0].verdict == "stable"
    with pytest.raises(UsageError, match="--loss-at"):
        gradient_profile(fresh("rnn", 0), random_batches(0, T=5), loss_at="first")
    with pytest.raises(UsageError, match="task"):
        gradient_profile(fresh("rnn", 0), random_batches(0, T=5), task="translate")


# ---------------------------------------------------------------- pieces


def test_fit_and_verdict_rules():
    factor, r2 = fit_decay([0.5 ** d for d in range(30)], 29)
    assert factor == pytest.approx(0.5) and r2 == pytest.approx(1.0)
    assert judge(1.0, 0.9, 29, 0.996, 0.9)[0] == "stable"
    assert judge(1.0, 1e-4, 29, 0.73, 1.0)[0] == "vanishing"
    assert judge(1e-4, 1.0, 29, 1.37, 1.0)[0] == "exploding"
    # 15 steps at x0.85: only 1.1 orders lost, but a sustained trend.
    assert judge(1.0, 0.85 ** 15, 15, 0.85, 0.95)[0] == "vanishing"
    assert judge(1.0, 0.0, 15, None, None)[0] == "vanishing"  # underflow
    assert judge(1.0, 1.0, 1, None, None)[0] == "undetermined"
    counts = torch.tensor([4.0, 4, 4, 0])
    profile = layer_profile("layer0", torch.tensor([4.0, 0.4, 0.04, 0]), counts)
    assert profile.norms == pytest.approx([1.0, 0.1, 0.01]) and profile.attenuation == pytest.approx(100)


def test_gate_saturation_on_a_hand_made_case():
    s = gate_stats("g", torch.tensor([0.01, 0.5, 0.97, 0.96]), "sigmoid")
    assert (s.frac_low, s.frac_high, s.saturated) == (0.25, 0.5, 0.75)
    assert s.mean == pytest.approx(0.61)
    t = gate_stats("c", torch.tensor([-0.95, 0.0, 0.92, 0.5]), "tanh")  # (a+1)/2: 0.025, 0.5, 0.96, 0.75
    assert (t.frac_low, t.frac_high) == (0.25, 0.25)
    r = gate_stats("h", torch.tensor([0.0, 0.0, 1.0, 2.0]), "relu")
    assert r.frac_low == 0.5


def test_gate_stats_of_an_lstm_lie_in_unit_interval():
    report = gradient_profile(fresh("lstm", 0, forget_bias=1.0), random_batches(0, T=10))
    names = {g.name for g in report.gates}
    assert names == {"layer0.input", "layer0.forget", "layer0.cell", "layer0.output"}
    for g in report.gates:
        lo = -1.0 if g.kind == "tanh" else 0.0
        assert lo <= g.mean <= 1.0 and 0.0 <= g.saturated <= 1.0
    forget = next(g for g in report.gates if g.name == "layer0.forget")
    assert forget.mean > 0.6  # sigmoid(1 + small): the forget bias shows


def test_spectral_radius_of_known_matrices():
    rotation = torch.tensor([[0.0, 2.0], [-2.0, 0.0]], dtype=torch.float64)  # eigenvalues +-2i
    s = matrix_spectrum("w", rotation)
    assert s.spectral_radius == pytest.approx(2.0) and s.singular_values == pytest.approx([2.0, 2.0])
    model = fresh("lstm", 0, hidden=3)
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()
        model.rnn.weight_hh_l0[3:6] = torch.diag(torch.tensor([0.5, -0.9, 0.2]))  # the forget block
    spectra = {s.name: s for s in spectra_of(model.rnn, "lstm")}
    assert spectra["weight_hh_l0.forget"].spectral_radius == pytest.approx(0.9)
    assert spectra["weight_hh_l0.input"].spectral_radius == pytest.approx(0.0)
    assert spectra["weight_hh_l0"].spectral_radius is None  # 12x3 is not square
    assert spectra["weight_hh_l0"].singular_values == pytest.approx([0.9, 0.5, 0.2])


def test_clipping_before_and_after():
    batches = random_batches(0, T=10, n=2)
    free = gradient_profile(fresh("rnn", 0), batches, clip=0.0).clip
    assert free.after_mean == pytest.approx(free.before_mean) and free.clipped_batches == 0
    clip = free.before_max / 10
    clipped = gradient_profile(fresh("rnn", 0), batches, clip=clip).clip
    assert clipped.before_mean == pytest.approx(free.before_mean)
    assert clipped.after_max == pytest.approx(clip, rel=1e-4) and clipped.clipped_batches == 2
    report = gradient_profile(fresh("rnn", 0), batches[:1])
    assert report.clip.before_mean == pytest.approx(math.sqrt(sum(p.norm ** 2 for p in report.params)))


def test_json_round_trip():
    report = gradient_profile(fresh("gru", 0), random_batches(0, T=12))
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["ratios"]["layer0"] == report.layers[0].attenuation
    assert GradReport.from_json(data) == report


def test_recording_is_off_by_default():
    model = fresh("rnn", 0)
    model(torch.randint(2, V, (4, 2)))
    assert model.rnn.last_hidden == {}


# ---------------------------------------------------------------- outputs


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib (extra 'plot') missing")
def test_png_is_written(tmp_path):
    from rnnkit.diagnostics.plots import plot_profiles

    batches = random_batches(0, T=20)
    reports = [gradient_profile(fresh(c, 0), batches, label=c) for c in ("rnn", "lstm")]
    path = plot_profiles(reports, tmp_path / "cmp.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(UsageError, match="png"):
        plot_profiles(reports, tmp_path / "cmp.pdf")


def test_tensorboard_events_hold_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS, SCALARS, EventAccumulator

    from rnnkit.diagnostics.plots import write_tensorboard

    report = gradient_profile(fresh("lstm", 0), random_batches(0, T=8))
    write_tensorboard(report, tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={HISTOGRAMS: 0, SCALARS: 0})
    events.Reload()
    tags = events.Tags()
    assert {"grad/rnn.weight_hh_l0", "gates/layer0.forget"} <= set(tags["histograms"])
    assert len(events.Scalars("grad_through_time/layer0/norm")) == 8


def test_terminal_rendering_has_sparkline_and_verdict():
    from rich.console import Console

    from rnnkit.cli.grads_tables import log_range, render

    report = gradient_profile(fresh("rnn", 0), random_batches(0, T=30))
    console = Console(record=True, width=120)
    render(report, console, log_range([report]))
    text = console.export_text()
    assert "vanishing" in text and "▁" in text and "█" in text and "weight_hh_l0" in text


# ---------------------------------------------------------------- CLI, end to end on the reber source


@pytest.fixture
def reber_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    paths = []
    for cell in ("rnn", "lstm"):
        cfg = {"task": "lm", "data": {"source": "reber", "num_samples": 200},
               "model": {"cell": cell, "hidden_size": 16, "embedding_dim": 8}, "train": {"batch_size": 8}}
        path = tmp_path / f"{cell}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(str(path))
    return paths


def test_cli_json_and_tensorboard_on_configs(reber_configs, tmp_path):
    from rnnkit.cli import app

    args = ["inspect-grads", *reber_configs, "--length", "40", "--batches", "1", "--json", "--tensorboard"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["cell"] for r in records] == ["rnn", "lstm"] and records[0]["seq_len"] == 40
    rnn, lstm = (r["ratios"]["layer0"] for r in records)
    assert rnn > lstm
    assert (tmp_path / "runs" / "inspect-grads" / "rnn").is_dir()


def test_cli_plot_writes_a_png(reber_configs, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the 'plot' extra")
    from rnnkit.cli import app

    result = CliRunner().invoke(app, ["inspect-grads", *reber_configs, "--length", "20", "--batches", "1",
                                      "--plot", str(tmp_path / "cmp.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib_says_how_to_install_it(reber_configs, tmp_path, monkeypatch):
    from rnnkit.cli import app

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = CliRunner().invoke(app, ["inspect-grads", reber_configs[0], "--length", "20", "--batches", "1",
                                      "--plot", str(tmp_path / "cmp.png")])
    assert result.exit_code == 2 and "--plot needs matplotlib: pip install 'rnnkit[plot]'" in result.output
    assert not (tmp_path / "cmp.png").exists()


def test_cli_table_and_one_line_errors(reber_configs, tmp_path):
    from rnnkit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["inspect-grads", reber_configs[1], "--batches", "1"])
    assert result.exit_code == 0, result.output
    assert "layer0.forget" in result.stdout and "verdict" in result.stdout
    bad = runner.invoke(app, ["inspect-grads", reber_configs[0], "--loss-at", "first"])
    assert bad.exit_code == 2 and "--loss-at" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["inspect-grads", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such config file" in missing.output
