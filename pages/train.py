"""Train: the training form. Validates everything before a run starts, then hands over to Live."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

import evorl_ui as ui
from evorl_core import views
from evorl_core.config import DEFAULT_SYMBOLS, EXECUTION_MODES, PRESETS
from evorl_core.rundir import new_run_id

SOURCES = {"auto": "Auto (cache → Yahoo → synthetic)", "synthetic": "Synthetic (offline)",
           "yahoo": "Yahoo Finance", "csv_dir": "CSV directory", "upload": "CSV upload per symbol"}
ADVANCED = ("num_envs", "num_steps", "minibatch_size", "epochs", "hidden", "lr", "fee_bps",
            "slippage_bps", "positions", "execution", "seed")

ui.require_frame()


def _fill_from_preset() -> None:
    """Preset change: load its values into the form's widgets."""
    values = views.preset_form_values(st.session_state["train_preset"])
    for name in ADVANCED + ("total_timesteps",):
        v = values[name]
        if name in ("lr", "fee_bps", "slippage_bps"):
            v = float(v)
        st.session_state[f"train_{name}"] = v


if "train_preset" not in st.session_state:
    st.session_state["train_preset"] = "quick"
if "train_num_envs" not in st.session_state:
    _fill_from_preset()
    st.session_state["train_test_days"] = views.preset_form_values("quick")["test_days"]

st.title("Train")
st.caption("Every value is checked before anything starts. The run appears on **Live** at once.")

c1, c2 = st.columns([3, 2])
symbols_text = c1.text_input("Symbols (comma-separated)", value=",".join(DEFAULT_SYMBOLS), key="train_symbols")
source = c2.selectbox("Data source", list(SOURCES), format_func=SOURCES.get, key="train_source")

csv_dir = ""
uploads = {}
symbols = views.parse_symbols(symbols_text)
if source == "csv_dir":
    csv_dir = st.text_input("CSV directory (one <SYMBOL>.csv per symbol; Yahoo or NSE layout)",
                            key="train_csv_dir")
elif source == "upload":
    st.caption("One CSV per symbol (Yahoo `Date,Open,High,Low,Close,Adj Close,Volume` or NSE/Kaggle layout).")
    cols = st.columns(max(1, min(3, len(symbols))))
    for i, sym in enumerate(symbols):
        uploads[sym] = cols[i % len(cols)].file_uploader(f"{sym}.csv", type=["csv"], key=f"train_upload_{sym}")
elif source == "yahoo":
    st.caption("Downloads need internet access; downloaded data is cached in the data cache directory.")

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
    b3.number_input("Fee (bps)", step=1.0, key="train_fee_bps")
    b4.number_input("Slippage (bps)", step=1.0, key="train_slippage_bps")
    d1, d2, d3, d4 = st.columns(4)
    d1.text_input("Target positions", key="train_positions",
                  help="Exposures the agent chooses from; long-only 0,0.5,1 by default; -1,0,1 allows shorts.")
    d2.selectbox("Execution", list(EXECUTION_MODES), key="train_execution",
                 help="next_open: fill at the next day's open; close: fill at today's close.")
    d3.number_input("Seed", step=1, key="train_seed")
    d4.selectbox("Backend", ["auto", "cpu", "gpu", "metal"], key="train_backend")
    e1, e2 = st.columns(2)
    deploy = e1.checkbox("Deploy after training", key="train_deploy")
    model_name = e2.text_input("Model name (optional)", key="train_model_name", disabled=not deploy)

form = {name: st.session_state.get(f"train_{name}") for name in ADVANCED + ("total_timesteps", "test_days")}
form.update(symbols=symbols_text, preset=st.session_state["train_preset"],
            backend=st.session_state.get("train_backend", "auto"))
with ui.user_errors():
    envs, steps, mb = form["num_envs"], form["num_steps"], form["minibatch_size"]
    if all(isinstance(v, int) and v > 0 for v in (envs, steps, mb)):
        batch = envs * steps
        st.caption(f"Batch {batch:,} env steps per update · {batch // mb if batch % mb == 0 else '—'} "
                   f"minibatches · ≈{max(1, -(-int(form['total_timesteps'] or 0) // batch)):,} updates")


def _save_uploads(run_id: str) -> tuple[str | None, list[str]]:
    """Write each uploaded CSV to <data cache>/uploads/<run_id>/<SYMBOL>.csv and validate it."""
    from evorl_core.data import DataError, read_symbol_csv

    errors = []
    missing = [s for s in symbols if uploads.get(s) is None]
    if missing:
        return None, [f"upload: no CSV for {', '.join(missing)}"]
    folder = ui.data_cache() / "uploads" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for sym in symbols:
        path = folder / f"{sym}.csv"
        path.write_bytes(uploads[sym].getvalue())
        try:
            read_symbol_csv(path)
        except DataError as exc:
            errors.append(f"{sym}: {exc}")
        except Exception as exc:  # noqa: BLE001 - unreadable upload: show it, don't crash
            errors.append(f"{sym}: {ui.error_text(exc)}")
    if errors:
        shutil.rmtree(folder, ignore_errors=True)
        return None, errors
    return f"csv:{folder}", []


if st.button("Start training", type="primary", key="train_start"):
    errors: list[str] = []
    run_id = new_run_id()
    data = {"auto": "auto", "synthetic": "synthetic", "yahoo": "yahoo"}.get(source)
    if source == "csv_dir":
        if not csv_dir.strip():
            errors.append("CSV directory: give a folder path")
        elif not Path(csv_dir.strip()).expanduser().is_dir():
            errors.append(f"CSV directory: {csv_dir.strip()!r} is not a folder")
        else:
            data = f"csv:{Path(csv_dir.strip()).expanduser()}"
    form["data"] = data or "auto"
    config, config_errors = views.config_from_form(form)
    errors += config_errors
    if source == "upload" and not errors:
        with ui.user_errors("upload: "):
            data, upload_errors = _save_uploads(run_id)
            errors += upload_errors
            if data and config is not None:
                config = config.replace(data=data)
    if errors:
        for msg in errors:
            st.error(msg)
    elif config is not None:
        with ui.user_errors("Could not start training: "):
            started = ui.registry().start(
                config, ui.runs_dir(), run_id, deploy=bool(deploy),
                model_name=(model_name or None) if deploy else None,
                models_dir=ui.models_dir(), cache_dir=ui.data_cache(),
            )
            ui.go_to("live", started)
