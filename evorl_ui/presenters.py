"""Display preparation for the dashboard: pure NumPy/pandas, no Streamlit, no metric logic.

Performance metrics come from ``backtest/metrics.json`` (computed by evorl_core.backtest); this
module only reshapes what run directories and bundles hold into what a page shows: downsampled
series, drawdowns, trade markers, progress/ETA, status lines, KPI texts and tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.backtest import METRIC_DEFINITIONS
from evorl_core.rundir import ACTIVE_STATES
from evorl_core.timefmt import format_duration

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
    return agent, bh


PERCENT_METRICS = {"total_return", "cagr", "annual_volatility", "max_drawdown", "win_rate", "exposure",
                   "excess_mean_annual", "excess_ci_low", "excess_ci_high"}
COUNT_METRICS = {"trades", "days", "episodes", "timing_draws", "timing_draws_past_only", "excess_block",
                 "excess_resamples", "members"}


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


def verdict_text(metrics: Mapping[str, Any]) -> str:
    """The symbol's verdict in plain words (excess over buy & hold; timing skill), docs/evaluation.md."""
    v = metrics.get("verdict")
    if isinstance(v, str) and v:
        return v
    return "no verdict: this run was evaluated before the excess and timing tests existed"


def baseline_comparison_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The agent beside the baselines of the same symbol (``baselines`` in metrics.json), as display text:
    rows = agent and each baseline, columns = total return, Sharpe, max drawdown, trades, exposure."""
    base = metrics.get("baselines")
    if not isinstance(base, Mapping) or not base:
        return pd.DataFrame()
    keys = ("total_return", "sharpe", "max_drawdown", "trades", "exposure")
    rows = {"agent": metrics, **{pretty(name): m for name, m in base.items() if isinstance(m, Mapping)}}
    data = {pretty(k): [format_metric(k, m.get(k)) for m in rows.values()] for k in keys}
    return pd.DataFrame(data, index=pd.Index(list(rows), name="strategy"))


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
        if "significant" in agent or "verdict" in agent:
            rec["Sharpe 95% CI"] = sharpe_interval_text(agent)
        if "verdict" in agent:
            rec["verdict"] = verdict_text(agent)
        elif "significant" in agent:  # runs evaluated before the verdict existed
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


def metric_definitions_table() -> pd.DataFrame:
    """Every reported metric with its formula, as stated in docs/accounting.md."""
    rows = dict(METRIC_DEFINITIONS)
    rows["sharpe 95% CI"] = ("moving-block bootstrap (blocks of 5 days, 2000 resamples) percentile interval "
                             "of the Sharpe ratio (it asks 'different from flat', not 'better than buy & hold')")
    rows["excess mean annual"] = ("mean daily net return of the agent minus buy & hold's, x 252, with its 95% "
                                  "interval (excess ci low/high) and two-sided p-value (excess p value): the "
                                  "more cautious of a stationary block bootstrap-t (2000 resamples) and "
                                  "Student's t (docs/evaluation.md)")
    rows["timing p value"] = ("share of the agent's own held positions, circularly shifted in time (same "
                              "exposure), that earn a log return at least as high: (1 + count) / (draws + 1); "
                              "the larger over two sets of shifts (docs/evaluation.md)")
    rows["verdict"] = ("'beats' / 'worse than buy & hold' when the excess p < 0.05; 'timing skill' when the "
                       "timing p < 0.025; otherwise no claim (docs/evaluation.md)")
    return pd.DataFrame({"definition": list(rows.values())}, index=pd.Index(list(rows), name="metric"))


# run states and the Live page -----------------------------------------------------
# Material icons (markdown only; emoji fonts are often missing on Linux browsers).
STATE_ICONS = {
    "queued": ":material/schedule:", "compiling": ":material/settings:", "running": ":material/play_circle:",
    "stopping": ":material/stop_circle:", "stopped": ":material/pause_circle:",
    "done": ":material/check_circle:", "failed": ":material/error:", "interrupted": ":material/warning:",
}
# Active states in which a stop request still has an effect (a stopping run is already ending).
STOPPABLE_STATES = tuple(s for s in ACTIVE_STATES if s != "stopping")
# The metrics.jsonl columns the Live page reads.
LIVE_METRIC_KEYS = ("env_steps", "update", "wall_time", "steps_per_sec", "updates_per_sec", "reward_mean",
                    "reward_std", "episode_return_mean", "policy_loss", "value_loss", "entropy", "approx_kl",
                    "clip_fraction", "explained_variance", "host_rss_mb", "device_mem_mb",
                    "mean_abs_position", "turnover")


def age_text(ts: float | None, now: float | None = None) -> str:
    """'3m 05s ago' for a timestamp ('—' when unknown)."""
    if not ts:
        return "—"
    now = time.time() if now is None else now
    return format_duration(now - ts) + " ago"


def status_line(status: Mapping[str, Any], prog: Mapping[str, Any], stop_requested: bool = False) -> str:
    """The text of a run's progress bar: state (and phase), env steps, ETA while active."""
    state = status.get("state", "?")
    phase = status.get("phase")
    line = (f"{STATE_ICONS.get(state, '')} **{state}**" + (f" ({phase})" if phase and phase != state else "")
            + f" · {prog['env_steps']:,} / {prog['total_steps']:,} env steps")
    if state in ACTIVE_STATES:
        line += f" · ETA {format_duration(prog['eta_seconds'])}"
    if stop_requested and state in STOPPABLE_STATES:
        line += " · stop requested"
    return line


def status_alert(status: Mapping[str, Any], still_live: bool,
                 now: float | None = None) -> tuple[str, str] | None:
    """('error' | 'warning', message) for a failed, interrupted or silent run, else None."""
    state = status.get("state")
    if state == "failed":
        return "error", f"Run failed: {status.get('error') or 'no error message recorded'}"
    if state == "interrupted":
        return "warning", f"Run interrupted: {status.get('error') or ''}"
    if state in ACTIVE_STATES and not still_live:
        return "warning", (f"No update for {age_text(status.get('updated_at'), now)}: the training process "
                           "probably ended without writing a final status.")
    return None


def no_metrics_text(state: str | None) -> str:
    if state in STOPPABLE_STATES:
        return "Waiting for the first metrics (JAX compiles the training step first; this can take a minute)."
    return "This run has no metrics."


def live_kpis(m: Mapping[str, np.ndarray], status: Mapping[str, Any]) -> dict[str, str]:
    """The headline figures of the Live page from metric_arrays(rows, LIVE_METRIC_KEYS)."""
    sps = last_finite(m["steps_per_sec"])
    updates = m["update"]
    comp = status.get("compile_seconds")
    rss = last_finite(m["host_rss_mb"])
    return {
        "Env steps / s": f"{sps:,.0f}" if sps is not None else "—",
        "Updates": f"{int(updates[-1]):,}" if updates.size and np.isfinite(updates[-1]) else "0",
        "Compile": f"{comp:.1f} s" if isinstance(comp, (int, float)) else "—",
        "Host RSS": f"{rss:,.0f} MB" if rss is not None else "—",
    }


# backend and host -----------------------------------------------------------------
def backend_line(info: Mapping[str, Any]) -> str:
    """The sidebar's one line about the JAX backend (from provenance.describe())."""
    kinds = ", ".join(info["device_kinds"]) or info["jax_platform"]
    return (f"Backend **{info['jax_platform']}** · {info['device_count']} device(s) · {kinds} · "
            f"JAX {info['jax']}")


def devices_text(info: Mapping[str, Any]) -> str:
    """'cpu:0 (cpu), …' for provenance.describe()'s device list."""
    return ", ".join(f"{d['platform']}:{d['id']} ({d['kind']})" for d in info.get("devices") or [])


# run lists and bundles -------------------------------------------------------------
def runs_table(runs: Sequence[Mapping[str, Any]], limit: int = 20) -> pd.DataFrame:
    """The Home page's recent runs: state, progress fraction, mean test return and Sharpe."""
    rows = []
    for r in runs[:limit]:
        head = headline(r.get("backtest"))
        prog = progress({"env_steps": r.get("env_steps"), "total_steps": r.get("total_steps"),
                         "state": r.get("state")})
        rows.append({
            "run": r["run_id"],
            "state": r.get("state"),
            "progress": prog["fraction"],
            "symbols": ", ".join(r.get("symbols") or []),
            "preset": r.get("preset"),
            "data": r.get("data_source"),
            "mean test return": head["total_return"],
            "mean Sharpe": head["sharpe"],
            "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("updated_at") or 0)),
        })
    return pd.DataFrame(rows)


def run_label(run: Mapping[str, Any]) -> str:
    """'run-id · SYM1,SYM2 · preset'. No state: a selectbox keeps the label it was drawn with
    while a run changes state."""
    syms = ",".join(run.get("symbols") or [])
    return run["run_id"] + (f" · {syms}" if syms else "") + (f" · {run['preset']}" if run.get("preset") else "")


def models_table(models: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Deployed bundles (deploy.list_models()): symbols, dates, source run, mean test metrics."""
    rows = []
    for m in models:
        head = headline(m.get("test_metrics"))
        ranges = m.get("date_ranges") or {}
        first = next(iter(ranges.values()), {}) if ranges else {}
        rows.append({
            "name": m["name"],
            "symbols": ", ".join(m.get("symbols") or []),
            "created": pd.Timestamp(m.get("created_at") or 0, unit="s").strftime("%Y-%m-%d %H:%M"),
            "source run": m.get("source_run"),
            "positions": ", ".join(f"{p:g}" for p in m.get("positions") or []),
            "execution": m.get("execution"),
            "train": f"{first.get('first', '?')} → {first.get('train_end', '?')}" if first else "—",
            "test": f"{first.get('test_start', '?')} → {first.get('last', '?')}" if first else "—",
            "mean test return": format_metric("total_return", head["total_return"]),
            "mean test Sharpe": format_metric("sharpe", head["sharpe"]),
            "synthetic data": "yes" if m.get("synthetic") else "no",
        })
    return pd.DataFrame(rows)


def signals_table(signals: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """deploy.signals() output: one row per symbol with the target position and its probabilities."""
    return pd.DataFrame([{
        "symbol": s["symbol"],
        "as of close": s["date"],
        "close": s.get("close"),
        "held position": s.get("held_position"),
        "target position": s["position"],
        **{f"P({p})": q for p, q in (s.get("probabilities") or {}).items()},
    } for s in signals])


# the Backtest page ----------------------------------------------------------------
def conventions_text(config: Mapping[str, Any]) -> str:
    """How the backtest numbers were computed, with this run's execution mode and costs."""
    data_info = config.get("data_info") or {}
    text = (
        "Conventions: daily simple returns of equity, annualisation A = 252, risk-free rate 0; "
        "Sharpe = mean/std·√A, Sortino uses downside deviation; win rate is per trade (a trade = a run "
        f"of one unchanged non-zero position); execution **{config.get('execution', 'next_open')}**; costs "
        f"fee {config.get('fee_bps')} bps + slippage {config.get('slippage_bps')} bps per unit of position "
        "change; the backtest starts flat at the close of the first test day; buy & hold pays one entry "
        "cost. \"Differs from flat\": the 95% moving-block bootstrap interval of the Sharpe ratio excludes 0."
    )
    if not data_info.get("synthetic"):
        text += f" · data: {data_info.get('source', config.get('data', '?'))}"
    return text


def backtest_symbols(metrics: Mapping[str, Any] | None, equity: pd.DataFrame | None) -> list[str]:
    """Symbols with metrics, then any further symbols that only have equity rows."""
    symbols = list(metrics) if metrics else []
    if equity is not None:
        symbols += [s for s in equity["symbol"].unique().tolist() if s not in symbols]
    return symbols


def symbol_rows(equity: pd.DataFrame | None, symbol: str) -> pd.DataFrame | None:
    """One symbol's equity rows sorted by date (None when there are none)."""
    if equity is None:
        return None
    frame = equity[equity["symbol"] == symbol].sort_values("date")
    return None if frame.empty else frame


def notes_text(metrics: Mapping[str, Any]) -> str:
    """metric_notes as one caption line ('' when there are none); the verdict, in plain words, first
    (it replaces the old 'significant', i.e. 'different from flat', flag on screen)."""
    notes = metric_notes(metrics)
    verdict = notes.pop("verdict", None)
    if verdict:
        notes.pop("significant", None)
    parts = ([f"Verdict: {verdict}"] if verdict else []) + [f"{k}: {v}" for k, v in notes.items()]
    return " · ".join(parts)


# the Data page --------------------------------------------------------------------
def frames_summary(frames: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> pd.DataFrame:
    """One row per loaded symbol: rows, first/last date, last close, where it came from."""
    return pd.DataFrame([{
        "symbol": sym, "rows": len(df), "first date": str(df.index[0].date()),
        "last date": str(df.index[-1].date()), "last close": float(df["close"].iloc[-1]),
        "source": (info.get("per_symbol") or {}).get(sym, {}).get("source", info.get("source")),
    } for sym, df in frames.items()])


def candles_title(symbol: str, rows: int) -> str:
    return f"{symbol} — daily OHLC ({rows:,} rows" + (", aggregated for display)" if rows > MAX_POINTS else ")")
