"""Ridership forecasting (`task: forecast`): one multivariate model R^{S x F} -> R^{S x F} over all stations.

Windows of data.history + data.horizon quarter-hours inside one day. model.forecaster picks the model: direct
(after each input step, the next data.horizon steps at once) or seq2seq (an encoder-decoder forecasting one
step at a time from the last input step, trained with teacher forcing or scheduled sampling). Scoring follows
PVCGN: the forecasts made after the last input step, on the original count scale, per horizon, masked where
the truth is 0, next to two naive baselines computed on the same windows.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.batch_types import ForecastBatch
from rnnkit.errors import UsageError
from rnnkit.tasks.artifacts import check_same, normaliser_dict, normaliser_from, read_task_json, write_task_json

BASELINES = {"last_value": "last value repeated", "slot_average": "same-slot average of the training days"}


def reads_day_type(data_cfg) -> bool:
    """Whether the inputs depend on the day's type (a day off or not): then every day needs its date."""
    return data_cfg.day_features or (data_cfg.profile_features and data_cfg.profile_by == "day_type")


def slot_features(data_cfg) -> int:
    """How many features of the slot itself (time of day, day-off flag) every step reads, shared by all stations."""
    return 2 * data_cfg.time_features + data_cfg.day_features


def extra_features(data_cfg, outputs: int) -> int:
    """How many features the model reads per step beside the `outputs` counts (see ForecastTask.features)."""
    return slot_features(data_cfg) + outputs * data_cfg.profile_features


class ForecastTask:
    """A Task (rnnkit/tasks/base.py) whose batches are ForecastBatch (rnnkit/data/batch_types.py)."""

    name = "forecast"
    unit = "time steps"  # what the trainer counts per second: input time steps read

    def __init__(self, cfg, data_root: str | Path | None = None):
        self.cfg, self.data_root = cfg, data_root
        self.info: dict = {}
        self.day_off: dict[str, Tensor] = {}  # split -> (days,) 1 on a day off (data.day_features)

    # --- data and artifacts -------------------------------------------------------------------

    def setup(self) -> ForecastTask:
        from rnnkit.data import prepare_corpus
        from rnnkit.data.metro import Normaliser, day_type_averages, days_off, metro_splits, select, slot_average
        from rnnkit.data.metro_source import is_metro, load_metro

        d = self.cfg.data
        if not is_metro(d.source):
            raise UsageError(f"task: forecast reads data.source metro (with data.path) or metro-synthetic, "
                             f"not {d.source!r}")
        train, test = load_metro(prepare_corpus(d, root=self.data_root))
        splits = metro_splits(train, test, d.val_days, d.holdout_days)
        self.raw = {k: select(v, d.stations, d.flows) for k, v in splits.items()}
        self.normaliser = Normaliser.fit(self.raw["train"], per=d.normalise)
        self.z = {k: self.normaliser.apply(v).flatten(2) for k, v in self.raw.items()}  # (D, 73, N)
        self.average = slot_average(self.raw["train"]).flatten(1)  # (73, N)
        if reads_day_type(d):  # the day-off flag of every day, split as the days are
            flags = days_off(d.first_date, train.shape[0] + test.shape[0], d.days_off)
            self.day_off = metro_splits(flags[:train.shape[0]], flags[train.shape[0]:], d.val_days, d.holdout_days)
        shape = self.raw["train"].shape
        self.info = {"stations": shape[2], "flows": shape[3], **normaliser_dict(self.normaliser)}
        if d.profile_features:  # saved with the run: inference builds the same inputs without the data
            by_type = d.profile_by == "day_type"
            self.averages = (day_type_averages(self.raw["train"], self.day_off["train"]).flatten(2) if by_type
                             else self.average[None])  # (P, 73, N)
            self.info["profile"] = (self.averages if by_type else self.average).tolist()
        return self

    @classmethod
    def from_run(cls, cfg, run_dir: str | Path) -> ForecastTask:
        task = cls(cfg)
        task.info = read_task_json(Path(run_dir))
        task.normaliser = normaliser_from(task.info)
        if "profile" in task.info:
            averages = torch.tensor(task.info["profile"], dtype=torch.float32)
            task.averages = averages if averages.dim() == 3 else averages[None]  # data.profile_by: all, (73, N)
        return task

    def save_artifacts(self, run_dir: Path) -> None:
        write_task_json(run_dir, self.info)

    def check_artifacts(self, run_dir: Path) -> None:
        check_same(Path(run_dir), read_task_json(Path(run_dir)), self.info)

    @property
    def output_size(self) -> int:
        return self.info["stations"] * self.info["flows"]

    def windows(self, split: str) -> Tensor:
        from rnnkit.data.metro import window_starts

        return window_starts(self.z[split].shape[0], self.cfg.data.history + self.cfg.data.horizon)

    def num_sequences(self, split: str) -> int:
        return len(self.windows(split))

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1, rank: int = 0):
        from rnnkit.data.batches import IndexBatches

        # every window of the split built once (a few MB), then batches are index_select calls
        every = self.make_batch(split, self.windows(split))

        def build(idx, epoch: int, number: int) -> ForecastBatch:
            return every.select(torch.from_numpy(idx))

        return IndexBatches(len(every.windows), build, batch_size, seed, shuffle, num_replicas=num_replicas, rank=rank)

    def make_batch(self, split: str, windows: Tensor) -> ForecastBatch:
        """windows (B, 2) (day, first slot) -> x (H, B, N + extra), y (H, B, K, N) normalised, lengths (B,),
        truth (B, K, N) counts after the last input step, windows, future (K, B, extra): the features of the
        slots forecast after the last input step (what the seq2seq decoder reads), base (H, B, K, N): what the
        forecasts start from (model.forecast_base)."""
        z, H, K = self.z[split], self.cfg.data.history, self.cfg.data.horizon
        day, slots = windows[:, :1], windows[:, 1:2] + torch.arange(H)  # (B, 1), (B, H)
        ahead = slots.unsqueeze(-1) + torch.arange(1, K + 1)  # (B, H, K)
        x = torch.cat([z[day, slots], self.features(split, day[:, 0], slots, slots + 1)], dim=-1)  # (B, H, N + extra)
        future = self.features(split, day[:, 0], ahead[:, -1], ahead[:, -1])  # (B, K, extra)
        y = z[day.unsqueeze(-1), ahead]  # (B, H, K, N)
        truth = self.raw[split].flatten(2)[day, ahead[:, -1]]  # (B, K, N)
        lengths = torch.full((len(windows),), H)
        base = self.base(split, day[:, 0], slots, ahead)  # (B, H, K, N)
        return ForecastBatch(x.transpose(0, 1).contiguous(), y.transpose(0, 1).contiguous(), lengths, truth, windows,
                             future.transpose(0, 1).contiguous(), base.transpose(0, 1).contiguous())

    def base(self, split: str, days: Tensor, slots: Tensor, ahead: Tensor) -> Tensor:
        """(B, H, K, N) what the forecasts made at slots (B, H) of days (B,) for slots ahead (B, H, K) start from,
        normalised: zero, the value just read (the network forecasts the change), or the daily profile at each
        slot forecast (the network forecasts the deviation from the usual day); model.forecast_base."""
        kind = self.cfg.model.forecast_base
        if kind == "last_value":
            return self.z[split][days[:, None], slots].unsqueeze(2).expand(*ahead.shape, -1)
        if kind == "profile":
            return self.profile[self._profile_index(split, days)[:, None, None], ahead]
        return torch.zeros(*ahead.shape, self.output_size)

    def features(self, split: str, days: Tensor, slots: Tensor, forecast: Tensor) -> Tensor:
        """What the model reads beside the counts at slots (B, S) of days (B,), whose step forecasts slots
        `forecast` (B, S) first: (B, S, extra), the time of day (sin, cos; data.time_features), the day-off flag
        (data.day_features), then the training days' average at the forecast slots, z-scored
        (data.profile_features; the average of the day's own type under data.profile_by: day_type)."""
        from rnnkit.data.metro import time_of_day

        d = self.cfg.data
        parts = [torch.zeros(*slots.shape, 0)]
        if d.time_features:
            parts.append(time_of_day(slots))
        if d.day_features:
            parts.append(self.day_off[split][days][:, None, None].expand(*slots.shape, 1))
        if d.profile_features:
            parts.append(self.profile[self._profile_index(split, days)[:, None], forecast])
        return torch.cat(parts, dim=-1)

    def _profile_index(self, split: str, days: Tensor) -> Tensor:
        """(B,) which of self.profile each of the days (B,) reads: its day type, or 0 under data.profile_by: all."""
        if self.cfg.data.profile_by == "day_type":
            return self.day_off[split][days].long()
        return torch.zeros_like(days)

    @property
    def profile(self) -> Tensor:
        """(P, 73, N) the daily profiles that data.profile_features reads, z-scored: P = 1 (all training days) or 2
        (working days, days off; data.profile_by: day_type)."""
        s, f = self.info["stations"], self.info["flows"]
        return self.normaliser.apply(self.averages.view(*self.averages.shape[:2], s, f)).flatten(2)

    # --- model, loss, metrics -----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        from rnnkit.models.heads import ForecastEnsemble, Forecaster, Seq2SeqForecaster, StationLayout

        m, d, N, K = self.cfg.model, self.cfg.data, self.output_size, self.cfg.data.horizon
        extra = extra_features(d, N)
        layout = StationLayout(self.info["stations"], self.info["flows"], slot_features(d), d.profile_features)
        forecasters = {"direct": lambda: Forecaster(m, N + extra, N, K, layout),
                       "seq2seq": lambda: Seq2SeqForecaster(m, N + extra, N, K, extra)}
        if m.members == 1:
            return forecasters[m.forecaster]()
        return ForecastEnsemble([forecasters[m.forecaster]() for _ in range(m.members)])

    def _errors(self, pred: Tensor, y: Tensor) -> Tensor:
        """Summed loss of normalised forecasts against the truth (..., N), each value weighted by train.loss_weights."""
        t = self.cfg.train
        if t.loss_weights == "station_scale":  # errors in counts, over one scale for all (the mean std)
            weights = self._station_weights.to(pred.device)  # (N,)
            pred, y = pred * weights, y * weights
        if t.loss == "huber":
            return F.huber_loss(pred, y, reduction="sum", delta=t.huber_delta)
        return F.mse_loss(pred, y, reduction="sum")

    @cached_property
    def _station_weights(self) -> Tensor:
        """(N,) each station and flow's standard deviation over their mean (train.loss_weights: station_scale),
        computed once: the normaliser does not change after setup or from_run."""
        std = self.normaliser.std.flatten()
        return std / std.mean()

    def forecast(self, model: nn.Module, batch, device: torch.device, teacher_forcing: float = 0.0,
                 members: bool = False) -> Tensor:
        """Normalised forecasts (H, B, K, N) after every input step (direct: the network's output plus batch.base),
        or (1, B, K, N) after the last one (seq2seq, whose decoder reads the truth y with probability
        teacher_forcing, else its own forecasts).
        members: each member's forecast of a ForecastEnsemble (model.members), stacked (M, ...), not their mean."""
        call = model.member_forecasts if members else model
        x = batch.x.to(device, non_blocking=True)
        if self.cfg.model.forecaster == "direct":
            out = call(x).float()
            if self.cfg.model.forecast_base == "none":  # base is zeros: no copy to the device, no addition
                return out
            return out + batch.base.to(device, non_blocking=True)
        future = batch.future.to(device, non_blocking=True)
        targets = None  # p = 0 (evaluation): free running, the truth is not even handed over
        if teacher_forcing > 0:
            targets = batch.y[-1].transpose(0, 1).to(device, non_blocking=True)  # (K, B, N)
        return call(x, future=future, targets=targets, teacher_forcing=teacher_forcing).float()

    def _supervised(self, pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The (forecast, truth) pairs the loss reads: seq2seq only forecasts after the last input step."""
        if self.cfg.train.supervise == "last" or self.cfg.model.forecaster == "seq2seq":
            return pred[-1:], y[-1:]
        return pred, y

    def loss(self, model: nn.Module, batch, device: torch.device,
             teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor, int]:
        """(summed loss over every supervised value, their count, input steps read).

        teacher_forcing: the probability that the seq2seq decoder reads the true previous values (the trainer
        passes the schedule's value, or nothing: pure teacher forcing); the config refuses p < 1 for direct.
        """
        y = batch.y.to(device, non_blocking=True)
        if self.cfg.model.members == 1:
            pred, y = self._supervised(self.forecast(model, batch, device, teacher_forcing), y)
        else:  # every member learns from its own error, as if it were trained alone (not from the mean's)
            preds = self.forecast(model, batch, device, teacher_forcing, members=True)  # (M, T, B, K, N)
            pairs = [self._supervised(p, y) for p in preds]
            pred, y = torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])  # members along time
        count = torch.tensor(float(y.numel()), device=device)
        return self._errors(pred, y), count, int(batch.lengths.sum())

    def counts(self, pred_z: Tensor) -> Tensor:
        """Normalised forecasts (..., N) -> counts (..., N), clipped at 0 (ridership is never negative)."""
        s, f = self.info["stations"], self.info["flows"]
        out = self.normaliser.invert(pred_z.reshape(*pred_z.shape[:-1], s, f).cpu())
        return out.clamp_min(0.0).flatten(-2)

    @torch.no_grad()
    def eval_sums(self, model: nn.Module, batch, device: torch.device) -> dict[str, float]:
        """Summed loss plus PVCGN's masked error sums per horizon (original scale, last input step)."""
        from rnnkit.evaluation.metrics import masked_error_sums

        pred = self.forecast(model, batch, device)  # free running: the honest forecast
        p, t = self._supervised(pred, batch.y.to(device))
        sums = {"loss_sum": float(self._errors(p, t)), "count": float(t.numel())}
        errors = masked_error_sums(self.counts(pred[-1]), batch.truth)
        for key, values in errors.items():
            sums.update({f"{key}_{k + 1}": float(v) for k, v in enumerate(values)})
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss (normalised scale), then MAE/RMSE/MAPE averaged over horizons and MAE per horizon."""
        from rnnkit.evaluation.metrics import horizon_errors

        out = {"loss": sums["loss_sum"] / max(sums["count"], 1.0)}
        K = self.cfg.data.horizon
        if f"n_{K}" in sums:
            rows = horizon_errors(self._stack(sums))
            for key in ("mae", "rmse", "mape"):
                out[key] = sum(r[key] for r in rows) / len(rows)
            out.update({f"mae_{r['minutes']}min": r["mae"] for r in rows})
        return out

    def _stack(self, sums: dict[str, float]) -> dict[str, Tensor]:
        K = self.cfg.data.horizon
        return {key: torch.tensor([sums[f"{key}_{k}"] for k in range(1, K + 1)], dtype=torch.float64)
                for key in ("abs", "sq", "pct", "n")}

    def samples(self, model: nn.Module, device: torch.device, n: int = 3, seed: int = 0, **_) -> list[str]:
        return []

    # --- the evaluation report ----------------------------------------------------------------

    def baseline_forecasts(self, split: str, windows: Tensor) -> dict[str, Tensor]:
        """(B, K, N) counts of each naive baseline for the windows (day, first slot)."""
        H, K = self.cfg.data.history, self.cfg.data.horizon
        last = windows[:, 1] + H - 1  # (B,) the last input slot
        seen = self.raw[split].flatten(2)[windows[:, 0], last]  # (B, N)
        ahead = last.unsqueeze(1) + torch.arange(1, K + 1)  # (B, K)
        return {"last_value": seen.unsqueeze(1).expand(-1, K, -1), "slot_average": self.average[ahead]}

    @torch.no_grad()
    def report(self, model: nn.Module, split: str, batch_size: int, device: torch.device) -> dict:
        """MAE/RMSE/MAPE per horizon of the model and of the two baselines on the same windows."""
        from rnnkit.evaluation.metrics import add_sums, horizon_errors, masked_error_sums

        was_training = model.training
        model.eval()
        totals: dict[str, dict | None] = {"model": None, **{k: None for k in BASELINES}}
        try:
            for batch in self.batches(split, max(batch_size, 512), 0, False):
                truth, windows = batch.truth, batch.windows
                forecasts = {"model": self.counts(self.forecast(model, batch, device)[-1]),
                             **self.baseline_forecasts(split, windows)}
                for key, pred in forecasts.items():
                    totals[key] = add_sums(totals[key], masked_error_sums(pred, truth))
        finally:
            model.train(was_training)
        return {"windows": self.num_sequences(split), "horizons": horizon_errors(totals["model"]),
                "baselines": {k: horizon_errors(totals[k]) for k in BASELINES}}
