"""A run's tearsheet from its backtest/equity.csv: round-trip trades, the combined portfolio,
monthly returns, rolling Sharpe and exposure over time (pandas, float64).

Everything here derives from the equity rows of the run-directory contract (`date, symbol, open,
close, position, equity, benchmark_equity`) under the conventions of docs/accounting.md; nothing
is recomputed differently from `metrics`:

- A **round trip** is the trade of `metrics`' ``win_rate``: a maximal run of one unchanged
  non-zero *held* position. Its return compounds the daily equity returns of the run, plus the
  closing period when the position goes flat (exit fee, and with next_open the last overnight
  move); a direct switch to another non-zero position starts the next round trip. So
  ``len(trade_list)`` round trips with ``win_rate`` of them winning is exactly backtest's win rate.
  ``metrics``' ``trades`` metric counts something else: position *changes* (an entry, an exit
  and a resize each count one).
- The **portfolio** gives every symbol the same starting capital and never rebalances: its value
  is the mean of the symbols' equity curves normalised to their first value, times the initial
  capital (a symbol without a row on a date keeps its last value).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from evorl_core.metrics import compute_metrics, trade_runs

ANNUALIZATION = 252
# A CAGR annualised from fewer daily returns than this extrapolates a short window to a year.
CAGR_MIN_DAYS = 252
RETURN_METRICS = ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar")
TRADE_COLUMNS = ["symbol", "entry_date", "exit_date", "position", "entry_price", "exit_price", "return",
                 "pnl", "holding_days", "open"]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _symbol_frame(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.sort_values("date").reset_index(drop=True)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def trade_list(rows: pd.DataFrame, execution: str = "next_open") -> pd.DataFrame:
    """One symbol's round trips (see the module docstring), oldest first, columns TRADE_COLUMNS.

    ``rows``: that symbol's equity rows. Dates and prices are the fills: with ``next_open`` a
    decision at the close of day t fills at the open of day t+1, with ``close`` at the close of t.
    ``return`` is the trade's compounded equity return (costs included), ``pnl`` the same in
    equity units (the account currency), ``holding_days`` the number of daily periods the
    position was held. A trade still open on the last day is valued at the last close
    (``open`` True, exit = the last day).
    """
    if execution not in ("next_open", "close"):
        raise ValueError(f"execution: must be next_open or close (got {execution!r})")
    frame = _symbol_frame(rows)
    symbol = str(frame["symbol"].iloc[0]) if len(frame) else ""
    positions = frame["position"].to_numpy(np.float64)
    equity = frame["equity"].to_numpy(np.float64)
    dates = frame["date"].to_numpy()
    opens = frame["open"].to_numpy(np.float64)
    closes = frame["close"].to_numpy(np.float64)
    n = len(frame) - 1  # daily periods; period k (close k -> close k+1) holds positions[k]
    held = positions[:n]
    out = []
    for k, end, last in trade_runs(held):
        still_open = end + 1 >= n
        entry_row = k + 1 if execution == "next_open" else k
        if still_open:
            exit_row, exit_price = n, closes[n]
        else:
            exit_row = end + 2 if execution == "next_open" else end + 1
            exit_price = opens[exit_row] if execution == "next_open" else closes[exit_row]
        out.append({
            "symbol": symbol,
            "entry_date": dates[entry_row],
            "exit_date": dates[exit_row],
            "position": float(held[k]),
            "entry_price": float(opens[entry_row] if execution == "next_open" else closes[entry_row]),
            "exit_price": float(exit_price),
            "return": float(equity[last + 1] / equity[k] - 1.0),
            "pnl": float(equity[last + 1] - equity[k]),
            "holding_days": int(end - k + 1),
            "open": bool(still_open),
        })
    return pd.DataFrame(out, columns=TRADE_COLUMNS)


def all_trades(equity: pd.DataFrame, execution: str = "next_open") -> pd.DataFrame:
    """trade_list of every symbol, sorted by entry date."""
    frames = [trade_list(rows, execution) for _, rows in equity.groupby("symbol", sort=False)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values(["entry_date", "symbol"], ignore_index=True)


def trade_summary(trades: pd.DataFrame) -> dict[str, Any]:
    """Round trips, winners, win rate (NaN without trades: backtest's definition), mean return and
    mean holding days."""
    count = len(trades)
    wins = int((trades["return"] > 0).sum()) if count else 0
    return {
        "round_trips": count,
        "winners": wins,
        "win_rate": wins / count if count else float("nan"),
        "mean_trade_return": float(trades["return"].mean()) if count else float("nan"),
        "mean_holding_days": float(trades["holding_days"].mean()) if count else float("nan"),
    }


def _pivot(equity: pd.DataFrame, column: str) -> pd.DataFrame:
    frame = equity.assign(date=pd.to_datetime(equity["date"]))
    table = frame.pivot_table(index="date", columns="symbol", values=column, aggfunc="last").sort_index()
    return table.ffill()


def portfolio(equity: pd.DataFrame, column: str = "equity", initial: float | None = None) -> pd.Series:
    """The combined portfolio value by date: equal starting capital per symbol, no rebalancing
    (mean of each symbol's curve over its first value, times ``initial``, default the first
    symbol's first equity). ``column``: "equity" (the agent) or "benchmark_equity" (buy & hold)."""
    table = _pivot(equity, column)
    first = table.bfill().iloc[0]
    growth = (table / first).fillna(1.0)  # before a symbol's first day: its capital waits in cash
    start = float(first.iloc[0]) if initial is None else float(initial)
    return (growth.mean(axis=1) * start).rename(column)


def portfolio_exposure(equity: pd.DataFrame) -> pd.Series:
    """Gross exposure of the portfolio by date: the held |position| of each symbol weighted by its
    share of the portfolio at the previous close (0 on the first day; backtests start flat)."""
    frame = equity.assign(date=pd.to_datetime(equity["date"])).sort_values(["symbol", "date"])
    frame["held"] = frame.groupby("symbol")["position"].shift(1).fillna(0.0).abs()
    held = frame.pivot_table(index="date", columns="symbol", values="held", aggfunc="last").sort_index()
    value = _pivot(equity, "equity")
    value = value / value.bfill().iloc[0]
    weights = value.shift(1).fillna(1.0)
    held = held.reindex_like(weights).fillna(0.0)
    return ((held * weights).sum(axis=1) / weights.sum(axis=1)).rename("exposure")


def daily_returns(series: pd.Series) -> pd.Series:
    return series.pct_change().dropna()


def portfolio_metrics(series: pd.Series, annualization: float = ANNUALIZATION) -> dict[str, float]:
    """backtest's return metrics (RETURN_METRICS, the same formulas) of a value series."""
    values = series.to_numpy(np.float64)
    metrics = compute_metrics(values, np.zeros_like(values), annualization=annualization)
    return {k: float(metrics[k]) for k in RETURN_METRICS} | {"days": len(values)}


def monthly_returns(series: pd.Series) -> pd.DataFrame:
    """Calendar-month returns of a value series: rows = year, columns Jan..Dec plus "Year".

    A month's return is its last value over the previous month's last value (the first month:
    over the series' first value); a year's is the compounded product of its months. Months
    outside the series are NaN.
    """
    if series.empty:
        return pd.DataFrame(columns=[*MONTHS, "Year"])
    s = series.sort_index()
    month_end = s.groupby([s.index.year, s.index.month]).last()
    previous = month_end.shift(1)
    previous.iloc[0] = s.iloc[0]
    rets = month_end / previous - 1.0
    table = pd.DataFrame(np.nan, index=sorted({y for y, _ in rets.index}), columns=[*MONTHS, "Year"])
    table.index.name = "year"
    for (year, month), value in rets.items():
        table.loc[year, MONTHS[month - 1]] = value
    for year in table.index:
        months = table.loc[year, list(MONTHS)].dropna()
        table.loc[year, "Year"] = float(np.prod(1.0 + months.to_numpy()) - 1.0)
    return table


def rolling_window(days: int) -> int:
    """Rolling-Sharpe window for a test of ``days`` days: a quarter (63) when the test holds at
    least three of them, else a month (21), else half the test (at least 5)."""
    if days >= 3 * 63:
        return 63
    if days >= 3 * 21:
        return 21
    return max(5, days // 2)


def rolling_sharpe(series: pd.Series, window: int, annualization: float = ANNUALIZATION) -> pd.Series:
    """Annualised Sharpe (rf = 0) of the last ``window`` daily returns, dated by the window's last
    day; NaN until a window is full or when its returns are constant."""
    r = daily_returns(series)
    mean = r.rolling(window).mean()
    std = r.rolling(window).std(ddof=1)
    out = mean / std.where(std > 1e-12) * math.sqrt(annualization)
    return out.rename("rolling_sharpe")


def cagr_is_short(days: int | float | None) -> bool:
    """Whether a CAGR comes from fewer than CAGR_MIN_DAYS daily returns (``days`` = test days)."""
    return days is not None and (days - 1) < CAGR_MIN_DAYS
