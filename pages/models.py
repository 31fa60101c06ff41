"""Models: deployed bundles, their latest signal per symbol, and deploying a finished run."""

from __future__ import annotations

import streamlit as st

from evorl_core import deploy
from evorl_ui import presenters, settings, shell, widgets

shell.require_frame()
st.title("Models")
st.caption("A model bundle is a finished run's trained policy plus everything needed to act on new "
           "data (feature normalisation, positions, execution). Signals are target exposures for "
           "the next session.")

if flash := st.session_state.pop("models_flash", None):
    st.success(flash)

models = []
with shell.user_errors("Could not list models: "):
    models = deploy.list_models(settings.models_dir())

if not models:
    st.info(f"No models in `{settings.models_dir()}` yet. Deploy a finished run below.")
else:
    st.dataframe(presenters.models_table(models), hide_index=True)

    st.subheader("Latest signal")
    by_name = {m["name"]: m for m in models}
    c1, c2 = st.columns([2, 2])
    name = c1.selectbox("Model", list(by_name), key="models_pick")
    choice = widgets.source_picker("models", by_name[name].get("symbols") or [], default="synthetic", column=c2)
    if st.button("Compute signals", key="models_signal", type="primary"):
        with shell.user_errors("Could not compute signals: "), st.spinner("Loading model and data…"):
            bundle = deploy.load_bundle(name, settings.models_dir())
            frames, info = widgets.load_frames(choice, bundle.symbols, uploads_name=f"model-{name}",
                                               seed=bundle.config.seed,
                                               price_adjustment=bundle.config.price_adjustment)
            for w in info.get("warnings") or []:
                st.warning(w)
            if info.get("synthetic"):
                st.badge("Synthetic data — signals are for demonstration", color="orange",
                         icon=":material/science:")
            st.dataframe(presenters.signals_table(deploy.signals(bundle, frames)), hide_index=True)
            st.caption(f"Execution: {bundle.config.execution} — with next_open, fill the target at the "
                       "next session's open.")

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
    c3.write("")
    if c3.button("Deploy", key="models_deploy"):
        with shell.user_errors("Could not deploy: "), st.spinner("Deploying…"):
            path = deploy.deploy_run(settings.open_run(run_id).path, name=model_name.strip() or None,
                                     models_dir=settings.models_dir())
            st.session_state["models_flash"] = f"Deployed {run_id} to {path}"
            st.rerun()
