"""The Backtest page and the tearsheet: per-symbol metric tables (agent beside buy & hold),
notes, Sharpe intervals and verdicts, baselines, overview and comparison tables, metric
definitions, the conventions and costs texts, trades and portfolio tables and their caveats.

Performance metrics come from ``backtest/metrics.json`` (computed by evorl_core.evaluation.evaluate); this
module only turns them into text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.config import ConfigError, TrainConfig
from evorl_core.costs import cost_model
from evorl_core.evaluation.tearsheet import cagr_is_short
from evorl_core.metrics import AGENT, BH_PREFIX, METRIC_DEFINITIONS, subject_of, verdict_with_subject
from evorl_ui.presenters.format import format_metric, number_text, plain, pretty


# metric tables --------------------------------------------------------------------
def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Agent metrics and buy-and-hold metrics (the keys prefixed ``bh_``, prefix removed)."""
    agent, bh = {}, {}
    for k, v in (metrics or {}).items():
        if k.startswith(BH_PREFIX):
            bh[k[len(BH_PREFIX):]] = v
        elif not isinstance(v, Mapping):
            agent[k] = v
    return agent, bh


# Entries shown elsewhere (the Sharpe interval and its verdict), not as rows of numbers or notes.
SIGNIFICANCE_KEYS = ("significant", "sharpe_ci_low", "sharpe_ci_high")


def is_scalar_metric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, np.integer, np.floating))
                             and not isinstance(value, bool))


def members_in(metrics: Mapping[str, Any]) -> int:
    """Members behind one symbol's metrics (1 for one agent)."""
    members = (metrics or {}).get("members")
    return int(members) if isinstance(members, (int, float)) and not isinstance(members, bool) else 1


# The figures a symbol's table shows first, in this order; the rest sit behind an expander.
CURATED_KEYS = ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
                "trades", "round_trips", "win_rate", "mean_holding_days", "exposure", "turnover", "gross_return",
                "cost_drag", "excess_mean_annual", "excess_p_value", "timing_p_value", "deflated_sharpe",
                "pbo", "members", "chosen_member")


def symbol_metrics_table(metrics: Mapping[str, Any], pooled: bool = False, part: str = "all") -> pd.DataFrame:
    """One symbol: rows = metric, columns = Agent (and Buy & hold where present), as display text.
    With several members (or pooled folds) a first column, ``subject``, says whose figure each row
    is: the chosen member's, the members' average, the best member's, the members' spread
    (`metrics.subject_of`).

    ``part``: "curated" (the CURATED_KEYS present, in their order), "rest" (every other figure) or "all".
    Non-numeric entries (e.g. test_start / test_end dates) are left out; see ``metric_notes``.
    """
    agent, bh = split_metrics(metrics)
    agent = {k: v for k, v in agent.items() if is_scalar_metric(v) and k not in SIGNIFICANCE_KEYS}
    bh = {k: v for k, v in bh.items() if is_scalar_metric(v)}
    names = list(agent) + [k for k in bh if k not in agent]
    if part == "curated":
        names = [k for k in CURATED_KEYS if k in names]
    elif part == "rest":
        names = [k for k in names if k not in CURATED_KEYS]
    members = members_in(metrics)
    subjects = [subject_of(k, members, pooled) for k in names]
    data = {"subject": subjects} if any(s not in (AGENT, "run") for s in subjects) else {}
    data["Agent"] = [format_metric(k, agent.get(k)) for k in names]
    if bh:
        data["Buy & hold"] = [format_metric(k, bh.get(k)) for k in names]
    labels = [pretty(k) for k in names]
    if "cagr" in names and cagr_is_short(metrics.get("days")):
        labels[names.index("cagr")] = cagr_label(metrics.get("days"))
    return pd.DataFrame(data, index=pd.Index(labels, name="metric"))


def cagr_label(days: Any) -> str:
    """'CAGR' or, for a test shorter than a year, a label that says the rate is extrapolated."""
    if cagr_is_short(days):
        return f"{pretty('cagr')} ⚠ from {int(days) - 1} days"
    return pretty("cagr")


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
            subject = subject_of("verdict", members_in(agent))
            rec["verdict" if subject == AGENT else f"verdict ({subject})"] = verdict_text(agent)
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
        text += f" · data: {plain(data_info.get('source', config.get('data', '?')))}"
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
    parts = ([f"Verdict of the {verdict_with_subject(verdict, members_in(metrics))}"
               if members_in(metrics) > 1 else f"Verdict: {verdict}"] if verdict else []) \
        + [f"{k}: {v}" for k, v in notes.items()]
    return " · ".join(parts)


# the tearsheet --------------------------------------------------------------------
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
