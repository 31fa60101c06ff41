"""Train: the training form. Every check that can be made before a run starts is made (values,
data availability, history length, symbols in the source), all problems at once, each under its
field; then the run starts and the page hands over to Live. The form survives navigation and
reloads (a draft)."""

from __future__ import annotations

import shutil

import streamlit as st

from evorl_core.config import (
    ALL_SYMBOLS,
    COST_MODELS,
    DEFAULT_DATA,
    DEFAULT_SYMBOLS,
    EXECUTION_MODES,
    PRECISIONS,
    PRESETS,
    PRICE_ADJUSTMENTS,
    SEARCH_SPACE,
)
from evorl_core.data import load_frames
from evorl_core.data.panel import SURVIVORSHIP_NOTE, load_market
from evorl_core.store.atomic import RunDirError
from evorl_core.store.catalogue import MAX_NAME_CHARS, MAX_NOTE_CHARS, parse_tags, write_annotations
from evorl_core.store.rundir import new_run_id
from evorl_core.system.backends import BACKENDS
from evorl_ui import forms, population_form, settings, shell, widgets
from evorl_ui.presenters.format import plain

shell.require_frame()

FIELD_KEYS = {name: f"train_{name}" for name in forms.FORM_FIELDS}
# The population's non-config fields: agents mode, what evolves, each hyperparameter's ranges.
SPACE_KEYS = {name: f"train_{name}" for name in ("agents", *population_form.space_form_values())}
EXTRA_KEYS = ("train_symbols", "train_universe", "train_source", "train_csv_dir", "train_preset", "train_deploy", "train_model_name",
              "train_tensorboard", "train_run_name", "train_tags", "train_note", *SPACE_KEYS.values())
DRAFT_KEYS = (*FIELD_KEYS.values(), *EXTRA_KEYS)
# Fields with an error slot under their widget; other fields' errors show under the button.
SLOTS = ("symbols", "source", "total_timesteps", "test_days", "val_days", "num_envs", "num_steps", "minibatch_size",
         "epochs", "hidden", "lr", "fee_bps", "slippage_bps", "positions", "seed", "name", "tags", "agents", "seeds",
         "population", "pbt_interval", "pbt_fraction", "pbt_resample", "evolve", "universe_size", "rebalance_band",
         *(f"{kind}_{n}" for n in SEARCH_SPACE for kind in ("range", "init")), forms.GENERAL)
ERRORS = "train_errors"  # {"values": form values when checked, "errors": {field: [message]}}


def _defaults(preset: str = "quick") -> dict:
    values = {FIELD_KEYS[name]: v for name, v in forms.preset_form_values(preset).items()}
    values.update(train_symbols=",".join(DEFAULT_SYMBOLS), train_universe=ALL_SYMBOLS, train_source=DEFAULT_DATA, train_csv_dir="", train_preset=preset,
                  train_deploy=False, train_model_name="", train_tensorboard=False, train_run_name="", train_tags="", train_note="",
                  train_agents="seeds")
    values.update({SPACE_KEYS[k]: v for k, v in population_form.space_form_values().items()})
    return values


def _fill_from_preset() -> None:
    """Preset or mode change: load the preset's values in the trading mode into the form's widgets
    (test days, backend and the other KEPT_ON_PRESET_CHANGE fields are kept)."""
    values = forms.preset_form_values(st.session_state["train_preset"], st.session_state.get("train_mode") or "single")
    widgets.set_form_values("train", {f"train_{name}": values[name] for name in forms.PRESET_FIELDS}
                            | {"train_preset": st.session_state["train_preset"],
                               "train_mode": st.session_state.get("train_mode") or "single"})


widgets.restore_draft("train", _defaults())


def current_values() -> dict:
    return {k: st.session_state.get(k) for k in DRAFT_KEYS}


def errors_for(field: str) -> list[str]:
    """The errors of the last Start for a field, while the field still holds the value checked."""
    stored = st.session_state.get(ERRORS)
    if not stored:
        return []
    keys = {"symbols": ("train_symbols",), "source": ("train_source", "train_csv_dir"),
            "name": ("train_run_name",), "tags": ("train_tags",), "note": ("train_note",),
            forms.GENERAL: ()}.get(field, (FIELD_KEYS.get(field, f"train_{field}"),))
    now = current_values()
    if any(now.get(k) != stored["values"].get(k) for k in keys):
        return []
    return stored["errors"].get(field, [])


st.title("Train")
st.caption("Values, data availability, history length and symbols are all checked before anything starts; "
           "each problem shows under its field. The run appears on **Live** at once.")

MODES = {"single": "Single-asset: each symbol traded on its own", "portfolio": "Portfolio: one account over a "
         "universe, with cash"}
portfolio = st.radio("Trading mode", list(MODES), format_func=MODES.get, horizontal=True, key="train_mode",
                     on_change=_fill_from_preset,
                     help="Portfolio: one agent splits one account across every symbol of the universe plus cash and "
                          "is judged against equal weight (1/N); docs/portfolio.md.") == "portfolio"
UNIVERSES = {ALL_SYMBOLS: "Every symbol of the source", "list": "These symbols"}
c1, c2 = st.columns([3, 2])
# A whole universe exists for a CSV folder (every file) and the synthetic source (N names); uploads name their files.
whole = portfolio and st.session_state.get("train_source") in ("csv_dir", "synthetic", "upload")
if whole and st.session_state.get("train_source") != "upload":
    universe = c1.radio("Universe", list(UNIVERSES), format_func=UNIVERSES.get, horizontal=True,
                        **widgets.keep("train", "train_universe"))
else:
    universe = "list"
if universe == ALL_SYMBOLS and whole:
    symbols_text = ALL_SYMBOLS
    c1.caption("Every CSV of the folder (a file that fails validation is left out and recorded), or the "
               "synthetic universe of the size below.")
else:
    symbols_text = c1.text_input("Symbols (comma-separated)", **widgets.keep("train", "train_symbols"),
                                 disabled=portfolio and st.session_state.get("train_source") == "upload")
widgets.field_errors(errors_for("symbols"), c1)
symbols = forms.parse_symbols(symbols_text)
with c2:
    choice = widgets.source_picker("train", symbols, form="train", many=portfolio)
    widgets.field_errors(errors_for("source"))
if portfolio and choice.kind == "upload":
    symbols = tuple(choice.uploads)  # each uploaded file is one symbol of the universe, named by its file
    symbols_text = ",".join(symbols)
if portfolio:
    u1, u2, u3 = st.columns([1, 1, 3])
    if "universe_size" not in forms.hidden_fields("portfolio", symbols, choice.kind):
        u1.number_input("Universe size (synthetic names)", step=10, **widgets.keep("train", "train_universe_size"))
        widgets.field_errors(errors_for("universe_size"), u1)
    u2.number_input("Rebalance band", step=0.001, format="%.3f", **widgets.keep("train", "train_rebalance_band"),
                    help="A trade smaller than this fraction of equity is not made (the weight drifts with prices).")
    widgets.field_errors(errors_for("rebalance_band"), u2)
    u3.caption(f":material/warning: {SURVIVORSHIP_NOTE}")

c1, c2, c3, c4 = st.columns(4)
c1.selectbox("Preset", list(PRESETS), key="train_preset", on_change=_fill_from_preset,
             help="quick: small network, learns within minutes on a CPU (4 seeds by default); production: the "
                  "original system's sizes (1024-512-256, 256 envs x 512 steps).")
c2.number_input("Timesteps per agent (env steps)", step=10_000, **widgets.keep("train", "train_total_timesteps"),
                help="Environment steps each agent trains for (rounded up to whole PPO updates); several seeds or "
                     "a population multiply the work.")
widgets.field_errors(errors_for("total_timesteps"), c2)
c3.number_input("Validation days", step=10, **widgets.keep("train", "train_val_days"),
                help="The N trading days before the test days (after an embargo): where a member is chosen and "
                     "where PBT measures fitness. Never trained on, never the test.")
widgets.field_errors(errors_for("val_days"), c3)
c4.number_input("Test days", step=10, **widgets.keep("train", "train_test_days"),
                help="The last N trading days of each symbol are held out for the backtest.")
widgets.field_errors(errors_for("test_days"), c4)

st.markdown("**Agents**")
# A draft from another version may hold choices these widgets no longer offer.
if st.session_state.get("train_agents") not in population_form.AGENT_MODES:
    st.session_state["train_agents"] = "seeds"
st.session_state["train_evolve"] = [n for n in st.session_state.get("train_evolve") or () if n in SEARCH_SPACE]
g1, g2, g3 = st.columns([2, 1, 3])
agents = g1.radio("Agents", list(population_form.AGENT_MODES), format_func=population_form.AGENT_MODES.get, horizontal=True,
                  label_visibility="collapsed", **widgets.keep("train", "train_agents"),
                  help="Independent seeds: N agents, same settings, seeds seed .. seed+N-1. Population: N agents "
                       "whose hyperparameters evolve by population-based training (docs/evolution.md).")
widgets.field_errors(errors_for("agents"), g1)
if agents == "population":
    g2.number_input("Population size", step=1, **widgets.keep("train", "train_population"))
    widgets.field_errors(errors_for("population"), g2)
    g3.caption("All members train as one vmapped program. Every round the bottom fraction copies the weights and "
               "hyperparameters of a random top member (exploit), then perturbs ×0.8/×1.25 or resamples them "
               "(explore). Fitness: net-of-cost log return on the validation days.")
    p1, p2, p3, p4 = st.columns([1, 1, 1, 2])
    p1.number_input("PBT interval (updates)", step=1, **widgets.keep("train", "train_pbt_interval"),
                    help="PPO updates between two exploit/explore rounds.")
    widgets.field_errors(errors_for("pbt_interval"), p1)
    p2.number_input("Fraction replaced", step=0.05, format="%.2f", **widgets.keep("train", "train_pbt_fraction"),
                    help="The bottom fraction (at least one member) copies a member of the top fraction; (0, 0.5].")
    widgets.field_errors(errors_for("pbt_fraction"), p2)
    p3.number_input("Resample probability", step=0.05, format="%.2f", **widgets.keep("train", "train_pbt_resample"),
                    help="Chance that explore draws a hyperparameter anew from its range instead of perturbing it.")
    widgets.field_errors(errors_for("pbt_resample"), p3)
    evolve = p4.multiselect("Evolve", list(SEARCH_SPACE), **widgets.keep("train", "train_evolve"),
                            help="The hyperparameters PBT changes; the others keep the form's value for every member.")
    widgets.field_errors(errors_for("evolve"), p4)
    if evolve:
        st.caption("Ranges as LOW:HIGH. The search range bounds what explore may reach; the first generation is "
                   "drawn from its own range when given, else from the search range (log-uniformly on log scales).")
    for name in (n for n in SEARCH_SPACE if n in evolve):
        r = SEARCH_SPACE[name]
        n1, n2, n3 = st.columns([2, 2, 2], vertical_alignment="top")
        n1.markdown(f"`{name}` — {r.doc}  \n:gray[{r.scale} scale · default {population_form.range_text(r)}]")
        n2.text_input(f"{name} search range", placeholder=population_form.range_text(r),
                      **widgets.keep("train", f"train_range_{name}"))
        widgets.field_errors(errors_for(f"range_{name}"), n2)
        n3.text_input(f"{name} first generation (optional)", placeholder="= search range",
                      **widgets.keep("train", f"train_init_{name}"))
        widgets.field_errors(errors_for(f"init_{name}"), n3)
else:
    g2.number_input("Seeds", step=1, **widgets.keep("train", "train_seeds"))
    widgets.field_errors(errors_for("seeds"), g2)
    g3.caption("N complete agents (seeds seed … seed+N−1) trained as one vmapped program. The run reports every "
               "agent's test result and their spread; the headline agent is chosen on the validation days.")

OUTSIDE_ADVANCED = ("total_timesteps", "test_days", "val_days", "seeds", *population_form.POPULATION_FIELDS)
with st.expander("Advanced", expanded=any(errors_for(f) for f in forms.FORM_FIELDS if f not in OUTSIDE_ADVANCED)):
    rows = [("num_envs", "Parallel envs", dict(step=8)), ("num_steps", "Steps per env per update", dict(step=8)),
            ("minibatch_size", "Minibatch size", dict(step=256)), ("epochs", "Epochs", dict(step=1))]
    for col, (name, label, kw) in zip(st.columns(4), rows, strict=True):
        col.number_input(label, **widgets.keep("train", FIELD_KEYS[name]), **kw)
        widgets.field_errors(errors_for(name), col)
    b1, b2, b3, b4 = st.columns(4)
    b1.text_input("Hidden sizes", **widgets.keep("train", "train_hidden"), help="e.g. 1024,512,256")
    widgets.field_errors(errors_for("hidden"), b1)
    b2.number_input("Learning rate", format="%.2e", step=1e-4, **widgets.keep("train", "train_lr"))
    widgets.field_errors(errors_for("lr"), b2)
    b3.selectbox("Cost model", list(COST_MODELS), **widgets.keep("train", "train_cost_model"),
                 help="nse-delivery: NSE statutory charges per side (STT, stamp duty, exchange and SEBI fees, "
                      "GST) + brokerage + slippage + a depository charge per sell day; flat: fee + slippage "
                      "each side. See docs/accounting.md.")
    widgets.field_errors(errors_for("cost_model"), b3)
    b4.number_input("Slippage (bps, each side)", step=1.0, **widgets.keep("train", "train_slippage_bps"))
    widgets.field_errors(errors_for("slippage_bps"), b4)
    f1, f2, f3, f4 = st.columns(4)
    f1.number_input("Fee (bps, flat model)", step=1.0, **widgets.keep("train", "train_fee_bps"))
    widgets.field_errors(errors_for("fee_bps"), f1)
    f2.number_input("Brokerage (bps, nse-delivery)", step=1.0, **widgets.keep("train", "train_brokerage_bps"))
    widgets.field_errors(errors_for("brokerage_bps"), f2)
    f3.number_input("DP charge (Rs per sell day, before GST)", step=0.5, **widgets.keep("train", "train_dp_charge"))
    widgets.field_errors(errors_for("dp_charge"), f3)
    f4.selectbox("Price adjustment", list(PRICE_ADJUSTMENTS), **widgets.keep("train", "train_price_adjustment"),
                 help="none: the traded close; dividends: total-return prices from an Adj Close column.")
    widgets.field_errors(errors_for("price_adjustment"), f4)
    d1, d2, d3, d4 = st.columns(4)
    if not portfolio:  # a portfolio's action is a vector of target weights
        d1.text_input("Target positions", **widgets.keep("train", "train_positions"),
                      help="Exposures the agent chooses from; long-only 0,0.5,1 by default; -1,0,1 allows shorts.")
        widgets.field_errors(errors_for("positions"), d1)
    d2.selectbox("Execution", list(EXECUTION_MODES), **widgets.keep("train", "train_execution"),
                 help="next_open: fill at the next day's open; close: fill at today's close.")
    d3.number_input("Seed", step=1, **widgets.keep("train", "train_seed"))
    widgets.field_errors(errors_for("seed"), d3)
    d4.selectbox("Backend", list(BACKENDS), **widgets.keep("train", "train_backend"))
    d4.selectbox("Precision", list(PRECISIONS), **widgets.keep("train", "train_precision"),
                 help="Network arithmetic. bf16: bfloat16 matmuls and activations, float32 parameters, optimiser "
                      "state and losses; the saved model is float32 either way. auto: the backend's faster choice "
                      "as measured (fp32 everywhere today).")
    e1, e2, e3 = st.columns(3)
    deploy = e1.checkbox("Deploy after training", **widgets.keep("train", "train_deploy"))
    model_name = e2.text_input("Model name (optional)", **widgets.keep("train", "train_model_name"),
                               disabled=not deploy)
    tensorboard = e3.checkbox("TensorBoard event files", **widgets.keep("train", "train_tensorboard"),
                              help="Also write the metrics as TensorBoard events to the run's tensorboard/ folder "
                                   "(per member); `tensorboard --logdir <runs directory>` shows them.")

with st.expander("Name, tags and note", expanded=bool(st.session_state.get("train_run_name")
                                                      or errors_for("name") or errors_for("tags"))):
    n1, n2 = st.columns([2, 3])
    n1.text_input("Run name", **widgets.keep("train", "train_run_name"), max_chars=MAX_NAME_CHARS,
                  placeholder="e.g. baseline long-only", help="Shown in every run picker beside the run id.")
    widgets.field_errors(errors_for("name"), n1)
    n2.text_input("Tags (comma-separated)", **widgets.keep("train", "train_tags"), placeholder="e.g. baseline, sweep-lr")
    widgets.field_errors(errors_for("tags"), n2)
    st.text_area("Note", **widgets.keep("train", "train_note"), max_chars=MAX_NOTE_CHARS, height=68,
                 placeholder="What this run tries")

form = {name: st.session_state.get(key) for name, key in {**FIELD_KEYS, **SPACE_KEYS}.items()}
form.update(symbols=symbols_text, preset=st.session_state["train_preset"])
with shell.user_errors():
    if summary := forms.batch_summary(form):
        st.caption(summary)
    preview, _ = forms.config_from_form({**form, "data": "synthetic"})
    if preview is not None:
        backend = settings.backend()["jax_platform"]
        estimate = forms.runtime_estimate(preview, settings.all_runs(include_archived=True), backend)
        if preview.preset == "production":
            st.info(forms.runtime_text(estimate), icon=":material/timer:")
        else:
            st.caption(f":material/timer: {forms.runtime_text(estimate)}")
        if preview.num_updates < 20:
            st.caption(f":material/warning: {preview.num_updates} PPO update(s) only: too few to learn much; "
                       "raise the timesteps for a real run.")

b1, b2, _ = st.columns([1.2, 1, 5])
start = b1.button("Start training", type="primary", key="train_start")
if b2.button("Reset form", key="train_reset", help="Back to the quick preset's values; forgets the saved draft."):
    widgets.clear_draft("train")
    st.session_state.pop(ERRORS, None)
    st.rerun()
widgets.field_errors(errors_for(forms.GENERAL))


def check_and_start() -> None:
    run_id = new_run_id()
    spec, source_errors = widgets.source_spec(choice)
    form["data"] = spec or DEFAULT_DATA  # uploads: replaced below once they are saved
    config, config_errors = forms.config_from_form(form)
    if config is not None:
        config_errors += forms.memory_errors(config)
    problems = forms.field_errors(config_errors)
    if source_errors:
        problems.setdefault("source", []).extend(source_errors)
    name, tags, note = (st.session_state.get(k) or "" for k in ("train_run_name", "train_tags", "train_note"))
    if len(" ".join(name.split())) > MAX_NAME_CHARS:
        problems.setdefault("name", []).append(f"name: at most {MAX_NAME_CHARS} characters")
    if any(len(t) > MAX_NAME_CHARS for t in parse_tags(tags)):
        problems.setdefault("tags", []).append(f"tags: each at most {MAX_NAME_CHARS} characters")
    # The data checks need only symbols, source, test days and seed: they run whenever those are
    # fine, so a bad value elsewhere never hides a data problem.
    probe = forms.data_check_config(form, problems)
    upload_folder = settings.uploads_dir(run_id)
    if probe is not None and choice.kind == "upload":
        with shell.user_errors("upload: "):
            data, upload_errors = widgets.save_uploads(choice.uploads, symbols, upload_folder)
            if upload_errors:
                problems.setdefault("source", []).extend(upload_errors)
                probe = None
            elif data:
                probe = probe.replace(data=data)
                config = config.replace(data=data) if config is not None else None
    if probe is not None:
        with st.spinner("Checking the data…"):
            def load_universe(probe):
                return load_market(probe, cache_dir=settings.data_cache())

            def load(symbol: str):
                frames, info = load_frames(probe.data, [symbol], cache_dir=settings.data_cache(),
                                                       seed=probe.seed)
                return frames[symbol], info

            found = forms.check_universe(probe, load_universe) if portfolio else forms.check_data(probe, load)
            for field, messages in forms.field_errors(found).items():
                problems.setdefault(field, []).extend(messages)
    if problems or config is None:
        shutil.rmtree(upload_folder, ignore_errors=True)  # uploads of a run that did not start
        placed: dict[str, list[str]] = {}
        for field, messages in problems.items():  # a field without a slot of its own: under the button
            placed.setdefault(field if field in SLOTS else forms.GENERAL, []).extend(messages)
        st.session_state[ERRORS] = {"values": current_values(), "errors": placed}
        st.rerun()
    st.session_state.pop(ERRORS, None)
    with shell.user_errors("Could not start training: "):
        started = settings.registry().start(
            config, settings.runs_dir(), run_id, deploy=bool(deploy),
            model_name=(model_name or None) if deploy else None,
            models_dir=settings.models_dir(), cache_dir=settings.data_cache(), tensorboard=bool(tensorboard),
        )
        if name.strip() or tags.strip() or note.strip():
            try:
                write_annotations(settings.open_run(started), name=name, tags=tags, note=note)
            except RunDirError as exc:
                st.warning(plain(f"The run started, but its name/tags/note were not saved: {exc}"))
        widgets.update_draft("train", train_run_name="", train_tags="", train_note="")  # one run, one name
        shell.go_to("live", started)


if start:
    check_and_start()
