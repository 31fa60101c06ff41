"""A run's tearsheet: what the Backtest page draws and what the exported HTML report holds.

``load_tearsheet(run)`` computes everything once from the run directory (evorl_core.evaluation.tearsheet for
the numbers); ``tearsheet_figures`` turns it into plotly figures (evorl_ui.charts.tearsheet, and
charts.population for the members' fan); ``report_html`` writes one self-contained HTML file
(plotly.js inlined once, so it opens offline and can be sent to someone). No Streamlit here.

    python -m evorl_ui.report --run runs/<run_id> --out report.html
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from evorl_core.evaluation import tearsheet as ts
from evorl_core.store.catalogue import read_annotations
from evorl_core.store.rundir import RunDir
from evorl_ui.charts.population import members_fan_figure, pbo_figure
from evorl_ui.charts.portfolio import (
    account_figure,
    concentration_figure,
    contribution_figure,
    weights_figure,
)
from evorl_ui.charts.tearsheet import monthly_heatmap, portfolio_figure, rolling_sharpe_figure, symbol_figure
from evorl_ui.presenters.backtest import (
    TRADE_DEFINITION,
    backtest_symbols,
    conventions_text,
    metric_definitions_table,
    portfolio_table,
    symbol_metrics_table,
    symbol_rows,
    tearsheet_caveats,
    trades_table,
)
from evorl_ui.presenters.population import member_curves, member_table, selection_text, spread_table
from evorl_ui.presenters.portfolio import account_table, diagnostics_lines, universe_lines
from evorl_ui.presenters.runs import data_badge


@dataclass
class Tearsheet:
    run_id: str
    config: dict[str, Any]
    annotations: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    equity: pd.DataFrame | None
    execution: str = "next_open"
    trades: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ts.TRADE_COLUMNS))
    value: pd.Series | None = None
    bench: pd.Series | None = None
    exposure: pd.Series | None = None
    rolling: pd.Series | None = None
    window: int = 21
    monthly: pd.DataFrame | None = None
    agent_metrics: dict[str, float] = field(default_factory=dict)
    bench_metrics: dict[str, float] = field(default_factory=dict)
    trade_stats: dict[str, Any] = field(default_factory=dict)
    # several agents (--seeds / --population): the choice on validation days, every member's test
    selection: dict[str, Any] = field(default_factory=dict)
    member_metrics: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    member_equity: pd.DataFrame | None = None

    @property
    def members(self) -> int:
        return len(self.member_metrics)

    @property
    def population(self) -> bool:
        return int(self.config.get("population") or 1) > 1

    @property
    def synthetic(self) -> bool | None:
        info = self.config.get("data_info")
        return None if not info else bool(info.get("synthetic"))

    @property
    def source(self) -> str | None:
        return (self.config.get("data_info") or {}).get("source")

    @property
    def days(self) -> int | None:
        return None if self.value is None else len(self.value)

    @property
    def symbols(self) -> list[str]:
        return backtest_symbols(self.metrics, self.equity)


def load_tearsheet(run: RunDir) -> Tearsheet:
    """Everything the tearsheet shows, from backtest/equity.csv and metrics.json."""
    config = run.read_config() or {}
    sheet = Tearsheet(run_id=run.run_id, config=config, annotations=read_annotations(run),
                      metrics=run.read_backtest_metrics() or {}, equity=run.read_equity(),
                      execution=config.get("execution", "next_open"), selection=run.read_selection() or {},
                      member_metrics=run.read_member_metrics() or {}, member_equity=run.read_member_equity())
    eq = sheet.equity
    if eq is None or eq.empty:
        return sheet
    sheet.trades = ts.all_trades(eq, sheet.execution)
    sheet.trade_stats = ts.trade_summary(sheet.trades)
    sheet.value = ts.portfolio(eq, "equity")
    sheet.bench = ts.portfolio(eq, "benchmark_equity")
    sheet.exposure = ts.portfolio_exposure(eq)
    sheet.window = ts.rolling_window(len(sheet.value))
    sheet.rolling = ts.rolling_sharpe(sheet.value, sheet.window)
    sheet.monthly = ts.monthly_returns(sheet.value)
    sheet.agent_metrics = ts.portfolio_metrics(sheet.value)
    sheet.bench_metrics = ts.portfolio_metrics(sheet.bench)
    return sheet


def portfolio_summary(sheet: Tearsheet) -> pd.DataFrame:
    exposure = float(sheet.exposure.iloc[1:].mean()) if sheet.exposure is not None and len(sheet.exposure) > 1 else None
    return portfolio_table(sheet.agent_metrics, sheet.bench_metrics, sheet.trade_stats, exposure)


def symbol_trades(sheet: Tearsheet, symbol: str) -> pd.DataFrame:
    return sheet.trades[sheet.trades["symbol"] == symbol]


def symbol_summary(sheet: Tearsheet, symbol: str, part: str = "all") -> pd.DataFrame:
    """The symbol's metrics table with its round trips (the win rate's trades) beside them; ``part``
    as in ``symbol_metrics_table`` (curated, rest, all)."""
    stats = ts.trade_summary(symbol_trades(sheet, symbol))
    metrics = {**(sheet.metrics.get(symbol) or {}), "round_trips": stats["round_trips"],
               "mean_holding_days": stats["mean_holding_days"]}
    return symbol_metrics_table(metrics, part=part)


def member_figure(sheet: Tearsheet, symbol: str) -> go.Figure:
    """Every member's test equity of one symbol (a fan), the chosen member bold, buy & hold dotted."""
    frame = symbol_rows(sheet.equity, symbol)
    bench = None if frame is None else (frame["date"].to_numpy(), frame["benchmark_equity"].to_numpy(float))
    return members_fan_figure(member_curves(sheet.member_equity, symbol),
                              f"{symbol} — every member's test equity (fan)",
                              chosen=sheet.selection.get("chosen_member"), bench=bench)


def tearsheet_figures(sheet: Tearsheet) -> dict[str, go.Figure]:
    """Figures by key: portfolio, monthly, rolling, symbol:<SYM> for each symbol, and with several
    members members:<SYM> (every member's test equity) and pbo:<SYM> (the members' PBO logits)."""
    figs: dict[str, go.Figure] = {}
    if sheet.value is None:
        return figs
    figs["portfolio"] = portfolio_figure(sheet.value, sheet.bench, sheet.exposure)
    figs["monthly"] = monthly_heatmap(sheet.monthly)
    figs["rolling"] = rolling_sharpe_figure(sheet.rolling, sheet.window)
    for sym in sheet.symbols:
        frame = symbol_rows(sheet.equity, sym)
        if frame is not None:
            figs[f"symbol:{sym}"] = symbol_figure(sym, frame, sheet.execution)
        if sheet.members > 1 and sheet.member_equity is not None:
            figs[f"members:{sym}"] = member_figure(sheet, sym)
        if (pbo := pbo_figure(sheet.metrics.get(sym) or {}, sym)) is not None:
            figs[f"pbo:{sym}"] = pbo
    return figs


CSS = """
body { font-family: -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #111827; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-size: 0.9em; margin-right: 6px; }
.orange { background: #ffedd5; color: #9a3412; } .green { background: #dcfce7; color: #166534; }
.gray { background: #f3f4f6; color: #374151; }
.caveat { background: #fffbeb; border-left: 4px solid #f59e0b; padding: 6px 12px; margin: 8px 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.small { color: #6b7280; font-size: 0.85em; }
"""


PORTFOLIO_FILES = ("equity", "weights", "baselines")


def portfolio_frames(run: RunDir) -> dict[str, pd.DataFrame | None]:
    """A portfolio run's backtest/equity.csv, weights.csv and baselines.csv (None where absent)."""
    paths = {name: run.backtest_dir / f"{name}.csv" for name in PORTFOLIO_FILES}
    return {name: pd.read_csv(path, parse_dates=["date"]) if path.exists() else None for name, path in paths.items()}


def portfolio_figures(frames: dict[str, pd.DataFrame | None], account: dict[str, Any]) -> dict[str, go.Figure]:
    """The portfolio figures the Backtest page and the report both show (those whose files exist)."""
    figs: dict[str, go.Figure] = {}
    if frames.get("equity") is not None:
        figs["account"] = account_figure(frames["equity"], frames.get("baselines"))
    if frames.get("weights") is not None:
        figs["weights"] = weights_figure(frames["weights"])
        figs["contribution"] = contribution_figure(account.get("contribution") or {})
        figs["concentration"] = concentration_figure(frames["weights"])
    if (pbo := pbo_figure(account, "account")) is not None:
        figs["pbo"] = pbo
    return figs


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    return frame.to_html(index=index, escape=True, border=0, na_rep="—")


def report_html(run: RunDir, generated_at: float | None = None) -> str:
    """The tearsheet of a run as one self-contained HTML document."""
    sheet = load_tearsheet(run)
    esc = html.escape
    text, color, _ = data_badge(sheet.synthetic, sheet.source)
    name = sheet.annotations.get("name") or sheet.run_id
    portfolio = sheet.config.get("mode") == "portfolio"
    symbols = sheet.config.get("symbols") or []
    subject = f"portfolio of {len(symbols)} symbols" if portfolio else ", ".join(symbols)
    parts = [f"<h1>{esc(name)}</h1>",
             f"<p class='small'>run {esc(sheet.run_id)} · {esc(subject)} · "
             f"{esc(str(sheet.config.get('preset')))} preset · {sheet.config.get('test_days')} test days</p>",
             f"<p><span class='badge {color}'>{esc(text)}</span>"
             + "".join(f"<span class='badge gray'>{esc(t)}</span>" for t in sheet.annotations.get("tags") or [])
             + "</p>"]
    if sheet.annotations.get("note"):
        parts.append(f"<p>{esc(sheet.annotations['note'])}</p>")
    for caveat in tearsheet_caveats(sheet.days, sheet.synthetic):
        parts.append(f"<div class='caveat'>{esc(caveat)}</div>")
    parts.append(f"<p class='small'>{esc(conventions_text(sheet.config).replace('**', ''))}</p>")
    figs = tearsheet_figures(sheet)
    first = True

    def fig_html(fig: go.Figure) -> str:
        nonlocal first
        # tick labels ('1.05M', dates) get the room they need: the report is read outside the dashboard
        fig.update_xaxes(automargin=True)
        fig.update_yaxes(automargin=True)
        out = fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})
        first = False
        return out

    if portfolio:
        parts += _portfolio_parts(run, sheet, fig_html)
    elif sheet.value is None:
        parts.append("<p>This run has no backtest yet.</p>")
    else:
        if sheet.members > 1 and sheet.selection:
            parts.append(f"<div class='caveat'>{esc(selection_text(sheet.selection, sheet.population))}"
                         "</div>")
        parts += ["<h2>Portfolio (equal capital per symbol, no rebalancing)</h2>", _table(portfolio_summary(sheet)),
                  fig_html(figs["portfolio"]), "<h2>Monthly returns</h2>", fig_html(figs["monthly"]),
                  "<h2>Rolling Sharpe</h2>", fig_html(figs["rolling"])]
        if sheet.members > 1:
            parts += [f"<h2>All {sheet.members} members</h2>", _table(spread_table(sheet.metrics)),
                      _table(member_table(sheet.member_metrics, sheet.selection))]
            parts += [fig_html(figs[f"members:{sym}"]) for sym in sheet.symbols if f"members:{sym}" in figs]
            parts += [fig_html(figs[f"pbo:{sym}"]) for sym in sheet.symbols if f"pbo:{sym}" in figs]
        for sym in sheet.symbols:
            parts.append(f"<h2>{esc(sym)}</h2>")
            if sym in sheet.metrics:
                parts.append(_table(symbol_summary(sheet, sym)))
            if f"symbol:{sym}" in figs:
                parts.append(fig_html(figs[f"symbol:{sym}"]))
        parts += ["<h2>Round trips</h2>", f"<p class='small'>{esc(TRADE_DEFINITION)}</p>",
                  _table(trades_table(sheet.trades), index=False)]
    parts += ["<h2>Metric definitions</h2>", _table(metric_definitions_table())]
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(generated_at or time.time()))
    parts.append(f"<p class='small'>Generated by evorl on {stamp} from {esc(str(run.path))}.</p>")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>evorl report — {esc(name)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _portfolio_parts(run: RunDir, sheet: Tearsheet, fig_html) -> list[str]:
    """The report's body for a portfolio run: the universe, the verdict and diagnostics, the account
    against its baselines, the weights, contributions and concentration."""
    account = sheet.metrics.get("PORTFOLIO") or {}
    if not account:
        return ["<p>This run has no backtest yet.</p>"]
    esc = html.escape
    parts = [f"<p class='small'>{esc(line)}</p>" for line in universe_lines(sheet.config)]
    parts += ["<h2>Account (one account over the universe, with cash)</h2>"]
    parts += [f"<p>{esc(line)}</p>" for line in diagnostics_lines(account)]
    parts += [f"<div class='caveat'>{esc(flag)}</div>" for flag in account.get("flags") or []]
    parts.append(_table(account_table(account)))
    figs = portfolio_figures(portfolio_frames(run), account)
    titles = {"account": None, "weights": "Weights over time", "contribution": "Contribution per asset",
              "concentration": "Concentration", "pbo": "Choosing among the members"}
    for key, title in titles.items():
        if key in figs:
            parts += ([f"<h2>{title}</h2>"] if title else []) + [fig_html(figs[key])]
    if sheet.members > 1 and sheet.selection:
        parts.append(f"<div class='caveat'>{esc(selection_text(sheet.selection, sheet.population))}</div>")
    return parts


def resolve_run(run: str, runs_dir: str | Path) -> RunDir:
    """A run directory given as a path, or as a run id inside `runs_dir`; ValueError naming both
    places when neither holds a config.json."""
    for path in (Path(run), Path(runs_dir) / run):
        if (path / "config.json").is_file():
            return RunDir(path)
    raise ValueError(f"{run}: no run there (no config.json in {Path(run)} or in {Path(runs_dir) / run}); "
                     "`evorl runs` lists the runs")


def write_report(run: RunDir, out: str | Path | None = None) -> Path:
    """Write the report of `run` to `out` (default: <run id>-report.html in the working folder)."""
    path = Path(out) if out else Path(f"{run.run_id}-report.html")
    path.write_text(report_html(run), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evorl_ui.report",
                                     description="Write a run's tearsheet as a self-contained HTML file.")
    parser.add_argument("--run", required=True, metavar="RUN_DIR")
    parser.add_argument("--out", required=True, metavar="FILE.html")
    args = parser.parse_args(argv)
    try:
        path = write_report(resolve_run(args.run, "runs"), args.out)
    except (ValueError, OSError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
