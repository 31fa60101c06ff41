"""Train: the training form. Validates everything before a run starts, then hands over to Live."""

from __future__ import annotations

import streamlit as st

from evorl_core.backends import BACKENDS
from evorl_core.config import COST_MODELS, DEFAULT_SYMBOLS, EXECUTION_MODES, PRESETS, PRICE_ADJUSTMENTS
from evorl_core.rundir import new_run_id
from evorl_ui import forms, settings, shell, widgets

shell.require_frame()


def _fill_from_preset() -> None:
    """Preset change: load its values into the form's widgets (test days and backend are kept)."""
    values = forms.preset_form_values(st.session_state["train_preset"])
    for name in forms.PRESET_FIELDS:
        st.session_state[f"train_{name}"] = values[name]


if "train_preset" not in st.session_state:
    st.session_state["train_preset"] = "quick"
if "train_num_envs" not in st.session_state:
    for name, value in forms.preset_form_values(st.session_state["train_preset"]).items():
        st.session_state[f"train_{name}"] = value

st.title("Train")
st.caption("Every value is checked before anything starts. The run appears on **Live** at once.")

c1, c2 = st.columns([3, 2])
symbols_text = c1.text_input("Symbols (comma-separated)", value=",".join(DEFAULT_SYMBOLS), key="train_symbols")
symbols = forms.parse_symbols(symbols_text)
choice = widgets.source_picker("train", symbols, default="auto", column=c2)

c1, c2, c3 = st.columns(3)
c1.selectbox("Preset", list(PRESETS), key="train_preset", on_change=_fill_from_preset,
             help="quick: small network, learns within minutes on a CPU; production: the original "
                  "system's sizes (1024-512-256, 256 envs x 512 steps).")
c2.number_input("Timesteps", step=10_000, key="train_total_timesteps",
                help="Total environment steps (rounded up to whole PPO updates).")
c3.number_input("Test days", step=10, key="train_test_days",
                help="The last N trading days of each symbol are held out for the backtest.")

with st.expander("Advanced", expanded=False):
    a1, a2, a3, a4 = st.columns(4)
    a1.number_input("Parallel envs", step=8, key="train_num_envs")
    a2.number_input("Steps per env per update", step=8, key="train_num_steps")
    a3.number_input("Minibatch size", step=256, key="train_minibatch_size")
    a4.number_input("Epochs", step=1, key="train_epochs")
    b1, b2, b3, b4 = st.columns(4)
    b1.text_input("Hidden sizes", key="train_hidden", help="e.g. 1024,512,256")
    b2.number_input("Learning rate", format="%.2e", step=1e-4, key="train_lr")
    b3.selectbox("Cost model", list(COST_MODELS), key="train_cost_model",
                 help="nse-delivery: NSE statutory charges per side (STT, stamp duty, exchange and SEBI fees, "
                      "GST) + brokerage + slippage + a depository charge per sell day; flat: fee + slippage "
                      "each side. See docs/accounting.md.")
    b4.number_input("Slippage (bps, each side)", step=1.0, key="train_slippage_bps")
    f1, f2, f3, f4 = st.columns(4)
    f1.number_input("Fee (bps, flat model)", step=1.0, key="train_fee_bps")
    f2.number_input("Brokerage (bps, nse-delivery)", step=1.0, key="train_brokerage_bps")
    f3.number_input("DP charge (Rs per sell day, before GST)", step=0.5, key="train_dp_charge")
    f4.selectbox("Price adjustment", list(PRICE_ADJUSTMENTS), key="train_price_adjustment",
                 help="none: the traded close; dividends: total-return prices from an Adj Close column.")
    d1, d2, d3, d4 = st.columns(4)
    d1.text_input("Target positions", key="train_positions",
                  help="Exposures the agent chooses from; long-only 0,0.5,1 by default; -1,0,1 allows shorts.")
    d2.selectbox("Execution", list(EXECUTION_MODES), key="train_execution",
                 help="next_open: fill at the next day's open; close: fill at today's close.")
    d3.number_input("Seed", step=1, key="train_seed")
    d4.selectbox("Backend", list(BACKENDS), key="train_backend")
    e1, e2 = st.columns(2)
    deploy = e1.checkbox("Deploy after training", key="train_deploy")
    model_name = e2.text_input("Model name (optional)", key="train_model_name", disabled=not deploy)

form = {name: st.session_state.get(f"train_{name}") for name in forms.FORM_FIELDS}
form.update(symbols=symbols_text, preset=st.session_state["train_preset"])
with shell.user_errors():
    if summary := forms.batch_summary(form):
        st.caption(summary)

if st.button("Start training", type="primary", key="train_start"):
    run_id = new_run_id()
    data, errors = widgets.source_spec(choice)
    form["data"] = data or "auto"  # uploads: replaced below once they are saved
    config, config_errors = forms.config_from_form(form)
    errors += config_errors
    if choice.kind == "upload" and not errors:
        with shell.user_errors("upload: "):
            data, upload_errors = widgets.save_uploads(choice.uploads, symbols, settings.uploads_dir(run_id))
            errors += upload_errors
            if data and config is not None:
                config = config.replace(data=data)
    if errors:
        for msg in errors:
            st.error(msg)
    elif config is not None:
        with shell.user_errors("Could not start training: "):
            started = settings.registry().start(
                config, settings.runs_dir(), run_id, deploy=bool(deploy),
                model_name=(model_name or None) if deploy else None,
                models_dir=settings.models_dir(), cache_dir=settings.data_cache(),
            )
            shell.go_to("live", started)
