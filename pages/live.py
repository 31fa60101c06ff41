"""Live: progress and charts of a run while it trains (any run in the runs directory, CLI included),
and several runs' curves overlaid with smoothing. A run with several agents (seeds or a population)
adds every member's curves, and a population its validation fitness per round, hyperparameters per
member and the lineage of exploit events."""

from __future__ import annotations

import streamlit as st

from evorl_core.store.rundir import RESUMABLE_STATES
from evorl_ui import settings, shell, widgets
from evorl_ui.charts.live import live_figures, overlay_figure
from evorl_ui.charts.population import (
    fitness_figure,
    hyperparameter_figure,
    lineage_figure,
    member_lines_figure,
)
from evorl_ui.presenters.format import message_markdown, metric_arrays, plain
from evorl_ui.presenters.live import (
    LIVE_METRIC_KEYS,
    STOPPABLE_STATES,
    cumulative,
    is_live,
    live_kpis,
    member_mean,
    member_throughput_text,
    memory_kpi,
    no_metrics_text,
    phases_caption,
    progress,
    status_alert,
    status_line,
)
from evorl_ui.presenters.population import (
    best_per_round,
    config_members,
    evolved_names,
    lineage_table,
    member_arrays,
    members_of,
    population_caption,
    population_table,
)
from evorl_ui.presenters.runs import data_tag, run_label

shell.require_frame()

runs = []
with shell.user_errors("Could not read runs: "):
    runs = settings.all_runs()
if not runs:
    st.title("Live")
    st.info(f"No runs in `{settings.runs_dir()}` yet. Start one on **Train** (or `evorl train` from a shell).")
    st.stop()

by_id = {r["run_id"]: r for r in runs}
t1, t2 = st.columns([3, 2], vertical_alignment="bottom")
t1.title("Live")
with t2:
    run_id = widgets.pick_run(runs, key="live_run", prefer_active=True)
run = by_id[run_id]
registry = settings.registry()
run_dir = settings.open_run(run_id)
run_config = run_dir.read_config() or {}
members = config_members(run_config)
live = is_live(run_dir.read_status(), owned=registry.is_active(run_id, settings.runs_dir()))

b1, b2 = st.columns([1, 3])
widgets.data_badge(run.get("synthetic"), run.get("data_source"), column=b1)
if run.get("name") or run.get("tags"):
    b2.caption(" · ".join([f"**{run['name']}**"] * bool(run.get("name"))
                          + [", ".join(run.get("tags") or [])] * bool(run.get("tags"))))


def controls(status: dict) -> None:
    state = status.get("state")
    b1, b2, b3, _ = st.columns([1, 1, 2, 3])
    if b1.button("Stop", icon=":material/stop:", key="live_stop", disabled=state not in STOPPABLE_STATES,
                 help="Stops at the next chunk boundary and keeps a checkpoint (works for CLI runs too)."):
        with shell.user_errors("Could not stop: "):
            registry.stop(run_id, settings.runs_dir())
            st.toast(plain(f"Stop requested for {run_id}"))
    can_resume = state in RESUMABLE_STATES and run_dir.has_checkpoint()
    if b2.button("Resume", icon=":material/play_arrow:", key="live_resume", disabled=not can_resume,
                 help="Continue from the last checkpoint."):
        with shell.user_errors("Could not resume: "):
            registry.resume(run_id, settings.runs_dir(), models_dir=settings.models_dir(),
                            cache_dir=settings.data_cache())
            st.rerun()
    if state == "done" and b3.button("Open backtest", icon=":material/query_stats:", key="live_backtest", type="primary"):
        shell.go_to("backtest", run_id)


# Progress and the headline figures refresh every second; the charts every few seconds.
# Redrawing all charts each second cost about one of two CPU cores (Streamlit building the
# figures, Chromium drawing them) and slowed a concurrent training run by ~40% on a 2-core machine
# (benchmarks/live_overhead.py).
PROGRESS_REFRESH_S = 1.0
CHART_REFRESH_S = 5.0
OVERLAY_METRICS = {"episode_return_mean": ("Episode return", "log return"),
                   "reward_mean": ("Reward per step", "reward"), "entropy": ("Entropy", "nats"),
                   "value_loss": ("Value loss", "value loss"), "policy_loss": ("Policy loss", "policy loss"),
                   "approx_kl": ("Approx KL", "KL"), "explained_variance": ("Explained variance", "explained var."),
                   "steps_per_sec": ("Throughput", "env steps / s")}


def rows_of(rid: str) -> list[dict]:
    """metrics.jsonl rows, averaged over population members when a run has several."""
    return member_mean(settings.open_run(rid).read_metrics())


@st.fragment(run_every=PROGRESS_REFRESH_S if live else None)
def panel() -> None:
    # Fragment reruns execute only this function, so it catches its own errors.
    with shell.user_errors("Could not show this run: "):
        _panel()


@st.fragment(run_every=CHART_REFRESH_S if live else None)
def charts_panel() -> None:
    with shell.user_errors("Could not draw the charts: "):
        _charts()


def _panel() -> None:
    status = run_dir.read_status() or {}
    rows = rows_of(run_id)
    still_live = is_live(status, owned=registry.is_active(run_id, settings.runs_dir()))
    if (live and not still_live) or status.get("state") != run.get("state"):
        # The run ended (redraw once, without the polling timer) or changed state: the picker
        # label and the buttons outside this fragment show the state too.
        st.rerun()

    prog = progress(status, rows)
    st.progress(prog["fraction"], text=status_line(status, prog, run_dir.stop_requested()))
    if caption := phases_caption(status):
        st.caption(caption)
    if alert := status_alert(status, still_live):
        kind, message = alert
        (st.error if kind == "error" else st.warning)(message_markdown(message))

    m = metric_arrays(rows, LIVE_METRIC_KEYS)
    kpis = live_kpis(m, status)
    mem_label, mem_value, mem_help = memory_kpi(m, status.get("backend"))
    k1, k2, k3, k4, k5 = st.columns([2, 1, 1, 1.2, 1.3])
    with k1.container(key="throughput"):  # assets/style.css enlarges this figure
        st.metric("Env steps / s (median)", kpis["Env steps / s"],
                  help="Median training throughput over all updates so far (compile time excluded). One slow "
                       "chunk moves the last value, not the median.")
        st.caption(f"last chunk: {kpis['Last chunk']}")
        if members > 1:
            st.caption(member_throughput_text(m["steps_per_sec"], members))
    k2.metric("Updates", kpis["Updates"])
    k3.metric("Compile", kpis["Compile"], help="XLA compile time of this session, all done before the first "
                                               "chunk (chunk sizes are compiled up front).")
    k4.metric("Training time", kpis["Training time"], help="Time spent in training chunks, summed over every "
                                                           "session of the run (resumes included).")
    k5.metric(mem_label, mem_value, help=mem_help)

    if not rows:
        st.info(no_metrics_text(status.get("state")))


def _charts() -> None:
    raw = run_dir.read_metrics()
    rows = member_mean(raw)
    if not rows:
        return
    x_key = st.segmented_control("x axis", ["env_steps", "train_seconds"], key="live_x",
                                 format_func={"env_steps": "env steps", "train_seconds": "training time"}.get,
                                 default="env_steps") or "env_steps"
    if len(members_of(raw)) > 1:
        _members(raw, rows, x_key)
        st.subheader("Training diagnostics (mean over members)")
    figures = live_figures(metric_arrays(rows, LIVE_METRIC_KEYS), x_key)
    for i in range(0, len(figures), 2):
        for col, (key, fig) in zip(st.columns(2), figures[i:i + 2], strict=False):
            with col:
                widgets.chart(fig, key=key)


MEMBER_METRICS = {k: OVERLAY_METRICS[k] for k in ("reward_mean", "episode_return_mean", "entropy", "value_loss",
                                                  "policy_loss", "approx_kl", "explained_variance")}


def _x(m: dict, x_key: str):
    return cumulative(m["train_seconds"]) if x_key == "train_seconds" else m["env_steps"]


def _members(raw: list[dict], rows: list[dict], x_key: str) -> None:
    """Every member's curves; for a population also fitness per round, hyperparameters and lineage."""
    evolving = int(run_config.get("population") or 1) > 1
    table = population_table(run_dir.read_population("hyperparams")) if evolving else None
    selection = run_dir.read_selection() or {}
    highlight, why = selection.get("chosen_member"), "chosen on the validation days"
    if highlight is None and table is not None and len(best := best_per_round(table)):
        highlight, why = int(best["member"].iloc[-1]), "best of the latest round"
    st.subheader(f"Population: {members} members" if evolving else f"Seeds: {members} independent agents")
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    metric = c1.selectbox("Member curves of", list(MEMBER_METRICS), key="live_member_metric",
                          format_func=lambda k: MEMBER_METRICS[k][0])
    if highlight is not None:
        c2.caption(f"Bold: member {highlight} ({why}); black: the mean over members.")
    keys = ("env_steps", "train_seconds", metric)
    per_member = member_arrays(raw, keys)
    mean = metric_arrays(rows, keys)
    title, ytitle = MEMBER_METRICS[metric]
    xtitle = "training time (s)" if x_key == "train_seconds" else "env steps (per member)"
    widgets.chart(member_lines_figure({k: (_x(a, x_key), a[metric]) for k, a in per_member.items()},
                                      f"{title} — every member", ytitle, xtitle=xtitle,
                                      mean=(_x(mean, x_key), mean[metric]), highlight=highlight),
                  key="live_members")
    if table is None:
        return
    events = run_dir.read_population("lineage")
    names = evolved_names(run_config)
    st.caption(population_caption(run_config, table, events))
    f1, f2 = st.columns(2)
    with f1:
        widgets.chart(fitness_figure(table), key="live_fitness")
    with f2:
        widgets.chart(lineage_figure(table, events), key="live_lineage")
    widgets.chart(hyperparameter_figure(table, names), key="live_hyper")
    lineage = lineage_table(events, names)
    st.markdown(f"**Exploit events** ({len(lineage)}): a replaced member copied its donor's weights, optimiser state "
                "and hyperparameters, then explored (old → new; the donor's value in brackets).")
    if lineage.empty:
        st.caption("No exploit event yet: the first round comes after "
                   f"{run_config.get('pbt_interval')} update(s).")
    else:
        st.dataframe(lineage, hide_index=True, key="live_lineage_table", height=min(38 + 35 * len(lineage), 300))


@st.fragment(run_every=CHART_REFRESH_S if live else None)
def compare_panel() -> None:
    with shell.user_errors("Could not compare runs: "):
        st.subheader("Compare runs")
        c1, c2, c3 = st.columns([3, 2, 2])
        others = [r["run_id"] for r in runs if r["run_id"] != run_id]
        chosen = c1.multiselect("Overlay other runs", others, key="live_overlay",
                                format_func=lambda i: run_label(by_id[i]),
                                placeholder="choose runs to draw beside this one")
        metric = c2.selectbox("Metric", list(OVERLAY_METRICS), key="live_overlay_metric",
                              format_func=lambda k: OVERLAY_METRICS[k][0])
        smoothing = c3.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="live_smoothing",
                              help="Exponential moving average as in TensorBoard (0 = raw); the raw curve stays faint.")
        ids = [run_id, *chosen]
        if len({bool(by_id[i].get("synthetic")) for i in ids}) > 1:
            st.warning("These runs mix synthetic and real data: their curves are not comparable.",
                       icon=":material/warning:")
        curves = {}
        for rid in ids:
            m = metric_arrays(rows_of(rid), ("env_steps", metric))
            label = by_id[rid].get("name") or rid
            curves[f"{label} ({data_tag(by_id[rid])})"] = (m["env_steps"], m[metric])
        title, ytitle = OVERLAY_METRICS[metric]
        widgets.chart(overlay_figure(curves, f"{title} — {len(ids)} run(s)", ytitle, smoothing),
                      key="live_overlay_chart")


with shell.user_errors("Could not show this run: "):
    # Buttons live outside the polling fragment: a click reruns the whole page, so the run state
    # they act on is fresh; the fragment reruns the page itself when the run ends.
    controls(run_dir.read_status() or {})
panel()
charts_panel()
st.divider()
compare_panel()
