"""Display preparation for the dashboard: pure NumPy/pandas, no Streamlit, no metric logic.

Performance metrics come from ``backtest/metrics.json`` (computed by evorl_core.evaluation.evaluate); these
modules only reshape what run directories and bundles hold into what a page shows: downsampled
series, drawdowns, trade markers, progress/ETA, status lines, KPI texts and tables.

- ``format``: shared helpers: downsampling, series (drawdown, trade markers, metric columns),
  ``pretty`` and ``format_metric`` (the engine's metric registry, ``evorl_core.metrics``), ``number_text``, ``steps_text``, ``headline``, ``message_markdown``.
- ``live``: progress and ETA, ``is_live``, state icons, status lines and alerts, the Live page's
  KPIs, ``ema``, member means and throughput.
- ``runs``: backend and host lines, data badges and tags, run labels, filters and sorts,
  ``runs_table``, ``comparison_warning``.
- ``backtest``: per-symbol metric tables, Sharpe intervals and verdicts, overview and comparison
  tables, metric definitions, conventions and costs texts, the tearsheet's tables and caveats.
- ``population``: several agents (seeds, populations): members, hyperparameters, population and
  lineage tables, the selection text, member and spread tables, member curves.
- ``walkforward``: the Walk-forward page's tables. ``models``: bundles, signals and the paper
  ledger. ``data``: the Data page.

Layers (pyproject.toml): ``runs`` may use ``live``; every module may use ``format``; no other
module imports another. There is no re-export here: import from the module that defines a name.
"""
