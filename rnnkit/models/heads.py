"""Task heads on the hand-written recurrent layers: many-to-one classifier, direct and encoder-decoder forecasters
(the direct one optionally beside a per-station network, model.station_hidden), and an average of forecasters
(model.members)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.models.layers import make_layer


def recurrent_stack(model_cfg, input_size: int, bidirectional: bool = False) -> nn.Module:
    """The `model:` section's recurrent layer (model.cell, hidden_size, num_layers, dropout...)."""
    return make_layer(model_cfg.cell, input_size, model_cfg.hidden_size, model_cfg.num_layers, bias=model_cfg.bias,
                      dropout=model_cfg.dropout, bidirectional=bidirectional, nonlinearity=model_cfg.nonlinearity,
                      forget_bias=model_cfg.forget_bias, backend=model_cfg.backend)


class SequenceClassifier(nn.Module):
    """Many-to-one: read a sequence, decode the class from the last state with one linear layer.

    Continuous inputs (metro flows, `input_size` features) go straight into the recurrent layer, as in the
    course; token inputs (langid characters, `vocab_size` > 0) go through an embedding first. With
    lengths, each sequence's state stops at its own last real step. Bidirectional: the forward direction's
    last state and the backward direction's state after reading back to t = 0 are concatenated.
    """

    def __init__(self, model_cfg, num_classes: int, input_size: int = 0, vocab_size: int = 0):
        super().__init__()
        if vocab_size:
            dim = model_cfg.embedding_dim or model_cfg.hidden_size
            self.embedding = nn.Embedding(vocab_size, dim)
            input_size = dim
        self.rnn = recurrent_stack(model_cfg, input_size, model_cfg.bidirectional)
        self.drop = nn.Dropout(model_cfg.dropout)
        self.decoder = nn.Linear(model_cfg.hidden_size * self.rnn.num_directions, num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (T, B, D) float, or (T, B) long tokens -> logits (B, C)."""
        if hasattr(self, "embedding"):
            x = self.embedding(x)  # (T, B, E)
        _, state = self.rnn(x, None, lengths)
        h = state[0] if isinstance(state, tuple) else state  # (L * dirs, B, H)
        dirs = self.rnn.num_directions
        last = h[-dirs:].transpose(0, 1).reshape(h.shape[1], -1)  # (B, dirs * H): the top layer
        return self.decoder(self.drop(last))


@dataclass(frozen=True)
class StationLayout:
    """How a forecaster's input step (N + extra features) is laid out (rnnkit/tasks/forecast.py `features`):
    the counts of `stations` x `flows` (station-major), then `shared` features of the slot (time of day, day-off
    flag), then, when `profile`, every station's profile values in the same order as the counts."""

    stations: int
    flows: int
    shared: int
    profile: bool


class StationNetwork(nn.Module):
    """One small recurrent network run on every station's own series, its weights shared by all stations.

    Station s reads its own counts, its own profile values, the slot's shared features and a learned embedding of
    s; its state after step t is decoded into its next K values. Where the joint network learns each station's
    dynamics from that station's days alone, this one learns the dynamics common to all from every station's
    (model.station_hidden), as PVCGN's per-node GRU does; its forecast is added to the joint network's.
    """

    def __init__(self, model_cfg, layout: StationLayout, horizon: int):
        super().__init__()
        self.layout, self.horizon = layout, horizon
        self.embedding = nn.Embedding(layout.stations, model_cfg.embedding_dim)
        inputs = layout.flows * (1 + layout.profile) + layout.shared + model_cfg.embedding_dim
        self.rnn = make_layer(model_cfg.cell, inputs, model_cfg.station_hidden, 1, backend=model_cfg.backend)
        self.decoder = nn.Linear(model_cfg.station_hidden, horizon * layout.flows)

    def forward(self, x: Tensor) -> Tensor:
        """x (T, B, N + extra) -> forecasts (T, B, K, N) in the normalised scale."""
        (T, B, _), lay = x.shape, self.layout
        S, F, N = lay.stations, lay.flows, lay.stations * lay.flows
        parts = [x[..., :N].view(T, B, S, F)]  # (T, B, S, F) each station's counts
        if lay.profile:
            parts.append(x[..., N + lay.shared:].view(T, B, S, F))  # (T, B, S, F) its profile
        parts.append(x[..., N:N + lay.shared].unsqueeze(2).expand(T, B, S, lay.shared))  # (T, B, S, shared)
        parts.append(self.embedding.weight.expand(T, B, S, -1))  # (T, B, S, E)
        out, _ = self.rnn(torch.cat(parts, dim=-1).view(T, B * S, -1))  # (T, B * S, h)
        y = self.decoder(out).view(T, B, S, self.horizon, F)  # (T, B, S, K, F)
        return y.transpose(2, 3).reshape(T, B, self.horizon, N)  # (T, B, K, N) station-major


class Forecaster(nn.Module):
    """Many-to-many, direct multi-output: after each input step, predict the next `horizon` steps at once.

    x (T, B, D) -> (T, B, K, N): the hidden state after step t is decoded by one linear layer into
    K future vectors of N values (N = stations x flows), so every step is supervised and there is no
    decoder loop to feed its own errors back into. With model.input_skip, a linear map of the step's own
    inputs is added (LSTNet's autoregressive part): the linear share of the forecast, such as flows that
    leave one station now and arrive at another a quarter-hour later, need not pass through the gates. With
    model.station_hidden, the forecast of a `StationNetwork` is added too.
    """

    def __init__(self, model_cfg, input_size: int, output_size: int, horizon: int,
                 layout: StationLayout | None = None):
        super().__init__()
        self.output_size, self.horizon = output_size, horizon
        self.rnn = recurrent_stack(model_cfg, input_size)
        self.drop = nn.Dropout(model_cfg.dropout)
        self.decoder = nn.Linear(model_cfg.hidden_size, horizon * output_size)
        self.skip = nn.Linear(input_size, horizon * output_size) if model_cfg.input_skip else None
        self.stations = StationNetwork(model_cfg, layout, horizon) if model_cfg.station_hidden else None

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (T, B, D) -> forecasts (T, B, K, N) in the normalised scale."""
        out, _ = self.rnn(x, None, lengths)  # (T, B, H)
        y = self.decoder(self.drop(out))  # (T, B, K * N)
        if self.skip is not None:
            y = y + self.skip(x)  # (T, B, K * N)
        y = y.view(*y.shape[:2], self.horizon, self.output_size)  # (T, B, K, N)
        return y if self.stations is None else y + self.stations(x)


class Seq2SeqForecaster(nn.Module):
    """Encoder-decoder (DCRNN's and PVCGN's GRU/LSTM baselines): read the history, then forecast one step at a time.

    The encoder reads x (T, B, D), whose first N features are the normalised values (N = stations x flows);
    a decoder of the same kind starts from its final state and, at step k, reads the previous values next to
    the `extra` time features of the slot it predicts, and one linear layer decodes its top state into N
    values. The previous values are the last observed ones at k = 0, then the truth y_{k-1} with probability
    `teacher_forcing` per sequence (scheduled sampling, `mix_inputs`), else its own forecast, detached as in
    `mix_inputs`. Evaluation runs free (p = 0); lowering p during training (scheduled sampling) lets the
    decoder learn from the errors it compounds at test time, which the direct `Forecaster` never reads.
    """

    def __init__(self, model_cfg, input_size: int, output_size: int, horizon: int, extra: int = 0):
        super().__init__()
        self.output_size, self.horizon, self.extra = output_size, horizon, extra
        self.encoder = recurrent_stack(model_cfg, input_size)
        self.decoder = recurrent_stack(model_cfg, output_size + extra)
        self.drop = nn.Dropout(model_cfg.dropout)
        self.head = nn.Linear(model_cfg.hidden_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None, future: Tensor | None = None,
                targets: Tensor | None = None, teacher_forcing: float = 0.0) -> Tensor:
        """x (T, B, D), future (K, B, extra) time features of the predicted slots, targets (K, B, N) normalised
        truth (read only when teacher_forcing > 0) -> forecasts (1, B, K, N) made after the last input step.

        The leading 1 keeps the direct forecaster's layout (T, B, K, N), whose last row is the forecast.
        """
        from rnnkit.models.feedback import mix_inputs

        B = x.shape[1]
        if future is None:
            if self.extra:
                raise ValueError(f"the decoder reads {self.extra} time features per step: pass future (K, B, extra)")
            future = x.new_zeros(self.horizon, B, 0)
        if teacher_forcing > 0 and targets is None:
            raise ValueError("teacher_forcing > 0 feeds the truth: pass targets (K, B, N)")
        _, state = self.encoder(x, None, lengths)
        last = x[-1] if lengths is None else x[lengths - 1, torch.arange(B, device=x.device)]  # (B, D)
        previous, forecasts = last[:, :self.output_size], []  # (B, N)
        for k, time in enumerate(future.unbind(0)):  # time (B, extra)
            if k:
                previous = (forecasts[-1].detach() if teacher_forcing <= 0
                            else mix_inputs(targets[k - 1], forecasts[-1], teacher_forcing))
            state = self.decoder.one_step(torch.cat([previous, time], dim=-1), state)
            h = state[0] if isinstance(state, tuple) else state  # (L, B, H)
            forecasts.append(self.head(self.drop(h[-1])))  # (B, N)
        return torch.stack(forecasts, dim=1).unsqueeze(0)  # (1, B, K, N)


class ForecastEnsemble(nn.Module):
    """Several forecasters of one kind, initialised apart, whose forecasts are averaged (model.members).

    Called like one member, it returns the members' mean forecast; `member_forecasts` stacks them (M, ...), so
    that training puts each member's own error in the loss: the members learn independently, as separately
    seeded runs would, and the average removes part of what their initialisations made them get wrong.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_forecasts(self, *args, **kwargs) -> Tensor:
        """Each member's forecast, stacked: (M, T, B, K, N)."""
        return torch.stack([member(*args, **kwargs) for member in self.members])

    def forward(self, *args, **kwargs) -> Tensor:
        """The members' mean forecast, with a member's arguments and output shape (T, B, K, N)."""
        return self.member_forecasts(*args, **kwargs).mean(dim=0)
