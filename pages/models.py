"""Models: deployed bundles, their latest signal per symbol, the forward (paper) ledger, and
deploying a finished run. Signals and the ledger read the data the model was trained on by
default, and `auto` never falls back to synthetic prices for them."""

from __future__ import annotations

import streamlit as st

from evorl_core.data.validate import DataError
from evorl_core.deploy import bundle as deploy
from evorl_core.deploy import ledger, signal
from evorl_core.deploy.paper_portfolio import record_portfolio
from evorl_core.deploy.portfolio import load_portfolio_frames, portfolio_signal
from evorl_ui import settings, shell, widgets
from evorl_ui.charts.tearsheet import forward_figure
from evorl_ui.presenters.format import message_markdown, plain
from evorl_ui.presenters.models import (
    benchmark_name,
    forward_caption,
    ledger_table,
    models_table,
    paper_result_text,
    portfolio_signal_table,
    signals_table,
)

shell.require_frame()
st.title("Models")
st.caption("A model bundle is a finished run's trained policy plus everything needed to act on new "
           "data (feature normalisation, positions, execution). Signals are target exposures for "
           "the next session; the paper ledger records them day by day and marks them to market.")

if flash := st.session_state.pop("models_flash", None):
    st.success(plain(flash))

models = []
with shell.user_errors("Could not list models: "):
    models = deploy.list_models(settings.models_dir())


def training_choice(meta: dict) -> tuple[str, str]:
    """(source picker kind, CSV folder) of the data a model was trained on."""
    source = str((meta.get("config") or {}).get("data") or "auto")
    if source.startswith("csv:"):
        return "csv_dir", source[4:]
    return (source if source in widgets.SOURCES else "auto"), ""


def _select_model_source() -> None:
    """A model is picked: its signals default to the source it was trained on."""
    st.session_state.pop("models_source", None)
    st.session_state.pop("models_csv_dir", None)
    st.session_state.pop("models_ledger_result", None)


if not models:
    st.info(f"No models in `{settings.models_dir()}` yet. Deploy a finished run below.")
else:
    st.dataframe(models_table(models), hide_index=True)

    st.subheader("Signals and paper trading")
    by_name = {m["name"]: m for m in models}
    c1, c2 = st.columns([2, 2])
    name = c1.selectbox("Model", list(by_name), key="models_pick", on_change=_select_model_source)
    with shell.user_errors("Could not read this model: "):
        bundle = deploy.load_bundle(name, settings.models_dir())
        for w in bundle.meta.get("load_warnings") or []:  # an older bundle without a checksum, a renamed folder
            st.warning(message_markdown(w))
        kind, folder = training_choice(bundle.meta)
        if "models_source" not in st.session_state and kind == "csv_dir":
            st.session_state["models_csv_dir"] = folder
        with c1:
            widgets.data_badge(by_name[name].get("synthetic"), (bundle.meta.get("data_info") or {}).get("source"))
            st.caption(f"Trained on {plain(signal.training_source(bundle))}; signals and the ledger use it unless you "
                       "choose another source. `auto` here never falls back to synthetic prices.")
        with c2:
            choice = widgets.source_picker("models", bundle.symbols, default=kind)

        portfolio = bundle.config.mode == "portfolio"

        def load() -> tuple[dict, dict]:
            if portfolio:  # the universe, loaded as the run loaded it
                spec, errors = widgets.source_spec(choice)
                if errors:
                    raise DataError("\n".join(errors))
                return load_portfolio_frames(bundle, spec, cache_dir=settings.data_cache())
            frames, info = widgets.load_frames(choice, bundle.symbols, uploads_name=f"model-{name}",
                                               seed=bundle.config.seed, synthetic_fallback=False,
                                               price_adjustment=bundle.config.price_adjustment)
            for w in info.get("warnings") or []:
                st.warning(message_markdown(w))
            for w in signal.stale_warnings(frames):
                st.warning(message_markdown(w), icon=":material/schedule:")
            return frames, info

        s1, s2, _ = st.columns([1, 1.4, 2])
        if s1.button("Compute signals", key="models_signal", type="primary"):
            with shell.user_errors("Could not compute signals: "), st.spinner("Loading model and data…"):
                frames, info = load()
                if info.get("synthetic"):
                    st.badge("Synthetic data — signals are for demonstration", color="orange",
                             icon=":material/science:")
                if portfolio:
                    st.dataframe(portfolio_signal_table(portfolio_signal(bundle, frames)), hide_index=True)
                else:
                    st.dataframe(signals_table(signal.signals(bundle, frames)), hide_index=True)
                st.caption(f"Execution: {bundle.config.execution} — with next_open, fill the target at the "
                           "next session's open.")
        if s2.button("Record paper trade", key="models_paper", icon=":material/edit_note:",
                     help="Append the latest bar to this model's forward ledger: fill the last decision at this "
                          "bar's open, mark to market at its close, decide the next target. Once per bar; "
                          "history is never rewritten."):
            with shell.user_errors("Could not record: "), st.spinner("Recording…"):
                frames, info = load()
                result = (record_portfolio if portfolio else ledger.record)(bundle, frames, info)
                st.session_state["models_ledger_result"] = (name, *paper_result_text(result))

        if (stored := st.session_state.get("models_ledger_result")) and stored[0] == name:
            _, appended, text = stored
            (st.success if appended else st.info)(text)
        rows = ledger.read_ledger(bundle.path)
        if rows:
            st.markdown("**Forward (paper) ledger**")
            if any(r.get("synthetic") for r in rows):
                st.badge("Ledger recorded on synthetic prices", color="orange", icon=":material/science:")
            curves = ledger.forward_curves(rows, bundle.meta)
            widgets.chart(forward_figure(curves, benchmark_name(rows)), key="models_forward")
            st.caption(forward_caption(curves, benchmark_name(rows)))
            st.dataframe(ledger_table(rows), hide_index=True, key="models_ledger")
        else:
            st.caption("No paper trades yet: **Record paper trade** once per session day (or run "
                       f"`evorl paper --model {name}` from a scheduler) to start the forward ledger.")

st.divider()
st.subheader("Deploy a finished run")
done = []
with shell.user_errors("Could not read runs: "):
    done = [r for r in settings.all_runs() if r.get("state") == "done"]
if not done:
    st.caption("No finished runs yet.")
else:
    c1, c2, c3 = st.columns([3, 2, 1])
    run_id = widgets.pick_run(done, key="models_run", column=c1)
    model_name = c2.text_input("Model name", placeholder="default: the run id", key="models_name")
    replace = c2.checkbox("Replace a model that has a forward ledger (the old bundle and its ledger are archived)",
                          key="models_replace")
    c3.write("")
    if c3.button("Deploy", key="models_deploy"):
        with shell.user_errors("Could not deploy: "), st.spinner("Deploying…"):
            path = deploy.deploy_run(settings.open_run(run_id).path, name=model_name.strip() or None,
                                     models_dir=settings.models_dir(), replace=replace)
            st.session_state["models_flash"] = f"Deployed {run_id} to {path}"
            st.rerun()
