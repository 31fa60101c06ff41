"""evorl_ui: the Streamlit dashboard's code (dashboard.py is the entry point, pages/*.py the pages).

- ``settings``: runs/models/cache directories (sidebar, else env, else default), the job
  registry and the backend description, shared by every page.
- ``shell``: page config, navigation, sidebar, CSS, ``require_frame``, ``go_to``, ``user_errors``.
- ``widgets``: the one data-source picker (with CSV uploads), the one run picker, the
  data-provenance badge, field errors, form drafts (a form survives navigation and reloads), ``chart``.
- ``charts``: plotly figure builders, a package: ``charts.base`` (layout, lines, equity, drawdown,
  price, candlesticks, stacked panels), ``charts.live``, ``charts.population``, ``charts.tearsheet``.
- ``presenters``: pure formatting, tables, progress, downsampling, run labels and filters, badges,
  a package: ``presenters.format`` (what several pages share), ``presenters.live``,
  ``presenters.runs``, ``presenters.backtest``, ``presenters.population``,
  ``presenters.walkforward``, ``presenters.models``, ``presenters.data``. Neither package
  re-exports: import each name from its module.
- ``forms``: the Train form's fields, form -> TrainConfig, the checks before a run starts, the
  runtime estimate. ``report``: a run's tearsheet (the Backtest page and the self-contained HTML
  report; ``evorl report RUN``). ``cli``: the ``evorl`` command (the engine's commands plus ``report``). (These four import no Streamlit and are unit-tested.)

How to add a page: write ``pages/<name>.py`` that calls ``shell.require_frame()`` first, reads
through ``settings`` (runs, models, registry) and evorl_core (rundir, jobs, deploy, data), turns
what it read into text/tables with the ``presenters`` modules and figures with the ``charts``
modules, and draws them inside ``shell.user_errors()``; then add it to ``shell.PAGES``. Logic that
is not drawing belongs in ``presenters``/``forms`` (display) or evorl_core (everything else), with
a test.

This module imports nothing, so ``import evorl_ui`` stays cheap.
"""
