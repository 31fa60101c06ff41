"""Models: deployed bundles, their latest signal per symbol, and deploying a finished run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

import evorl_ui as ui
from evorl_core import views

ui.require_frame()
st.title("Models")
st.caption("A model bundle is a finished run's trained policy plus everything needed to act on new "
           "data (feature normalisation, positions, execution). Signals are target exposures for "
           "the next session.")

if flash := st.session_state.pop("models_flash", None):
    st.success(flash)

models = []
with ui.user_errors("Could not list models: "):
    from evorl_core.deploy import list_models

    models = list_models(ui.models_dir())

if not models:
    st.info(f"No models in `{ui.models_dir()}` yet. Deploy a finished run below.")
else:
    rows = []
    for m in models:
        head = views.headline(m.get("test_metrics"))
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
            "mean test return": views.format_metric("total_return", head["total_return"]),
            "mean test Sharpe": views.format_metric("sharpe", head["sharpe"]),
            "synthetic data": "yes" if m.get("synthetic") else "no",
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True)

    st.subheader("Latest signal")
    names = [m["name"] for m in models]
    c1, c2, c3 = st.columns([2, 2, 3])
    name = c1.selectbox("Model", names, key="models_pick")
    source = c2.selectbox("Data", ["synthetic", "auto", "csv directory"], key="models_source",
                          help="auto: cached/downloaded real data, synthetic if none is available.")
    csv_dir = c3.text_input("CSV directory", key="models_csv_dir") if source == "csv directory" else ""
    if st.button("Compute signals", key="models_signal", type="primary"):
        with ui.user_errors("Could not compute signals: "), st.spinner("Loading model and data…"):
            from evorl_core.data import load_frames
            from evorl_core.deploy import load_bundle, signals

            bundle = load_bundle(name, ui.models_dir())
            if source == "csv directory":
                if not csv_dir.strip():
                    raise ValueError("give a CSV directory")
                src = f"csv:{Path(csv_dir.strip()).expanduser()}"
            else:
                src = source
            frames, info = load_frames(src, bundle.symbols, cache_dir=ui.data_cache(),
                                       seed=bundle.config.seed)
            for w in info.get("warnings") or []:
                st.warning(w)
            if info.get("synthetic"):
                st.badge("Synthetic data — signals are for demonstration", color="orange",
                         icon=":material/science:")
            out = signals(bundle, frames)
            table = pd.DataFrame([{
                "symbol": s["symbol"],
                "as of close": s["date"],
                "close": s.get("close"),
                "held position": s.get("held_position"),
                "target position": s["position"],
                **{f"P({p})": q for p, q in (s.get("probabilities") or {}).items()},
            } for s in out])
            st.dataframe(table, hide_index=True)
            st.caption(f"Execution: {bundle.config.execution} — with next_open, fill the target at the "
                       "next session's open.")

st.divider()
st.subheader("Deploy a finished run")
done = []
with ui.user_errors("Could not read runs: "):
    done = [r for r in ui.all_runs() if r.get("state") == "done"]
if not done:
    st.caption("No finished runs yet.")
else:
    by_id = {r["run_id"]: r for r in done}
    c1, c2, c3 = st.columns([3, 2, 1])
    run_id = c1.selectbox("Run", list(by_id), key="models_run", format_func=lambda i: ui.run_label(by_id[i]))
    model_name = c2.text_input("Model name", placeholder="default: the run id", key="models_name")
    c3.write("")
    if c3.button("Deploy", key="models_deploy"):
        with ui.user_errors("Could not deploy: "), st.spinner("Deploying…"):
            from evorl_core.deploy import deploy_run

            path = deploy_run(ui.open_run(run_id).path, name=model_name.strip() or None,
                              models_dir=ui.models_dir())
            st.session_state["models_flash"] = f"Deployed {run_id} to {path}"
            st.rerun()
