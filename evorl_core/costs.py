"""Trading costs: the per-side cost model and its presets (formulas in docs/accounting.md).

A `CostModel` charges `c_buy` per unit of exposure bought and `c_sell` per unit of exposure sold
(fractions of the traded value), plus a flat `sell_day_charge_rupees` on every day with a sell (a
depository charge per scrip per sell day). The three accounting implementations (the JAX env, the
NumPy reference env and the NumPy backtest) each apply it literally; this module only holds the
numbers and where they come from.

Presets (`TrainConfig.cost_model`):

- `flat`: `fee_bps + slippage_bps` on each side, no flat charge (the model of earlier versions).
- `nse-delivery`: NSE cash delivery, every statutory item a named parameter at the rates brokers
  publish since `NSE_RATES_AS_OF`, plus brokerage (default 0, a discount delivery broker) and
  slippage on each side, plus a depository charge with GST on each sell day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evorl_core.config import COST_MODELS, TrainConfig

# NSE cash delivery, statutory rates as published by brokers for trades since this date.
NSE_RATES_AS_OF = "2024-10-01"
STT_DELIVERY = 0.001  # securities transaction tax, 0.1% of the traded value, on buys and on sells
NSE_TRANSACTION_CHARGE = 0.0000297  # NSE transaction charges, 0.00297%, both sides
STAMP_DUTY_BUY = 0.00015  # stamp duty, 0.015%, buys only
SEBI_FEE = 10.0 / 1e7  # SEBI turnover fee, Rs 10 per crore (1e7 rupees), both sides
GST_RATE = 0.18  # GST on brokerage + transaction charges + SEBI fee (and on the depository charge)
DP_CHARGE_RUPEES = 13.5  # depository (CDSL) charge per scrip per sell day, before GST; brokers differ


@dataclass(frozen=True)
class CostItem:
    """One line of a cost breakdown: fractions of the traded value per side, rupees per sell day."""

    name: str
    buy: float = 0.0
    sell: float = 0.0
    per_sell_day_rupees: float = 0.0


@dataclass(frozen=True)
class CostModel:
    """Per-side costs. `c_buy` / `c_sell`: fraction of the value bought / sold; a sell day (the
    exposure falls, p_new < p_prev) also pays `sell_day_charge_rupees`. `items` is the breakdown for
    display; its columns add up to the three numbers."""

    c_buy: float
    c_sell: float
    sell_day_charge_rupees: float = 0.0
    name: str = "flat"
    items: tuple[CostItem, ...] = ()
    rates_as_of: str | None = None

    def __post_init__(self) -> None:
        for field, value in (("c_buy", self.c_buy), ("c_sell", self.c_sell)):
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"{field}: must lie in [0, 1) (got {value})")
        if not (math.isfinite(self.sell_day_charge_rupees) and self.sell_day_charge_rupees >= 0):
            raise ValueError(f"sell_day_charge_rupees: must be >= 0 (got {self.sell_day_charge_rupees})")

    @property
    def is_zero(self) -> bool:
        return self.c_buy == 0.0 and self.c_sell == 0.0 and self.sell_day_charge_rupees == 0.0

    def charges(self, bought_rupees: float, sold_rupees: float) -> dict[str, float]:
        """Rupees per item for one day that buys `bought_rupees` and sells `sold_rupees` of stock
        (the flat charge is due when `sold_rupees > 0`), plus `total`."""
        sell_day = sold_rupees > 0
        out = {item.name: item.buy * bought_rupees + item.sell * sold_rupees
               + (item.per_sell_day_rupees if sell_day else 0.0) for item in self.items}
        out["total"] = (self.c_buy * bought_rupees + self.c_sell * sold_rupees
                        + (self.sell_day_charge_rupees if sell_day else 0.0))
        return out

    def breakdown(self) -> list[dict[str, float | str]]:
        """Rows for display: item, buy bps, sell bps, rupees per sell day; the last row is the total."""
        rows: list[dict[str, float | str]] = [
            {"item": i.name, "buy_bps": i.buy * 1e4, "sell_bps": i.sell * 1e4,
             "per_sell_day_rupees": i.per_sell_day_rupees} for i in self.items]
        rows.append({"item": "total", "buy_bps": self.c_buy * 1e4, "sell_bps": self.c_sell * 1e4,
                     "per_sell_day_rupees": self.sell_day_charge_rupees})
        return rows

    def describe(self) -> str:
        """One line: the model, its per-side rates (and their parts: a flat model's fee and slippage,
        the slippage within the statutory rates) and the flat charge."""
        text = f"{self.name}: buy {self.c_buy * 1e4:.2f} bps, sell {self.c_sell * 1e4:.2f} bps"
        slippage = next((i for i in self.items if i.name == "slippage"), None)
        if slippage is not None and self.name == "flat":
            fee = next((i for i in self.items if i.name == "fee"), None)
            text += (f" (fee {fee.buy * 1e4 if fee else 0.0:.2f} + slippage {slippage.buy * 1e4:.2f} bps per side)")
        if self.sell_day_charge_rupees:
            text += f" + Rs {self.sell_day_charge_rupees:.2f} per sell day"
        notes = [f"statutory rates as of {self.rates_as_of}"] if self.rates_as_of else []
        if slippage is not None and self.name != "flat":
            notes.append(f"slippage {slippage.buy * 1e4:.2f} bps per side included")
        if notes:
            text += f" ({'; '.join(notes)})"
        return text


def _model(name: str, items: list[CostItem], rates_as_of: str | None = None) -> CostModel:
    kept = tuple(i for i in items if i.buy or i.sell or i.per_sell_day_rupees)
    return CostModel(
        c_buy=math.fsum(i.buy for i in kept),
        c_sell=math.fsum(i.sell for i in kept),
        sell_day_charge_rupees=math.fsum(i.per_sell_day_rupees for i in kept),
        name=name, items=kept, rates_as_of=rates_as_of,
    )


def flat(fee_bps: float, slippage_bps: float = 0.0) -> CostModel:
    """`fee_bps + slippage_bps` per unit of exposure traded, the same on both sides."""
    return _model("flat", [CostItem("fee", fee_bps / 1e4, fee_bps / 1e4),
                           CostItem("slippage", slippage_bps / 1e4, slippage_bps / 1e4)])


def zero() -> CostModel:
    """No costs at all (gross returns)."""
    return CostModel(0.0, 0.0, 0.0, name="zero")


def nse_delivery(
    *,
    brokerage_bps: float = 0.0,
    slippage_bps: float = 5.0,
    dp_charge: float = DP_CHARGE_RUPEES,
    stt: float = STT_DELIVERY,
    transaction_charge: float = NSE_TRANSACTION_CHARGE,
    stamp_duty: float = STAMP_DUTY_BUY,
    sebi_fee: float = SEBI_FEE,
    gst_rate: float = GST_RATE,
    rates_as_of: str = NSE_RATES_AS_OF,
) -> CostModel:
    """NSE cash delivery. Each rate is a fraction of the traded value (brokerage and slippage in
    bps); `dp_charge` is rupees per sell day before GST. GST is charged on brokerage + transaction
    charges + SEBI fee, and on the depository charge."""
    brokerage = brokerage_bps / 1e4
    gst_side = gst_rate * (brokerage + transaction_charge + sebi_fee)
    return _model("nse-delivery", [
        CostItem("brokerage", brokerage, brokerage),
        CostItem("STT", stt, stt),
        CostItem("exchange transaction charges", transaction_charge, transaction_charge),
        CostItem("stamp duty", stamp_duty, 0.0),
        CostItem("SEBI fee", sebi_fee, sebi_fee),
        CostItem("GST", gst_side, gst_side, gst_rate * dp_charge),
        CostItem("depository charge", 0.0, 0.0, dp_charge),
        CostItem("slippage", slippage_bps / 1e4, slippage_bps / 1e4),
    ], rates_as_of)


PRESETS = {"nse-delivery": nse_delivery, "flat": flat}
assert tuple(PRESETS) == COST_MODELS  # config validates the names; this module builds them


def cost_model(config: TrainConfig) -> CostModel:
    """The cost model a config asks for (`cost_model`, `fee_bps`, `slippage_bps`, `brokerage_bps`,
    `dp_charge`)."""
    if config.cost_model == "flat":
        return flat(config.fee_bps, config.slippage_bps)
    if config.cost_model == "nse-delivery":
        return nse_delivery(brokerage_bps=config.brokerage_bps, slippage_bps=config.slippage_bps,
                            dp_charge=config.dp_charge)
    raise ValueError(f"cost_model: must be one of {', '.join(COST_MODELS)} (got {config.cost_model!r})")


def as_cost_model(costs: CostModel | float) -> CostModel:
    """A CostModel as is; a number is a flat cost per unit of exposure on each side (no flat charge)."""
    if isinstance(costs, CostModel):
        return costs
    value = float(costs)
    return CostModel(value, value, 0.0, name="flat")
