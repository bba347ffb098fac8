"""`predict` on a loaded run, whatever it does: the entry point of `LoadedRun.predict` and the `predict` verb.

Language identification runs classify text; forecasting runs forecast from counts. Other runs are refused
with one line saying what predict supports.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rnnkit.errors import UsageError

TEXT, FORECAST = "text", "forecast"


def prediction_kind(run) -> str:
    """TEXT (a langid classifier) or FORECAST; UsageError for a run predict cannot take."""
    if run.cfg.task == "forecast":
        return FORECAST
    from rnnkit.inference.classify import check_text_classifier

    check_text_classifier(run)
    return TEXT


def predict(run, inputs=None, *, top: int = 1, replace_unknown: str | None = None, slot: str | int | None = None,
            split: str | None = None, day: int | None = None, date: str | None = None):
    """What `rnnkit predict` computes, for a loaded run (rnnkit.runs.loaded.LoadedRun).

    Language identification: `inputs` a string -> one Prediction; an iterable of strings -> a list of them (see
    rnnkit.inference.classify): the `top` most probable classes, characters outside the vocabulary read as
    `replace_unknown` (else the line gets an error record).
    Forecasting: `inputs` a CSV/.npz/.safetensors path -> Forecast; an array of counts (history, stations, flows)
    with `slot` the last quarter-hour (HH:MM or 0..72) -> Forecast; `date` (YYYY-MM-DD) the day of those counts,
    for a run with data.day_features; `split` with `day` and `slot` (no inputs) -> the Forecast of that window
    of the prepared data next to its truth (see rnnkit.inference.forecast).
    """
    kind = prediction_kind(run)
    if kind == TEXT:
        if split is not None or day is not None or slot is not None or date is not None:
            raise UsageError("--from-split, --day, --slot and --date: forecasting runs only; a classifier reads text")
        from rnnkit.inference.classify import TextClassifier

        classifier = TextClassifier(run, top, replace_unknown)
        if isinstance(inputs, str):
            return classifier.classify([inputs])[0]
        return classifier.classify(list(_texts(inputs)))
    if top != 1 or replace_unknown is not None:
        raise UsageError("--top and --replace-unknown: language identification runs only; a forecaster reads counts")
    from rnnkit.inference import forecast

    if split is not None:
        if inputs is not None or day is None or slot is None:
            raise UsageError("--from-split SPLIT takes --day D and --slot S (the last quarter-hour read), and no "
                             "input file")
        if date is not None:
            raise UsageError("--date: goes with --input; the days of a split have their dates (data.first_date)")
        return forecast.forecast_split(run, split, day, slot)
    if day is not None:
        raise UsageError("--day: goes with --from-split SPLIT")
    if isinstance(inputs, (str, Path)):
        if slot is not None:
            raise UsageError("--slot: goes with --from-split, or with counts given as an array; a file says its times")
        return forecast.forecast_input(run, inputs, date)
    if inputs is None or slot is None:
        raise UsageError("a forecasting run reads --input FILE (CSV, .npz, .safetensors), counts (history, stations, "
                         "flows) with slot=, or --from-split SPLIT --day D --slot S")
    d, info = run.cfg.data, run.task.info
    counts, last = forecast.check_counts("counts", inputs, slot, d.history, info["stations"], info["flows"])
    return forecast.forecast_input(run, forecast.ForecastInput(counts, last), date)


def _texts(inputs) -> Iterable[str]:
    if inputs is None:
        raise UsageError("predict: give the texts to classify")
    for text in inputs:
        if not isinstance(text, str):
            raise UsageError(f"predict: texts must be strings, got {type(text).__name__}")
        yield text
