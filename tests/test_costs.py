"""The cost models against hand computation (a worked NSE delivery example) and the config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evorl_core import costs
from evorl_core.config import COST_MODELS, ConfigError, TrainConfig, make_config
from evorl_core.modes.single import accounting as backtest


def test_worked_nse_delivery_example_by_hand():
    """Buy Rs 10,00,000 of a stock, then sell Rs 10,00,000 (rates as published since 2024-10-01,
    brokerage 0, slippage 5 bps, depository charge Rs 13.5 + GST)."""
    model = costs.nse_delivery(brokerage_bps=0.0, slippage_bps=5.0, dp_charge=13.5)
    assert model.rates_as_of == "2024-10-01"
    value = 1_000_000.0
    # Buy: STT 0.1% = 1000; NSE transaction charges 0.00297% = 29.70; stamp duty 0.015% = 150;
    # SEBI fee Rs 10 per crore = 1.00; GST 18% of (0 + 29.70 + 1.00) = 5.526; slippage 5 bps = 500.
    buy = model.charges(value, 0.0)
    assert buy["STT"] == pytest.approx(1000.0)
    assert buy["exchange transaction charges"] == pytest.approx(29.70)
    assert buy["stamp duty"] == pytest.approx(150.0)
    assert buy["SEBI fee"] == pytest.approx(1.0)
    assert buy["GST"] == pytest.approx(5.526)
    assert buy["depository charge"] == 0.0
    assert buy["slippage"] == pytest.approx(500.0)
    assert buy["total"] == pytest.approx(1000 + 29.70 + 150 + 1.00 + 5.526 + 500)  # 1686.226
    # Sell: STT 1000; transaction charges 29.70; no stamp duty; SEBI 1.00; GST 5.526 on those plus
    # 18% of the Rs 13.5 depository charge (2.43); depository charge 13.5; slippage 500.
    sell = model.charges(0.0, value)
    assert sell["stamp duty"] == 0.0
    assert sell["GST"] == pytest.approx(5.526 + 2.43)
    assert sell["depository charge"] == pytest.approx(13.5)
    assert sell["total"] == pytest.approx(1000 + 29.70 + 1.00 + 5.526 + 2.43 + 13.5 + 500)  # 1552.156
    # Statutory charges alone of the round trip: 2238.382 rupees = 22.4 bps of the value.
    statutory = buy["total"] + sell["total"] - buy["slippage"] - sell["slippage"]
    assert statutory == pytest.approx(2238.382)
    # The per-side rates the accounting uses.
    assert model.c_buy == pytest.approx(0.001686226, rel=1e-12)
    assert model.c_sell == pytest.approx(0.001536226, rel=1e-12)
    assert model.sell_day_charge_rupees == pytest.approx(15.93, rel=1e-12)
    # Items add up to the totals.
    rows = model.breakdown()
    assert rows[-1]["item"] == "total"
    assert sum(r["buy_bps"] for r in rows[:-1]) == pytest.approx(rows[-1]["buy_bps"])
    assert sum(r["sell_bps"] for r in rows[:-1]) == pytest.approx(rows[-1]["sell_bps"])
    assert sum(r["per_sell_day_rupees"] for r in rows[:-1]) == pytest.approx(15.93)
    assert "buy 16.86 bps, sell 15.36 bps + Rs 15.93 per sell day" in model.describe()


def test_worked_example_through_the_backtest():
    """Rs 10,00,000 bought at the close (close execution) and sold at the same price a day later:
    the account pays the buy charges on 10,00,000 and the sell charges on what is left."""
    capital = 1_000_000.0
    model = costs.nse_delivery()
    equity = backtest.equity_curve([100.0] * 3, [100.0] * 3, [1.0, 0.0, 0.0], model, "close", capital)
    after_buy = capital - 1686.226  # the position is now worth 998,313.774
    sold = after_buy
    after_sell = after_buy - (model.c_sell * sold + 15.93)
    np.testing.assert_allclose(equity, [capital, after_buy, after_sell], rtol=1e-12)
    assert capital - after_sell == pytest.approx(1686.226 + 0.001536226 * 998_313.774 + 15.93)


def test_brokerage_and_gst():
    model = costs.nse_delivery(brokerage_bps=3.0, slippage_bps=0.0, dp_charge=0.0)
    # brokerage 300 on 10 lakh, GST 18% of (300 + 29.70 + 1.00) = 59.526
    buy = model.charges(1e6, 0.0)
    assert buy["brokerage"] == pytest.approx(300.0) and buy["GST"] == pytest.approx(59.526)
    assert model.sell_day_charge_rupees == 0.0


def test_flat_model_is_the_old_scalar_cost():
    model = costs.flat(5.0, 5.0)
    assert model.c_buy == model.c_sell == pytest.approx(0.001) and model.sell_day_charge_rupees == 0.0
    assert costs.as_cost_model(0.001) == costs.CostModel(0.001, 0.001, 0.0, name="flat")
    assert costs.zero().is_zero and not model.is_zero
    with pytest.raises(ValueError, match="c_buy"):
        costs.CostModel(1.5, 0.0)
    with pytest.raises(ValueError, match="sell_day_charge"):
        costs.CostModel(0.0, 0.0, -1.0)


def test_cost_model_from_config():
    assert tuple(costs.PRESETS) == COST_MODELS
    default = TrainConfig()
    assert default.cost_model == "nse-delivery"
    assert costs.cost_model(default) == costs.nse_delivery(slippage_bps=5.0, dp_charge=13.5)
    custom = TrainConfig(brokerage_bps=2.0, slippage_bps=1.0, dp_charge=15.0)
    assert costs.cost_model(custom) == costs.nse_delivery(brokerage_bps=2.0, slippage_bps=1.0, dp_charge=15.0)
    flat = TrainConfig(cost_model="flat", fee_bps=3.0, slippage_bps=2.0)
    model = costs.cost_model(flat)
    assert (model.c_buy, model.c_sell, model.sell_day_charge_rupees) == pytest.approx((5e-4, 5e-4, 0.0))


@pytest.mark.parametrize("field,value", [
    ("cost_model", "zerodha"), ("brokerage_bps", -1.0), ("brokerage_bps", 5000.0), ("dp_charge", -2.0),
    ("dp_charge", float("nan")), ("dp_charge", 2e6), ("slippage_bps", float("inf")), ("price_adjustment", "splits"),
])
def test_new_fields_are_validated_naming_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        make_config("quick", **{field: value})
    assert str(err.value).startswith(f"{field}:")


def test_old_run_configs_keep_their_flat_costs():
    """A config.json written before cost models existed was trained with flat fee + slippage."""
    old = make_config("quick").to_dict()
    for key in ("cost_model", "brokerage_bps", "dp_charge", "price_adjustment"):
        del old[key]
    config = TrainConfig.from_dict(old)
    assert config.cost_model == "flat" and config.price_adjustment == "none"
    assert TrainConfig.from_dict(make_config("quick").to_dict()).cost_model == "nse-delivery"
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= {"cost_model", "brokerage_bps", "dp_charge",
                                                                 "price_adjustment", "fee_bps", "slippage_bps"}


def test_the_cost_line_shows_the_parts_of_each_rate():
    from evorl_core.costs import flat, nse_delivery

    assert flat(10.0, 5.0).describe() == "flat: buy 15.00 bps, sell 15.00 bps (fee 10.00 + slippage 5.00 bps per side)"
    assert flat(10.0, 0.0).describe() == "flat: buy 10.00 bps, sell 10.00 bps"
    assert nse_delivery(slippage_bps=5.0).describe().endswith(
        "(statutory rates as of 2024-10-01; slippage 5.00 bps per side included)")
