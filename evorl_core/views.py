"""Display preparation for the dashboard: pure NumPy/pandas, no Streamlit, no metric logic.

Performance metrics come from ``backtest/metrics.json`` (computed by the backtest module); this
module only reshapes what a run directory holds into arrays a chart can draw: downsampling,
drawdown series for the underwater chart, trade markers, progress/ETA, table layouts, and the
translation of the Train form into a TrainConfig.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import PRESETS, ConfigError, TrainConfig, parse_floats, parse_ints, validation_errors
from .rundir import ACTIVE_STATES

MAX_POINTS = 2000
BH_PREFIX = "bh_"


# downsampling ------------------------------------------------------------------
def downsample_indices(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices into a series of length n, always keeping the first and last."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def minmax_downsample_indices(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices keeping each bucket's minimum and maximum (so peaks and drawdowns survive).

    At most ``max_points`` indices, sorted, always including the first and last point; NaNs are
    ignored when choosing extremes.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    if max_points < 4:
        return downsample_indices(n, max_points)
    buckets = (max_points - 2) // 2
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    keep = [0, n - 1]
    filled = np.where(np.isnan(y), np.nan, y)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        seg = filled[lo:hi]
        if np.all(np.isnan(seg)):
            keep.append(lo)
            continue
        keep.append(lo + int(np.nanargmin(seg)))
        keep.append(lo + int(np.nanargmax(seg)))
    return np.unique(np.asarray(keep, dtype=np.int64))


def ohlc_downsample(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Aggregate consecutive OHLCV rows into at most max_points bars.

    Each bar covers a contiguous run of rows: first open, highest high, lowest low, last close,
    summed volume, dated by its first row.
    """
    n = len(df)
    if n <= max_points:
        return df
    group = (np.arange(n) * max_points) // n
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    ends = np.append(starts[1:], n) - 1
    data = {
        "open": df["open"].to_numpy(dtype=np.float64)[starts],
        "high": np.maximum.reduceat(df["high"].to_numpy(dtype=np.float64), starts),
        "low": np.minimum.reduceat(df["low"].to_numpy(dtype=np.float64), starts),
        "close": df["close"].to_numpy(dtype=np.float64)[ends],
    }
    if "volume" in df:
        data["volume"] = np.add.reduceat(df["volume"].to_numpy(dtype=np.float64), starts)
    return pd.DataFrame(data, index=df.index[starts])


# series ------------------------------------------------------------------------
def drawdown(equity: np.ndarray) -> np.ndarray:
    """Underwater series: equity / running peak - 1 (0 at new highs, negative below)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.size == 0:
        return equity
    peak = np.maximum.accumulate(np.where(np.isnan(equity), -np.inf, equity))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = equity / peak - 1.0
    return np.where(np.isfinite(dd), dd, np.nan)


def trade_markers(positions: np.ndarray, initial: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows where the target position rises (buys) and falls (sells), starting from ``initial``.

    The row for day t holds the position decided at its close, so a change at row t is against
    row t-1 (or ``initial`` for the first row, since a backtest starts flat).
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    prev = np.concatenate([[initial], p[:-1]])
    change = p - prev
    return np.flatnonzero(change > 1e-12), np.flatnonzero(change < -1e-12)


def marker_points(frame: pd.DataFrame, execution: str) -> dict[str, dict[str, np.ndarray]]:
    """Dates and prices of entry (buy) and exit (sell) fills for one symbol's equity rows.

    ``next_open``: a decision at the close of t fills at the open of t+1 (a decision on the last
    test day has no fill inside the test range and is dropped); ``close``: it fills at the close
    of t.
    """
    dates = pd.to_datetime(frame["date"]).to_numpy()
    opens = frame["open"].to_numpy(dtype=np.float64)
    closes = frame["close"].to_numpy(dtype=np.float64)
    buys, sells = trade_markers(frame["position"].to_numpy(dtype=np.float64))
    out = {}
    for name, idx in (("entry", buys), ("exit", sells)):
        if execution == "next_open":
            idx = idx[idx + 1 < len(frame)] + 1
            out[name] = {"date": dates[idx], "price": opens[idx]}
        else:
            out[name] = {"date": dates[idx], "price": closes[idx]}
    return out


def metric_arrays(rows: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, np.ndarray]:
    """Columns of metrics.jsonl rows as float arrays (missing/None -> NaN)."""
    out = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        out[k] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
    return out


def has_values(a: np.ndarray) -> bool:
    return bool(np.size(a)) and bool(np.any(np.isfinite(a)))


def last_finite(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    return float(finite[-1]) if finite.size else None


# progress ----------------------------------------------------------------------
def progress(status: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Fraction done, ETA seconds (status's own, else from the latest throughput) and env steps."""
    status = status or {}
    done = status.get("env_steps") or (rows[-1].get("env_steps") if rows else 0) or 0
    total = status.get("total_steps") or 0
    fraction = min(1.0, max(0.0, done / total)) if total else 0.0
    if status.get("state") == "done":
        fraction = 1.0
    eta = status.get("eta_seconds")
    if eta is None and status.get("state") in ACTIVE_STATES and rows and total:
        sps = rows[-1].get("steps_per_sec")
        if sps and sps > 0:
            eta = max(0.0, (total - done) / sps)
    return {"fraction": fraction, "env_steps": int(done), "total_steps": int(total),
            "eta_seconds": None if eta is None else float(eta)}


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


STALE_SECONDS = 15 * 60


def is_live(status: Mapping[str, Any] | None, *, owned: bool = False, now: float | None = None,
            stale_after: float = STALE_SECONDS) -> bool:
    """Whether a reader should keep polling a run.

    Active states count, except a run this process does not own whose status has not been
    updated for ``stale_after`` seconds (its process most likely died).
    """
    if not status or status.get("state") not in ACTIVE_STATES:
        return False
    if owned:
        return True
    now = time.time() if now is None else now
    updated = status.get("updated_at") or 0.0
    return now - updated < stale_after


# tables ------------------------------------------------------------------------
def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Agent metrics and buy-and-hold metrics (the keys prefixed ``bh_``, prefix removed)."""
    agent, bh = {}, {}
    for k, v in (metrics or {}).items():
        if k.startswith(BH_PREFIX):
            bh[k[len(BH_PREFIX):]] = v
        elif not isinstance(v, Mapping):
            agent[k] = v
    nested = (metrics or {}).get("buy_and_hold") or (metrics or {}).get("benchmark")
    if isinstance(nested, Mapping):
        for k, v in nested.items():
            bh.setdefault(k, v)
    return agent, bh


PERCENT_METRICS = {"total_return", "cagr", "annual_volatility", "max_drawdown", "win_rate", "exposure"}
COUNT_METRICS = {"trades", "days", "episodes"}


def pretty(name: str) -> str:
    """A metric key as a column/row label: 'max_drawdown' -> 'max drawdown'."""
    return name.replace("_", " ")


def format_metric(name: str, value: Any) -> str:
    """Display text for one metric value: percentages for return-like metrics, counts as ints."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "—"
        if name in PERCENT_METRICS:
            return f"{v:.2%}"
        if name in COUNT_METRICS and v == int(v):
            return f"{int(v):,}"
        return f"{v:,.3f}"
    return str(value)


def is_scalar_metric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, np.integer, np.floating))
                             and not isinstance(value, bool))


def symbol_metrics_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One symbol: rows = metric, columns = Agent (and Buy & hold where present), as display text.

    Non-numeric entries (e.g. test_start / test_end dates) are left out; see ``metric_notes``.
    """
    agent, bh = split_metrics(metrics)
    agent = {k: v for k, v in agent.items() if is_scalar_metric(v)}
    bh = {k: v for k, v in bh.items() if is_scalar_metric(v)}
    names = list(agent) + [k for k in bh if k not in agent]
    data = {"Agent": [format_metric(k, agent.get(k)) for k in names]}
    if bh:
        data["Buy & hold"] = [format_metric(k, bh.get(k)) for k in names]
    return pd.DataFrame(data, index=pd.Index([pretty(k) for k in names], name="metric"))


def metric_notes(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The non-numeric entries of a symbol's metrics (e.g. test_start, test_end) as text."""
    agent, _ = split_metrics(metrics)
    return {k: str(v) for k, v in agent.items() if not is_scalar_metric(v) and not isinstance(v, Mapping)}


def sharpe_interval_text(metrics: Mapping[str, Any]) -> str:
    """The bootstrap interval of the Sharpe ratio as '[low, high]' ('—' when undefined)."""
    low, high = metrics.get("sharpe_ci_low"), metrics.get("sharpe_ci_high")
    if low is None or high is None:
        return "—"
    return f"[{low:.2f}, {high:.2f}]"


def overview_table(all_metrics: Mapping[str, Mapping[str, Any]],
                   columns: Sequence[str] = ("total_return", "sharpe", "max_drawdown", "trades")) -> pd.DataFrame:
    """Rows = symbol; each chosen agent metric followed by its buy-and-hold value, as display text."""
    records = []
    for sym, m in (all_metrics or {}).items():
        if not isinstance(m, Mapping):
            continue
        agent, bh = split_metrics(m)
        rec: dict[str, Any] = {"symbol": sym}
        for c in columns:
            if c in agent:
                rec[pretty(c)] = format_metric(c, agent[c])
            if c in bh:
                rec[f"{pretty(c)} (B&H)"] = format_metric(c, bh[c])
        if "significant" in agent:
            rec["Sharpe 95% CI"] = sharpe_interval_text(agent)
            rec["differs from flat"] = "yes" if agent["significant"] else "no"
        records.append(rec)
    if not records:
        return pd.DataFrame()
    return pd.DataFrame.from_records(records).set_index("symbol")


def compare_table(left_id: str, left: Mapping[str, Mapping[str, Any]],
                  right_id: str, right: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Agent metrics of two runs side by side: rows (symbol, metric), one column per run."""
    if left_id == right_id:
        raise ValueError("compare two different runs")
    left, right = left or {}, right or {}
    symbols = list(left) + [s for s in right if s not in left]
    rows = []
    for sym in symbols:
        la, _ = split_metrics(left.get(sym) or {})
        ra, _ = split_metrics(right.get(sym) or {})
        la = {k: v for k, v in la.items() if is_scalar_metric(v)}
        ra = {k: v for k, v in ra.items() if is_scalar_metric(v)}
        for k in list(la) + [k for k in ra if k not in la]:
            rows.append({"symbol": sym, "metric": pretty(k), left_id: format_metric(k, la.get(k)),
                         right_id: format_metric(k, ra.get(k))})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame.from_records(rows).set_index(["symbol", "metric"])


def headline(backtest: Mapping[str, Mapping[str, Any]] | None) -> dict[str, float | None]:
    """Mean total return and Sharpe over symbols, for run lists."""
    if not backtest:
        return {"total_return": None, "sharpe": None}
    out = {}
    for key in ("total_return", "sharpe"):
        vals = [m.get(key) for m in backtest.values() if isinstance(m, Mapping)]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        out[key] = float(np.mean(vals)) if vals else None
    return out


# the Train form ------------------------------------------------------------------
def parse_symbols(text: str) -> tuple[str, ...]:
    return tuple(s.strip().upper() for s in text.replace(";", ",").replace(" ", ",").split(",") if s.strip())


FORM_FIELDS = ("num_envs", "num_steps", "minibatch_size", "epochs", "hidden", "lr", "fee_bps",
               "slippage_bps", "positions", "execution", "seed", "total_timesteps", "test_days")


def preset_form_values(preset: str) -> dict[str, Any]:
    """The values the Train form shows for a preset (text fields as text)."""
    base = TrainConfig()
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)}
    values.update(PRESETS[preset])
    values["hidden"] = ",".join(str(h) for h in values["hidden"])
    values["positions"] = ",".join(f"{p:g}" for p in values["positions"])
    return values


def config_from_form(form: Mapping[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """Translate the Train form into a TrainConfig; return every problem, each naming its field.

    ``form`` holds: symbols (text), data (source string), preset, and the FORM_FIELDS, where
    hidden/positions are comma-separated text and the rest numbers.
    """
    errors: list[str] = []
    preset = form.get("preset", "quick")
    if preset not in PRESETS:
        return None, [f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"]
    values: dict[str, Any] = dict(PRESETS[preset])
    values["preset"] = preset
    values["symbols"] = parse_symbols(str(form.get("symbols", "")))
    values["data"] = form.get("data", "auto")
    for name, parse in (("hidden", parse_ints), ("positions", parse_floats)):
        if name in form:
            try:
                values[name] = parse(str(form[name]), name)
            except ConfigError as exc:
                errors.append(str(exc))
    ints = ("num_envs", "num_steps", "minibatch_size", "epochs", "seed", "total_timesteps", "test_days")
    floats = ("lr", "fee_bps", "slippage_bps")
    for name in ints + floats:
        if name not in form or form[name] is None:
            continue
        v = form[name]
        try:
            fv = float(v)
        except (TypeError, ValueError):
            errors.append(f"{name}: {v!r} is not a number")
            continue
        if name in ints:
            if not math.isfinite(fv) or fv != int(fv):
                errors.append(f"{name}: must be a whole number (got {v})")
                continue
            values[name] = int(fv)
        else:
            values[name] = fv
    if "execution" in form:
        values["execution"] = form["execution"]
    if "backend" in form:
        values["backend"] = form["backend"]
    if errors:
        return None, errors
    try:
        config = TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        return None, [str(exc)]
    errors = validation_errors(config)
    if config.num_envs >= 1 and config.num_steps >= 1 and config.batch_size < 2:
        errors.append("num_envs x num_steps must be at least 2")
    return (None, errors) if errors else (config, [])


def metric_definitions_table() -> pd.DataFrame:
    """Every reported metric with its formula, as stated in docs/accounting.md."""
    from .backtest import METRIC_DEFINITIONS

    rows = dict(METRIC_DEFINITIONS)
    rows["sharpe 95% CI"] = ("moving-block bootstrap (blocks of 5 days, 2000 resamples) percentile interval "
                             "of the Sharpe ratio; 'differs from flat' when it excludes 0")
    return pd.DataFrame({"definition": list(rows.values())}, index=pd.Index(list(rows), name="metric"))
