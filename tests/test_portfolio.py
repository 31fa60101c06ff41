"""Portfolio mode: the JAX account against the NumPy float64 reference, the accounting identities,
N = 1 against single-asset accounting, and the universe panel (ragged listings, bad files)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_csv import write_csv, write_csv_dir

from evorl_core.config import make_config
from evorl_core.costs import CostModel, flat, nse_delivery
from evorl_core.data.panel import ALL, SURVIVORSHIP_NOTE, build_panel, list_symbols, load_panel, tradable_mask
from evorl_core.data.synthetic import factor_universe_frames, universe_symbols
from evorl_core.data.validate import DataError
from evorl_core.modes.portfolio import accounting
from evorl_core.modes.portfolio.env import PortfolioParams, masked_softmax, rebalance, transition
from evorl_core.modes.single.accounting import equity_curve

CAPITAL = 1_000_000.0


def _params(costs: CostModel, band: float, execution: str, n: int, initial: float = CAPITAL) -> PortfolioParams:
    return PortfolioParams(c_buy=jnp.float64(costs.c_buy), c_sell=jnp.float64(costs.c_sell),
                           sell_charge=jnp.float64(costs.sell_day_charge_rupees / initial), band=jnp.float64(band),
                           execution=execution, window=1, episode_len=10_000, num_assets=n)


def _jax_path(open_, close, tradable, targets, params: PortfolioParams):
    """Equity (relative) and weights at each close of the JAX account, driven by the same targets."""
    n, horizon = close.shape
    weights = jnp.zeros((n + 1,), jnp.float64).at[-1].set(1.0)
    equity = jnp.float64(1.0)
    equities, all_weights, turnovers = [1.0], [np.asarray(weights)], []
    step = jax.jit(rebalance, static_argnames=())
    for k in range(horizon - 1):
        growth, weights, turnover, _ = step(weights, jnp.asarray(targets[k]), jnp.asarray(tradable[:, k]),
                                            jnp.asarray(open_[:, k + 1]), jnp.asarray(close[:, k]),
                                            jnp.asarray(close[:, k + 1]), params, equity)
        equity = equity * jnp.exp(growth)
        equities.append(float(equity))
        all_weights.append(np.asarray(weights))
        turnovers.append(float(turnover))
    return np.array(equities), np.array(all_weights), np.array(turnovers)


@st.composite
def _accounts(draw):
    n = draw(st.integers(1, 6))
    horizon = draw(st.integers(3, 14))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(0.03 * rng.standard_normal((n, horizon)), axis=1))
    open_ = close * np.exp(0.01 * rng.standard_normal((n, horizon)))
    # listings: each asset tradable on a random contiguous span of days, plus random suspensions
    tradable = np.zeros((n, horizon), bool)
    for i in range(n):
        a = int(rng.integers(0, horizon))
        b = int(rng.integers(a, horizon + 1))
        tradable[i, a:b] = True
    tradable &= rng.random((n, horizon)) > 0.15
    raw = rng.gamma(draw(st.sampled_from([0.3, 1.0, 5.0])), size=(horizon, n + 1))
    raw[:, :-1] *= tradable.T
    raw[rng.random(horizon) < 0.2, :-1] = 0.0  # some days all cash
    targets = raw / raw.sum(axis=1, keepdims=True)
    costs = draw(st.sampled_from([flat(0.0), flat(10.0, 5.0), flat(80.0), nse_delivery()]))
    band = draw(st.sampled_from([0.0, 0.002, 0.05]))
    execution = draw(st.sampled_from(["next_open", "close"]))
    return open_, close, tradable, targets, costs, band, execution


@settings(max_examples=60, deadline=None)
@given(_accounts())
def test_jax_account_matches_numpy_reference(case):
    """The env's `rebalance` (float64 here) and the rupee reference agree to 1e-6 on random weights,
    prices, listings, costs, bands and execution modes."""
    open_, close, tradable, targets, costs, band, execution = case
    n = close.shape[0]
    ref = accounting.simulate(open_, close, tradable, targets, costs, band=band, execution=execution,
                              initial=CAPITAL)
    with jax.enable_x64(True):
        equity, weights, turnover = _jax_path(open_, close, tradable, targets, _params(costs, band, execution, n))
    np.testing.assert_allclose(equity * CAPITAL, ref.equity, rtol=1e-6)
    np.testing.assert_allclose(weights, ref.weights, atol=1e-6)
    np.testing.assert_allclose(turnover, ref.traded[:-1], atol=1e-6)
    # weights are a point of the simplex; nothing is held where the asset may not be held
    assert np.all(ref.weights >= -1e-12)
    np.testing.assert_allclose(ref.weights.sum(axis=1), 1.0, atol=1e-12)
    held = ref.held[:-1, :-1]
    assert np.all(held[~tradable.T[:-1]] == 0.0)


@settings(max_examples=40, deadline=None)
@given(_accounts())
def test_reference_accounting_identities(case):
    """Equity from fills: E_T - E_0 = sum of every asset's price P&L - sum of costs paid; costs
    only ever take away (cost drag >= 0 against the same targets at zero cost)."""
    open_, close, tradable, targets, costs, band, execution = case
    path = accounting.simulate(open_, close, tradable, targets, costs, band=band, execution=execution,
                               initial=CAPITAL)
    assert path.equity[-1] - path.equity[0] == pytest.approx(path.pnl.sum() - path.costs.sum(), rel=1e-9, abs=1e-6)
    assert np.all(path.costs >= 0.0)
    assert np.all(path.costs[path.traded == 0.0] == 0.0)
    gross = accounting.simulate(open_, close, tradable, targets, flat(0.0), band=band, execution=execution,
                                initial=CAPITAL)
    assert gross.costs.sum() == 0.0
    if band == 0.0:  # without a band the same trades are made, so costs can only lower equity
        assert path.equity[-1] <= gross.equity[-1] * (1 + 1e-12)


def test_costs_follow_the_cost_model_literally():
    """One asset, one buy then one sale: the fills pay c_buy and c_sell on the traded rupees and
    one flat sell-day charge, computed here by hand."""
    costs = nse_delivery()
    open_ = np.array([[100.0, 100.0, 110.0, 110.0]])
    close = np.array([[100.0, 100.0, 110.0, 110.0]])
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    path = accounting.simulate(open_, close, np.ones((1, 4), bool), targets, costs, initial=CAPITAL)
    invested = CAPITAL * (1 - costs.c_buy)
    value = invested * 1.1
    expected = value - value * costs.c_sell - costs.sell_day_charge_rupees
    assert path.costs[0] == pytest.approx(CAPITAL * costs.c_buy)
    assert path.costs[2] == pytest.approx(value * costs.c_sell + costs.sell_day_charge_rupees)
    assert path.sold_scrips.tolist() == [0, 0, 1, 0]
    assert path.equity[-1] == pytest.approx(expected)
    assert path.pnl[0] == pytest.approx(invested * 0.1)


def test_band_leaves_small_trades_undone():
    """A drifted weight within the band of its target is not traded: no cost, the weight drifts on."""
    open_ = close = np.array([[100.0, 101.0, 102.0, 103.0], [100.0, 99.0, 98.0, 97.0]])
    targets = np.tile([0.5, 0.5, 0.0], (4, 1))
    wide = accounting.simulate(open_, close, np.ones((2, 4), bool), targets, flat(10.0), band=0.05,
                               initial=CAPITAL)
    tight = accounting.simulate(open_, close, np.ones((2, 4), bool), targets, flat(10.0), band=0.0,
                                initial=CAPITAL)
    assert wide.traded[1:].sum() == 0.0 and wide.costs[1:].sum() == 0.0
    assert tight.traded[1:-1].min() > 0.0
    assert wide.weights[-1, 0] > 0.5 > wide.weights[-1, 1]


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_one_asset_all_or_nothing_is_single_asset_accounting(execution):
    """N = 1 with weights in {0, 1} and no band reproduces single-asset accounting exactly (with
    fractional weights they differ by design: single-asset mode holds a constant exposure, an
    account's weight drifts with the price)."""
    rng = np.random.default_rng(3)
    days = 60
    close = 100 * np.exp(np.cumsum(0.02 * rng.standard_normal(days)))
    open_ = close * np.exp(0.005 * rng.standard_normal(days))
    positions = (rng.random(days) > 0.5).astype(float)
    costs = nse_delivery()
    single = equity_curve(open_, close, positions, costs, execution, CAPITAL)
    targets = np.stack([positions, 1 - positions], axis=1)
    path = accounting.simulate(open_[None], close[None], np.ones((1, days), bool), targets, costs,
                               execution=execution, initial=CAPITAL)
    np.testing.assert_allclose(path.equity, single, rtol=1e-12)


def test_transition_targets_are_the_masked_softmax_of_the_scores():
    """The env turns N + 1 scores into weights: exactly 0 on an asset it may not hold, the same
    weights as the NumPy twin elsewhere, and the account then moves like the reference."""
    from evorl_core.data.arrays import PanelData, day_major
    from evorl_core.modes.portfolio.env import PortfolioState

    n, horizon = 4, 6
    rng = np.random.default_rng(0)
    close = (100 * np.exp(np.cumsum(0.02 * rng.standard_normal((n, horizon)), axis=1))).astype(np.float32)
    open_ = (close * 1.003).astype(np.float32)
    tradable = np.ones((n, horizon), bool)
    tradable[2, :] = False
    data = PanelData(open=jnp.asarray(open_), close=jnp.asarray(close),
                     features=jnp.zeros((n, horizon, 1)), present=jnp.ones((n, horizon), bool),
                     tradable=jnp.asarray(tradable), length=jnp.int32(horizon), first_index=jnp.int32(0),
                     train_end=jnp.int32(horizon), val_start=jnp.int32(horizon), test_start=jnp.int32(horizon),
                     by_day=day_major(open_, close, tradable))
    costs = flat(10.0)
    params = PortfolioParams(c_buy=jnp.float32(costs.c_buy), c_sell=jnp.float32(costs.c_sell),
                             sell_charge=jnp.float32(0.0), band=jnp.float32(0.0), window=1, num_assets=n)
    scores = rng.standard_normal(n + 1).astype(np.float32)
    weights = np.asarray(masked_softmax(jnp.asarray(scores), jnp.asarray(tradable[:, 1])))
    assert weights[2] == 0.0
    np.testing.assert_allclose(weights, accounting.masked_softmax(scores, tradable[:, 1]), rtol=1e-5)
    state = PortfolioState(t=jnp.int32(1), weights=jnp.zeros(n + 1).at[-1].set(1.0), equity=jnp.float32(1.0),
                           steps=jnp.int32(0), episode_return=jnp.float32(0.0))
    nxt, reward, _, info = transition(state, jnp.asarray(scores), params, data)
    targets = np.tile(weights, (2, 1))
    ref = accounting.simulate(open_[:, 1:3], close[:, 1:3], tradable[:, 1:3], targets, costs)
    assert float(reward) == pytest.approx(np.log(ref.equity[1]), abs=1e-6)
    np.testing.assert_allclose(np.asarray(nxt.weights), ref.weights[1], atol=1e-6)
    assert float(info["turnover"]) == pytest.approx(ref.traded[0], abs=1e-6)


# -- the universe panel ---------------------------------------------------------------------------
def test_tradable_mask_needs_a_window_and_the_next_fills():
    present = np.ones((1, 20), bool)
    present[0, 12] = False  # a suspension
    mask = tradable_mask(present, window=3, execution="next_open")
    # day t needs bars t-3 .. t+2
    assert not mask[0, :3].any()
    assert mask[0, 3:10].all()
    assert not mask[0, 10:16].any()
    assert mask[0, 16:].all()  # days past the end count as bars of a symbol still trading


def test_factor_universe_is_realistic_and_ragged():
    symbols = universe_symbols(40)
    frames = factor_universe_frames(symbols, n_days=1500, seed=0)
    starts = {s: f.index[0] for s, f in frames.items()}
    ends = {s: f.index[-1] for s, f in frames.items()}
    assert len(set(starts.values())) > 1, "some names must list late"
    assert len(set(ends.values())) > 1, "some names must end early"
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    r = np.log(close).diff()
    vols = r.std() * np.sqrt(252)
    assert vols.between(0.15, 0.5).all(), vols.describe()
    corr = r.corr().to_numpy()[np.triu_indices(40, 1)]
    assert 0.05 < np.nanmedian(corr) < 0.4
    # the market factor is common: an equal-weight index is less volatile than its members
    assert r.mean(axis=1).std() * np.sqrt(252) < vols.median()


def _ragged_dir(tmp_path, n=6, days=500):
    symbols = [f"S{i}" for i in range(n)]
    frames = factor_universe_frames(symbols, n_days=days, seed=1, ragged=False)
    frames["S1"] = frames["S1"].iloc[120:]  # listed late
    frames["S2"] = frames["S2"].iloc[:400]  # delisted
    write_csv_dir(tmp_path / "csv", frames)
    bad = frames["S3"].copy()
    bad.iloc[10, bad.columns.get_loc("close")] = -5.0
    write_csv(tmp_path / "csv" / "BAD.csv", bad)
    return frames


def test_symbols_all_leaves_out_a_bad_file_and_masks_ragged_listings(tmp_path):
    frames = _ragged_dir(tmp_path)
    source = f"csv:{tmp_path / 'csv'}"
    assert set(list_symbols(source, 0)) == {"S0", "S1", "S2", "S3", "S4", "S5", "BAD"}
    config = make_config("quick", mode="portfolio", symbols=(ALL,), data=source, test_days=60, val_days=40)
    market = load_panel(config, cache_dir=tmp_path / "cache")
    assert "BAD" not in market.symbols and set(market.symbols) == set(frames)
    assert "BAD" in market.skipped and "close" in market.skipped["BAD"].lower()
    universe = market.info["universe"]
    assert universe["requested"] == ALL and universe["skipped"].keys() == {"BAD"}
    assert universe["note"] == SURVIVORSHIP_NOTE
    assert any("BAD" in w for w in market.info["warnings"])
    cal = market.calendar
    assert len(cal) == 500 and market.info["calendar"]["rows"] == 500
    i1, i2 = market.symbols.index("S1"), market.symbols.index("S2")
    present = np.asarray(market.data.present)
    tradable = np.asarray(market.data.tradable)
    assert not present[i1, :120].any() and present[i1, 120:].all()
    assert not tradable[i1, :120 + config.window].any()
    assert not present[i2, 400:].any() and not tradable[i2, 398:].any()
    # no price is invented: the placeholder never differs from 1.0 where there is no bar
    assert np.all(np.asarray(market.data.close)[i1, :120] == 1.0)
    assert market.split_dates(i1)["symbol_first"] == str(frames["S1"].index[0].date())
    assert market.split_dates(i2)["symbol_last"] == str(frames["S2"].index[-1].date())


def test_an_explicit_list_with_a_bad_file_is_an_error(tmp_path):
    _ragged_dir(tmp_path)
    config = make_config("quick", mode="portfolio", symbols=("S0", "BAD"), data=f"csv:{tmp_path / 'csv'}",
                         test_days=60, val_days=40)
    with pytest.raises(DataError, match="BAD"):
        load_panel(config, cache_dir=tmp_path / "cache")


def test_all_needs_a_source_with_a_list():
    with pytest.raises(DataError, match="--symbols all"):
        list_symbols("yahoo", 10)


def test_panel_features_are_normalised_on_pooled_training_rows():
    frames = factor_universe_frames(universe_symbols(5), n_days=400, seed=2, ragged=False)
    market = build_panel(frames, window=8, test_days=50, val_days=30)
    features = np.asarray(market.data.features)
    train_end = int(market.data.train_end)
    pooled = features[:, 1:train_end].reshape(-1, features.shape[-1])
    assert np.abs(pooled.mean(axis=0)).max() < 0.05
    # the same statistics for every symbol (one model reads every universe the same way)
    assert np.all(market.norm_mean == market.norm_mean[0])
    again = build_panel(frames, window=8, test_days=50, val_days=30,
                        norm=(market.norm_mean, market.norm_std))
    np.testing.assert_allclose(np.asarray(again.data.features), features)


def test_config_validation_of_portfolio_fields():
    with pytest.raises(ValueError, match="all"):
        make_config("quick", symbols=(ALL,))  # 'all' needs portfolio mode
    with pytest.raises(ValueError, match="rebalance_band"):
        make_config("quick", mode="portfolio", rebalance_band=-0.1)
    config = make_config("production", mode="portfolio")
    assert dataclasses.asdict(config)["mode"] == "portfolio"
