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

from evorl_core.config import SEARCH_SPACE, ConfigError, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.evaluation.tearsheet import cagr_is_short
from evorl_core.metrics import METRIC_DEFINITIONS
from evorl_core.store.rundir import ACTIVE_STATES
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
                   "gross_return", "cost_drag", "cost_drag_annual", "mean_trade_return",
                   "excess_mean_annual", "excess_ci_low", "excess_ci_high"}
COUNT_METRICS = {"trades", "days", "episodes", "round_trips", "winners", "timing_draws", "timing_draws_past_only",
                 "excess_block", "excess_resamples", "members"}
# Labels that say what a metric counts or in which unit it is (the keys stay backtest's names).
LABELS = {
    "trades": "position changes",
    "win_rate": "win rate (per round trip)",
    "turnover": "turnover (× equity / year)",
    "annual_volatility": "annual volatility",
    "round_trips": "round trips",
    "mean_holding_days": "mean holding (days)",
    "mean_trade_return": "mean round-trip return",
}
# Entries shown elsewhere (the Sharpe interval and its verdict), not as rows of numbers or notes.
SIGNIFICANCE_KEYS = ("significant", "sharpe_ci_low", "sharpe_ci_high")


def pretty(name: str) -> str:
    """A metric key as a column/row label: 'max_drawdown' -> 'max drawdown', with a unit or a
    clearer name where the bare key misleads ('trades' counts position changes)."""
    return LABELS.get(name, name.replace("_", " "))


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
        if name == "turnover":
            return f"{v:,.1f}×"
        if name == "mean_holding_days":
            return f"{v:,.1f}"
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
    agent = {k: v for k, v in agent.items() if is_scalar_metric(v) and k not in SIGNIFICANCE_KEYS}
    bh = {k: v for k, v in bh.items() if is_scalar_metric(v)}
    names = list(agent) + [k for k in bh if k not in agent]
    data = {"Agent": [format_metric(k, agent.get(k)) for k in names]}
    if bh:
        data["Buy & hold"] = [format_metric(k, bh.get(k)) for k in names]
    labels = [pretty(k) for k in names]
    if "cagr" in names and cagr_is_short(metrics.get("days")):
        labels[names.index("cagr")] = cagr_label(metrics.get("days"))
    return pd.DataFrame(data, index=pd.Index(labels, name="metric"))


def cagr_label(days: Any) -> str:
    """'cagr' or, for a test shorter than a year, a label that says the rate is extrapolated."""
    if cagr_is_short(days):
        return f"cagr ⚠ from {int(days) - 1} days"
    return "cagr"


def metric_notes(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The non-numeric entries of a symbol's metrics (e.g. test_start, test_end) as text; the
    significance verdict is not one of them (see ``significance_text``)."""
    agent, _ = split_metrics(metrics)
    return {k: str(v) for k, v in agent.items()
            if not is_scalar_metric(v) and not isinstance(v, Mapping) and k not in SIGNIFICANCE_KEYS}


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
                   columns: Sequence[str] = ("total_return", "sharpe", "max_drawdown")) -> pd.DataFrame:
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
            rec["vs flat (95%)"] = significance_text(agent)
        records.append(rec)
    if not records:
        return pd.DataFrame()
    return pd.DataFrame.from_records(records).set_index("symbol")


def significance_text(metrics: Mapping[str, Any]) -> str:
    """The verdict of the Sharpe interval against flat (0) in words, with its direction."""
    low, high = metrics.get("sharpe_ci_low"), metrics.get("sharpe_ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if low > 0:
        return "better than flat"
    if high < 0:
        return "worse than flat"
    return "indistinguishable"


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
    "damaged": ":material/broken_image:",
}
# Active states in which a stop request still has an effect (a stopping run is already ending).
STOPPABLE_STATES = tuple(s for s in ACTIVE_STATES if s != "stopping")
# The metrics.jsonl columns the Live page reads.
LIVE_METRIC_KEYS = ("env_steps", "update", "wall_time", "train_seconds", "steps_per_sec", "updates_per_sec",
                    "reward_mean", "reward_std", "episode_return_mean", "policy_loss", "value_loss", "entropy", "approx_kl",
                    "clip_fraction", "explained_variance", "host_rss_mb", "device_mem_mb", "device_peak_mb",
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


def message_markdown(text: str) -> str:
    """A message of several lines (a DataError lists one problem a line) as Markdown that shows each
    line on its own line: Markdown, so st.error, joins plain line breaks into one paragraph."""
    return "  \n".join(text.splitlines())


def status_alert(status: Mapping[str, Any], still_live: bool,
                 now: float | None = None) -> tuple[str, str] | None:
    """('error' | 'warning', message) for a failed, interrupted or silent run, else None."""
    state = status.get("state")
    if state == "failed":
        return "error", f"Run failed: {status.get('error') or 'no error message recorded'}"
    if state == "interrupted":
        return "warning", f"Run interrupted: {status.get('error') or ''}"
    if state == "damaged":
        return "error", f"Run damaged: {status.get('error') or 'its status.json cannot be read'}"
    if state in ACTIVE_STATES and not still_live:
        return "warning", (f"No update for {age_text(status.get('updated_at'), now)}: the training process "
                           "probably ended without writing a final status.")
    return None


def no_metrics_text(state: str | None) -> str:
    if state in STOPPABLE_STATES:
        return "Waiting for the first metrics (JAX compiles the training step first; this can take a minute)."
    return "This run has no metrics."


def member_mean(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a population run (each with a ``member``) averaged per update: one row per update,
    numeric fields as the mean over members. Rows without ``member`` pass through unchanged."""
    if not rows or not any("member" in r for r in rows):
        return [dict(r) for r in rows]
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("update", r.get("env_steps")), []).append(r)
    out = []
    for group in groups.values():
        merged: dict[str, Any] = {}
        for key in {k for r in group for k in r if k != "member"}:
            vals = [r.get(key) for r in group]
            nums = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            merged[key] = (sum(nums) / len(nums)) if nums else next((v for v in vals if v is not None), None)
        merged["members"] = len(group)
        out.append(merged)
    return out


def cumulative(values: np.ndarray) -> np.ndarray:
    """A per-session clock (wall_time, train_seconds restart at 0 on resume) made cumulative:
    whenever the value drops, the previous session's last value is added to what follows."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    filled = np.where(np.isfinite(v), v, np.nan)
    out = filled.copy()
    offset, prev = 0.0, None
    for i, x in enumerate(filled):
        if not np.isfinite(x):
            continue
        if prev is not None and x < prev:
            offset += prev
        out[i] = x + offset
        prev = x
    return out


def throughput(steps_per_sec: np.ndarray) -> dict[str, float | None]:
    """Median env steps/s over updates (every update of a chunk carries its chunk's rate) and the
    last chunk's rate. The median is the headline: one slow chunk (a checkpoint, another run
    starting) moves the last value, not the typical one."""
    a = np.asarray(steps_per_sec, dtype=np.float64)
    finite = a[np.isfinite(a) & (a > 0)]
    return {"median": float(np.median(finite)) if finite.size else None,
            "last": float(finite[-1]) if finite.size else None}


def memory_kpi(m: Mapping[str, np.ndarray], backend: str | None) -> tuple[str, str, str]:
    """(label, value, help) of the Live page's memory figure: on an accelerator the device's peak
    (what the run needs; the memory held between chunks is only the training state), else the
    resident memory of the process that trains (labelled as the whole process)."""
    dev = last_finite(m.get("device_mem_mb", np.zeros(0)))
    peak = last_finite(m.get("device_peak_mb", np.zeros(0)))
    if backend not in (None, "cpu") and (peak is not None or dev is not None):
        shared = ("every array of the process on that device, so runs trained in one process share the "
                  "figure")
        if peak is None:  # runs written before the peak was recorded
            return ("Device memory", f"{dev:,.0f} MB",
                    f"Memory in use on the first accelerator device between chunks ({shared}).")
        held = f"; {dev:,.0f} MB held between chunks" if dev is not None else ""
        return ("Device memory (peak)", f"{peak:,.0f} MB",
                f"The most memory allocated on the first accelerator device at any moment since the "
                f"training process started ({shared}){held}.")
    rss = last_finite(m.get("host_rss_mb", np.zeros(0)))
    return ("Process RSS", f"{rss:,.0f} MB" if rss is not None else "—",
            "Resident memory of the whole process that trains this run. Runs started from the dashboard "
            "share its process, so they show the same figure; the CPU backend reports no per-run memory.")


def live_kpis(m: Mapping[str, np.ndarray], status: Mapping[str, Any]) -> dict[str, str]:
    """The headline figures of the Live page from metric_arrays(rows, LIVE_METRIC_KEYS):
    median and last-chunk throughput, updates, compile time (all compiles of the current session,
    done before its first chunk) and training time summed over sessions (resumes)."""
    tput = throughput(m["steps_per_sec"])
    updates = m["update"]
    comp = status.get("compile_seconds")
    train = last_finite(cumulative(m["train_seconds"])) if "train_seconds" in m else None
    return {
        "Env steps / s": f"{tput['median']:,.0f}" if tput["median"] is not None else "—",
        "Last chunk": f"{tput['last']:,.0f} steps/s" if tput["last"] is not None else "—",
        "Updates": f"{int(updates[-1]):,}" if updates.size and np.isfinite(updates[-1]) else "0",
        "Compile": f"{comp:.1f} s" if isinstance(comp, (int, float)) else "—",
        "Training time": format_duration(train) if train is not None else "—",
    }


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight in [0, 1), debiased at
    the start (the first point is not pulled toward 0); NaNs are skipped and kept."""
    v = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError("smoothing weight must lie in [0, 1)")
    out = np.full_like(v, np.nan)
    last, count = 0.0, 0
    for i, x in enumerate(v):
        if not np.isfinite(x):
            continue
        last = last * weight + (1.0 - weight) * x
        count += 1
        out[i] = last / (1.0 - weight ** count)
    return out


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
def number_text(value: Any, fmt: str = "{:,.2f}") -> str:
    """A number for a table cell, '—' for None/NaN (never the word None)."""
    if value is None or isinstance(value, bool):
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return fmt.format(v) if math.isfinite(v) else "—"


def steps_text(steps: Any) -> str:
    """200000 -> '200k', 1234567 -> '1.23M' (env steps in labels)."""
    if not isinstance(steps, (int, float)) or not math.isfinite(steps):
        return "?"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(steps) >= div:
            return f"{steps / div:.3g}{unit}"
    return f"{int(steps)}"


def data_badge(synthetic: bool | None, source: str | None = None) -> tuple[str, str, str]:
    """(text, colour, icon) of the data-provenance badge: synthetic, real (with its source) or
    not known yet (a run whose data is still loading)."""
    if synthetic is None:
        return "Data not loaded yet", "gray", ":material/hourglass_empty:"
    if synthetic:
        return "Synthetic data — not real prices", "orange", ":material/science:"
    return f"Real data · {source or 'market data'}", "green", ":material/verified:"


def data_tag(run: Mapping[str, Any]) -> str:
    """The short provenance of a run in labels and tables: 'SYNTHETIC', 'real: csv', 'data ?'."""
    if run.get("synthetic") is None:
        return "data ?"
    if run["synthetic"]:
        return "SYNTHETIC" if run.get("data_source") != "mixed" else "SYNTHETIC (mixed)"
    return f"real: {run.get('data_source') or '?'}"


def run_size(run: Mapping[str, Any]) -> str:
    """'quick · 200k steps', then the members: '· 4 seeds' or '· population 16' (steps per member)."""
    preset = run.get("preset") or "custom"
    steps = run.get("total_timesteps") or run.get("total_steps")
    text = f"{preset} · {steps_text(steps)} steps"
    population, seeds = run.get("population") or 1, run.get("seeds") or 1
    if population > 1:
        return f"{text} · population {population}"
    return f"{text} · {seeds} seeds" if seeds > 1 else text


def run_label(run: Mapping[str, Any]) -> str:
    """A picker label that tells runs apart: state, name, data provenance, size, symbols, id, e.g.
    'done · baseline · real: csv · quick · 200k steps · BPCL,TATASTEEL · run-2026…'."""
    parts = [str(run.get("state") or "?")]
    if run.get("name"):
        parts.append(str(run["name"]))
    if "synthetic" in run:
        parts.append(data_tag(run))
    if run.get("preset") or run.get("total_timesteps"):
        parts.append(run_size(run))
    if run.get("symbols"):
        parts.append(",".join(run["symbols"]))
    if run.get("archived"):
        parts.append("archived")
    parts.append(run["run_id"])
    return " · ".join(parts)


RUN_SORTS = {
    "newest first": (lambda r: r.get("created_at") or 0.0, True),
    "oldest first": (lambda r: r.get("created_at") or 0.0, False),
    "name": (lambda r: (not r.get("name"), (r.get("name") or r["run_id"]).lower()), False),
    "best mean Sharpe": (lambda r: _sort_value(headline(r.get("backtest"))["sharpe"]), True),
    "best mean test return": (lambda r: _sort_value(headline(r.get("backtest"))["total_return"]), True),
}


def _sort_value(v: float | None) -> float:
    return -math.inf if v is None else v


def filter_runs(runs: Sequence[Mapping[str, Any]], text: str = "", states: Sequence[str] = (),
                data: str = "any", archived: bool = False, sort: str = "newest first") -> list[Mapping[str, Any]]:
    """Runs matching every filter, sorted: ``text`` in the id, name, tags, note or symbols (case
    insensitive); ``states`` (empty = all); ``data`` any | real | synthetic; archived runs only
    when ``archived``."""
    needle = text.strip().lower()
    out = []
    for r in runs:
        if r.get("archived") and not archived:
            continue
        if states and r.get("state") not in states:
            continue
        if data == "real" and r.get("synthetic") is not False:
            continue
        if data == "synthetic" and not r.get("synthetic"):
            continue
        if needle:
            hay = " ".join([r["run_id"], r.get("name") or "", " ".join(r.get("tags") or []), r.get("note") or "",
                            " ".join(r.get("symbols") or [])]).lower()
            if needle not in hay:
                continue
        out.append(r)
    key, reverse = RUN_SORTS[sort]
    return sorted(out, key=key, reverse=reverse)


def runs_table(runs: Sequence[Mapping[str, Any]], limit: int = 20) -> pd.DataFrame:
    """The Home page's runs: state, name, data provenance, progress, size, mean test return and
    Sharpe over symbols (as text, '—' when there are none), tags, id."""
    rows = []
    for r in runs[:limit]:
        head = headline(r.get("backtest"))
        prog = progress({"env_steps": r.get("env_steps"), "total_steps": r.get("total_steps"),
                         "state": r.get("state")})
        rows.append({
            "state": r.get("state"),
            "name": r.get("name") or "",
            "data": data_tag(r) if "synthetic" in r else (r.get("data_source") or "?"),
            "progress": prog["fraction"],
            "size": run_size(r),
            "symbols": ", ".join(r.get("symbols") or []),
            "test return": format_metric("total_return", head["total_return"]),
            "Sharpe": number_text(head["sharpe"]),
            "tags": ", ".join(r.get("tags") or []),
            "run": r["run_id"],
        })
    return pd.DataFrame(rows)


def comparison_warning(left: Mapping[str, Any], right: Mapping[str, Any]) -> str | None:
    """Why two runs' metrics are not comparable, or None: one on synthetic prices and one on
    real ones, different real sources, or different test windows."""
    ltag, rtag = data_tag(left), data_tag(right)
    if bool(left.get("synthetic")) != bool(right.get("synthetic")):
        return (f"Different data: {left['run_id']} used {ltag}, {right['run_id']} used {rtag}. Metrics on "
                "synthetic prices say nothing about real ones; do not compare them.")
    if ltag != rtag:
        return f"Different data sources: {left['run_id']} used {ltag}, {right['run_id']} used {rtag}."
    if left.get("data_hash") and right.get("data_hash") and left["data_hash"] != right["data_hash"]:
        return (f"The runs used different price histories (data hashes differ) and may test on different "
                f"days ({left.get('test_days')} vs {right.get('test_days')} test days).")
    if left.get("test_days") != right.get("test_days"):
        return f"Different test windows: {left.get('test_days')} vs {right.get('test_days')} test days."
    return None


def models_table(models: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Deployed bundles (deploy.list_models()): symbols, dates, source run, mean test metrics."""
    rows = []
    for m in models:
        head = headline(m.get("test_metrics"))
        ranges = m.get("date_ranges") or {}
        first = next(iter(ranges.values()), {}) if ranges else {}
        rows.append({
            "name": m["name"],
            "data": "SYNTHETIC" if m.get("synthetic") else "real",
            "symbols": ", ".join(m.get("symbols") or []),
            "created": pd.Timestamp(m.get("created_at") or 0, unit="s").strftime("%Y-%m-%d"),
            "source run": m.get("source_run"),
            "train": f"{first.get('first', '?')} → {first.get('train_end', '?')}" if first else "—",
            "test": f"{first.get('test_start', '?')} → {first.get('last', '?')}" if first else "—",
            "test return": format_metric("total_return", head["total_return"]),
            "test Sharpe": format_metric("sharpe", head["sharpe"]),
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
        f"of one unchanged non-zero position); execution **{config.get('execution', 'next_open')}**; "
        f"{costs_text(config)}; the backtest starts flat at the close of the first test day; buy & hold pays one "
        "entry cost. \"Differs from flat\": the 95% moving-block bootstrap interval of the Sharpe ratio excludes 0."
    )
    if not data_info.get("synthetic"):
        text += f" · data: {data_info.get('source', config.get('data', '?'))}"
    return text


def costs_text(config: Mapping[str, Any]) -> str:
    """The run's cost model in words: per-side rates, the flat sell-day charge, the inputs."""
    try:
        model = cost_model(TrainConfig.from_dict(dict(config)))
    except (ConfigError, TypeError, ValueError):
        model = None
    if model is None or model.name == "flat":
        return (f"costs flat: fee {config.get('fee_bps')} bps + slippage {config.get('slippage_bps')} bps per "
                "unit of position change, each side")
    return (f"costs {model.describe()} per unit of position change (brokerage {config.get('brokerage_bps')} bps "
            f"+ slippage {config.get('slippage_bps')} bps each side included; depository charge "
            f"Rs {config.get('dp_charge')} + GST)")


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


# several agents: seeds and populations (docs/evolution.md) --------------------------------
# metrics.jsonl rows of a run with several agents carry ``member``; their steps_per_sec is the
# aggregate of all members (one vmapped program) and env_steps counts one member's steps.
def members_of(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """The member ids in metrics.jsonl rows, sorted ([] for a single agent)."""
    return sorted({int(r["member"]) for r in rows if r.get("member") is not None})


def config_members(config: Mapping[str, Any] | None) -> int:
    """Agents a run trains together (TrainConfig.members from its config.json): the population
    size with PBT, else the number of seeds; 1 for a single agent."""
    config = config or {}
    population = int(config.get("population") or 1)
    return population if population > 1 else int(config.get("seeds") or 1)


def member_arrays(rows: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[int, dict[str, np.ndarray]]:
    """metric_arrays per member, each member's rows in update order: {member: {key: array}}."""
    keys = tuple(keys)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("member") is not None:
            groups.setdefault(int(r["member"]), []).append(r)
    return {m: metric_arrays(sorted(g, key=lambda r: r.get("update") or 0), keys) for m, g in sorted(groups.items())}


def member_throughput(steps_per_sec: np.ndarray, members: int) -> dict[str, float | None]:
    """Median aggregate env steps/s of a run with ``members`` agents and the same per member."""
    median = throughput(steps_per_sec)["median"]
    return {"aggregate": median, "per_member": None if median is None or members < 1 else median / members}


def member_throughput_text(steps_per_sec: np.ndarray, members: int) -> str:
    """'all 4 members together · 1,234 per member' under the Live page's throughput figure."""
    t = member_throughput(steps_per_sec, members)
    if t["per_member"] is None:
        return f"all {members} members together"
    return f"all {members} members together · {t['per_member']:,.0f} per member"


def hyper_text(name: str, value: Any) -> str:
    """A hyperparameter value as its scale reads best: 3.00e-04 (log), 0.9900 (discount), 0.2 (linear)."""
    if value is None or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        return "—"
    scale = SEARCH_SPACE[name].scale if name in SEARCH_SPACE else "linear"
    if scale == "log":
        return f"{value:.2e}"
    if scale == "discount":
        return f"{value:.4f}"
    return f"{value:.3g}"


POPULATION_COLUMNS = ("update", "round", "member", *SEARCH_SPACE, "fitness", "replaced", "donor")


def population_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """population/hyperparams.jsonl as a frame sorted by round and member: update, round, member,
    every hyperparameter (after the round's exploit and explore), fitness (validation, before the
    round's exploit; NaN for round 0, the first generation), replaced, donor."""
    frame = pd.DataFrame([dict(r) for r in rows])
    for col in POPULATION_COLUMNS:
        if col not in frame:
            frame[col] = np.nan
    if frame.empty:
        return frame[list(POPULATION_COLUMNS)]
    frame["fitness"] = pd.to_numeric(frame["fitness"], errors="coerce").astype(float)
    frame["replaced"] = frame["replaced"].fillna(False).astype(bool)
    frame["donor"] = frame["donor"].fillna(frame["member"]).astype(int)
    for col in ("update", "round", "member"):
        frame[col] = frame[col].astype(int)
    return frame.sort_values(["round", "member"]).reset_index(drop=True)


def best_per_round(table: pd.DataFrame) -> pd.DataFrame:
    """The member with the highest validation fitness in each round that has fitness values:
    round, update, member, fitness (non-finite fitness never wins)."""
    scored = table[np.isfinite(table["fitness"].to_numpy(dtype=float))] if len(table) else table
    if scored.empty:
        return pd.DataFrame(columns=["round", "update", "member", "fitness"])
    best = scored.loc[scored.groupby("round")["fitness"].idxmax()]
    return best[["round", "update", "member", "fitness"]].sort_values("round").reset_index(drop=True)


def evolved_names(config: Mapping[str, Any]) -> list[str]:
    """The hyperparameters a run evolves (its config's ``evolve``), in SEARCH_SPACE order."""
    evolve = set(config.get("evolve") or ())
    return [n for n in SEARCH_SPACE if n in evolve]


def lineage_table(events: Sequence[Mapping[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """population/lineage.jsonl for reading, newest round first: round, update, who copied whom,
    both validation fitness values, and each evolved hyperparameter old -> new (donor's value)."""
    columns = ["round", "update", "member ← donor", "fitness (replaced)", "fitness (donor)",
               "hyperparameters: old → new (donor's)"]
    rows = []
    for e in sorted(events, key=lambda e: (-int(e.get("round", 0)), int(e.get("member", 0)))):
        old, new, donor = e.get("old") or {}, e.get("new") or {}, e.get("donor_hyper") or {}
        rows.append({
            "round": int(e.get("round", 0)), "update": int(e.get("update", 0)),
            "member ← donor": f"{e.get('member')} ← {e.get('donor')}",
            "fitness (replaced)": number_text(e.get("fitness"), "{:+.4f}"),
            "fitness (donor)": number_text(e.get("donor_fitness"), "{:+.4f}"),
            "hyperparameters: old → new (donor's)": " · ".join(
                f"{n} {hyper_text(n, old.get(n))} → {hyper_text(n, new.get(n))} ({hyper_text(n, donor.get(n))})"
                for n in names),
        })
    return pd.DataFrame(rows, columns=columns)


def population_caption(config: Mapping[str, Any], table: pd.DataFrame, events: Sequence[Mapping[str, Any]]) -> str:
    """What the population does, in one line: members, round interval, selection, rounds and
    exploit events so far, what evolves."""
    members = config.get("population") or 0
    fraction = config.get("pbt_fraction") or 0.0
    rounds = int(table["round"].max()) if len(table) else 0
    return (f"Population-based training: {members} members · a round every {config.get('pbt_interval')} "
            f"update(s): fitness = net log return on the validation days, the bottom {fraction:.0%} copy a random "
            f"member of the top {fraction:.0%} (exploit), then perturb ×0.8/×1.25 or resample with probability "
            f"{config.get('pbt_resample')} (explore) · {rounds} round(s) so far · {len(events)} exploit event(s) · "
            f"evolving {', '.join(evolved_names(config)) or '—'}")


# the Backtest page: several agents ---------------------------------------------------
def validation_scores(selection: Mapping[str, Any] | None) -> dict[int, float]:
    """Each member's selection score: its validation log return averaged over symbols (the
    criterion the chosen member maximised)."""
    out = {}
    for member, per_symbol in ((selection or {}).get("validation_log_return") or {}).items():
        vals = [float(v) for v in (per_symbol or {}).values() if isinstance(v, (int, float))]
        out[int(member)] = float(np.mean(vals)) if vals else float("nan")
    return out


def selection_text(selection: Mapping[str, Any], population: bool = False) -> str:
    """How the reported member was chosen, and what its test figure is."""
    chosen = selection.get("chosen_member")
    seeds = selection.get("seeds") or []
    seed = f" (seed {seeds[chosen]})" if isinstance(chosen, int) and 0 <= chosen < len(seeds) else ""
    kind = "population members" if population else "independently seeded agents"
    return (f"Member {chosen}{seed} of {selection.get('members')} {kind} is the run's headline: it was picked on the "
            f"validation days ({selection.get('criterion') or 'validation score'}), never on the test days. Its "
            "test figures above are one draw from the spread of all members below, not the expected result.")


MEMBER_COLUMNS = ("total_return", "sharpe", "max_drawdown")


def member_table(member_metrics: Mapping[str, Mapping[str, Mapping[str, Any]]], selection: Mapping[str, Any] | None,
                 columns: Sequence[str] = MEMBER_COLUMNS) -> pd.DataFrame:
    """One row per member: chosen mark, seed, validation score (the selection criterion), and each
    symbol's test metrics, as display text."""
    selection = selection or {}
    chosen, seeds = selection.get("chosen_member"), selection.get("seeds") or []
    scores = validation_scores(selection)
    rows = []
    for key in sorted(member_metrics, key=int):
        m = int(key)
        row: dict[str, Any] = {"member": m, "chosen": "✓ chosen" if m == chosen else "",
                               "seed": seeds[m] if m < len(seeds) else None,
                               "validation log return": number_text(scores.get(m), "{:+.4f}")}
        for sym, metrics in (member_metrics[key] or {}).items():
            for c in columns:
                row[f"{sym} {pretty(c)}"] = format_metric(c, (metrics or {}).get(c))
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("member")


def spread_table(metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = MEMBER_COLUMNS) -> pd.DataFrame:
    """Per symbol and metric: the chosen member's test value beside the members' mean ± sd and
    min … max (from metrics.json's <metric>_mean/_sd/_min/_max), as display text."""
    rows = []
    for sym, m in (metrics or {}).items():
        if not isinstance(m, Mapping) or "members" not in m:
            continue
        for c in columns:
            if f"{c}_mean" not in m:
                continue
            fmt = lambda v, c=c: format_metric(c, v)  # noqa: E731
            rows.append({"symbol": sym, "metric": pretty(c), "chosen member": fmt(m.get(c)),
                         "mean ± sd": f"{fmt(m.get(f'{c}_mean'))} ± {fmt(m.get(f'{c}_sd'))}",
                         "min … max": f"{fmt(m.get(f'{c}_min'))} … {fmt(m.get(f'{c}_max'))}",
                         "members": int(m["members"])})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["symbol", "metric"])


def member_curves(member_equity: pd.DataFrame | None, symbol: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each member's test equity of one symbol from backtest/members.csv: {member: (dates, equity)}."""
    if member_equity is None or member_equity.empty:
        return {}
    rows = member_equity[member_equity["symbol"] == symbol]
    return {int(m): (g.sort_values("date")["date"].to_numpy(), g.sort_values("date")["equity"].to_numpy(float))
            for m, g in rows.groupby("member")}


# the Walk-forward page ---------------------------------------------------------------
def walkforwards_table(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """walkforward.list_walkforwards(): one row per walk-forward with its pooled headline (mean
    over symbols of the chained out-of-sample test days)."""
    rows = []
    for s in summaries:
        config = s.get("config") or {}
        pooled = s.get("pooled") or {}
        head = headline(pooled)
        bh = headline({sym: {k[len(BH_PREFIX):]: v for k, v in m.items() if k.startswith(BH_PREFIX)}
                       for sym, m in pooled.items() if isinstance(m, Mapping)})
        rows.append({
            "walk-forward": s.get("id"), "state": s.get("state"),
            "folds": f"{len(s.get('per_fold') or [])} / {s.get('folds')}",
            "symbols": ", ".join(config.get("symbols") or []),
            "test days per fold": config.get("test_days"),
            "pooled return": format_metric("total_return", head["total_return"]),
            "pooled B&H return": format_metric("total_return", bh["total_return"]),
            "pooled Sharpe": number_text(head["sharpe"]),
            "created": pd.Timestamp(s.get("created_at") or 0, unit="s").strftime("%Y-%m-%d %H:%M"),
        })
    return pd.DataFrame(rows)


WALKFORWARD_COLUMNS = ("total_return", "sharpe", "max_drawdown")


def _agent_and_buy_and_hold(row: dict[str, Any], m: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """`row` with each metric of `columns` formatted twice: the agent's, then buy & hold's."""
    for c in columns:
        row[pretty(c)] = format_metric(c, m.get(c))
        row[f"{pretty(c)} (B&H)"] = format_metric(c, m.get(BH_PREFIX + c))
    return row


def fold_table(summary: Mapping[str, Any], columns: Sequence[str] = WALKFORWARD_COLUMNS) -> pd.DataFrame:
    """Per fold and symbol: the fold's run, its test dates, the agent's and buy & hold's test metrics."""
    rows = []
    for fold in summary.get("per_fold") or []:
        for sym, m in (fold.get("metrics") or {}).items():
            if not isinstance(m, Mapping):
                continue
            dates = (fold.get("date_ranges") or {}).get(sym) or {}
            row = {"fold": fold.get("fold"), "symbol": sym, "run": fold.get("run_id"),
                   "test days": f"{dates.get('test_start', '?')} → {dates.get('last', '?')}"}
            rows.append(_agent_and_buy_and_hold(row, m, columns))
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["fold", "symbol"])


def pooled_table(summary: Mapping[str, Any], columns: Sequence[str] = WALKFORWARD_COLUMNS) -> pd.DataFrame:
    """Per symbol: the folds' test days chained in time order (every day out of sample), agent and
    buy & hold."""
    rows = []
    for sym, m in (summary.get("pooled") or {}).items():
        if not isinstance(m, Mapping):
            continue
        row = {"symbol": sym, "test days": f"{m.get('first_test_day', '?')} → {m.get('last_test_day', '?')}",
               "daily returns": m.get("days")}
        rows.append(_agent_and_buy_and_hold(row, m, columns))
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("symbol")


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


# the tearsheet ----------------------------------------------------------------------
def trades_table(trades: pd.DataFrame) -> pd.DataFrame:
    """tearsheet.trade_list rows for display: fill dates, prices, return and P&L with units."""
    if trades.empty:
        return pd.DataFrame(columns=["symbol", "entry (fill)", "exit (fill)", "position", "entry price",
                                     "exit price", "return", "P&L (account currency)", "holding days", "status"])
    return pd.DataFrame({
        "symbol": trades["symbol"],
        "entry (fill)": pd.to_datetime(trades["entry_date"]).dt.strftime("%Y-%m-%d"),
        "exit (fill)": pd.to_datetime(trades["exit_date"]).dt.strftime("%Y-%m-%d"),
        "position": [f"{p:g}" for p in trades["position"]],
        "entry price": [number_text(v) for v in trades["entry_price"]],
        "exit price": [number_text(v) for v in trades["exit_price"]],
        "return": [format_metric("total_return", v) for v in trades["return"]],
        "P&L (account currency)": [number_text(v, "{:+,.2f}") for v in trades["pnl"]],
        "holding days": trades["holding_days"].astype(int),
        "status": ["open (valued at the last close)" if o else "closed" for o in trades["open"]],
    }).reset_index(drop=True)


def portfolio_table(agent: Mapping[str, Any], bench: Mapping[str, Any], trades: Mapping[str, Any],
                    exposure: float | None) -> pd.DataFrame:
    """The portfolio's summary: return metrics of the agent and of buy & hold, round trips and the
    win rate of the same round trips, mean exposure."""
    metrics = {**{k: v for k, v in agent.items() if k != "days"},
               **{f"{BH_PREFIX}{k}": v for k, v in bench.items() if k != "days"},
               "round_trips": trades.get("round_trips"), "win_rate": trades.get("win_rate"),
               "mean_holding_days": trades.get("mean_holding_days"), "exposure": exposure,
               "days": agent.get("days")}
    table = symbol_metrics_table(metrics)
    return table.drop(index=[i for i in table.index if i == "days"])


def tearsheet_caveats(days: int | None, synthetic: bool | None) -> list[str]:
    """Warnings a reader of the numbers needs: synthetic prices, a CAGR from a short window."""
    out = []
    if synthetic:
        out.append("Synthetic prices: these results say nothing about real markets.")
    if cagr_is_short(days):
        out.append(f"The test window has {int(days) - 1} daily returns (under a year): CAGR extrapolates it "
                   "to a year and Sharpe intervals are wide; read total return instead.")
    return out


TRADE_DEFINITION = ("A round trip is a run of one unchanged non-zero held position, from its fill to the fill "
                    "that ends it (the exit fee and, with next_open, the last overnight move included); the "
                    "win rate counts winning round trips. 'Position changes' counts every fill (entries, "
                    "exits and resizes).")


# the paper ledger -------------------------------------------------------------------
def paper_result_text(result: Any) -> tuple[bool, str]:
    """(anything appended, message) for a ledger.record result."""
    if result.appended:
        days = sorted({e["date"] for e in result.appended})
        span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        return True, (f"Appended {len(result.appended)} entr{'y' if len(result.appended) == 1 else 'ies'} for {span}. "
                      "The new targets fill at the next session.")
    latest = sorted(set(result.latest.values()))
    return False, (f"Nothing appended: already recorded up to {', '.join(latest)}, the latest bar. The ledger takes "
                   "one entry per bar; run it again after the next session closes.")


def ledger_table(rows: Sequence[Mapping[str, Any]], limit: int = 30) -> pd.DataFrame:
    """The newest ledger entries first: date, symbol, held -> target, close, equity, buy & hold."""
    out = [{
        "date": r["date"], "symbol": r["symbol"], "held": f"{r['held']:g}", "target (next open)": f"{r['target']:g}",
        "close": number_text(r.get("close")), "equity": number_text(r.get("equity")),
        "buy & hold": number_text(r.get("benchmark_equity")),
        "data": ("SYNTHETIC" if r.get("synthetic") else str(r.get("data_source") or "?")) + (" · stale" if r.get("stale") else ""),
    } for r in rows]
    out.sort(key=lambda r: (r["date"], r["symbol"]), reverse=True)
    return pd.DataFrame(out[:limit])


def forward_caption(curves: pd.DataFrame) -> str:
    """Forward return since deployment against buy & hold and against the backtest's expectation."""
    if curves.empty:
        return ""
    first, last = curves.iloc[0], curves.iloc[-1]
    days = len(curves) - 1
    parts = [f"{days} session(s) since deployment ({curves.index[0].date()})",
             f"paper {format_metric('total_return', last['paper'] / first['paper'] - 1)}",
             f"buy & hold {format_metric('total_return', last['buy_hold'] / first['buy_hold'] - 1)}"]
    if np.isfinite(last.get("expected", np.nan)):
        parts.append(f"backtest expectation {format_metric('total_return', last['expected'] / first['expected'] - 1)}"
                     f" (±1σ {format_metric('total_return', last['expected_low'] / first['expected'] - 1)} … "
                     f"{format_metric('total_return', last['expected_high'] / first['expected'] - 1)})")
    return " · ".join(parts)
