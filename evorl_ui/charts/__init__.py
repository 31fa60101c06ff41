"""Plotly figure builders for the dashboard pages (no Streamlit; widgets.chart draws them).

Every builder downsamples through evorl_ui.presenters.format before handing arrays to plotly, so
a figure stays small whatever the length of the series.

- ``base``: colours and tick formats, ``layout`` (the common title/legend/margins), ``empty`` (the
  'no data yet' figure), ``thin`` (downsampling before plotting), line, band, equity, drawdown,
  price and candlestick figures, ``stacked_figure``.
- ``live``: the Live page: throughput, memory, ``live_figures``, ``overlay_figure`` (several runs).
- ``population``: several agents: member colours and lines, fitness per round, hyperparameters,
  lineage, the members' equity fan.
- ``tearsheet``: one symbol's stacked figure, the portfolio, monthly returns, rolling Sharpe, the
  forward (paper) equity, ``backtest_figures``.

Layers (pyproject.toml): ``live``, ``population`` and ``tearsheet`` build on ``base`` and never
import each other. There is no re-export here: import from the module that defines a name.
"""
