"""Training configuration: one flat dataclass, presets, validation.

The config is what `config.json` in a run directory holds (plus provenance added by the loop),
what the CLI flags and the dashboard form fill in, and what a deployed bundle records.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_SYMBOLS = ("BPCL", "HDFCLIFE", "TATASTEEL")
DEFAULT_DATA = "auto"  # the data source when none is given: CLI, Train and Data pages alike
EXECUTION_MODES = ("next_open", "close")
# Cost models (evorl_core/costs.py builds them; docs/accounting.md states the formulas).
COST_MODELS = ("nse-delivery", "flat")
# Price series: the traded close, or total-return prices from an `Adj Close` column (docs/data.md).
PRICE_ADJUSTMENTS = ("none", "dividends")
# Trading modes (evorl_core/modes): one symbol per env, or one account over a universe with cash.
TRADING_MODES = ("single", "portfolio")
ALL_SYMBOLS = "all"  # `--symbols all`: every symbol the data source holds (portfolio mode)
MAX_UNIVERSE = 2000
MAX_BROKERAGE_BPS = 1000.0  # 10% per side: beyond any delivery brokerage, and keeps c_buy, c_sell < 1
MAX_SLIPPAGE_BPS = 5000.0
INIT_SCHEMES = ("normal", "orthogonal")
# Network arithmetic (docs/internals.md): fp32; tf32 (float32, TensorFloat-32 matmuls on NVIDIA, a
# no-op on CPU); bf16 matmuls and activations with float32 parameters, optimiser state and losses;
# auto = the measured-faster choice of the backend (agents/precision.py: fp32 until GPU figures say).
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
# Each multiplicative equity factor (overnight move, fee, intraday move) is floored at this value:
# with short positions (or a cost near 1) a factor can reach zero or below, where the log reward is
# undefined; equity then drops to a millionth, which reads as "wiped out" (docs/accounting.md).
MIN_GROWTH = 1e-6
# Seeds are unsigned 32-bit (JAX PRNG keys, NumPy generators); capital large enough for any account
# and small enough that equity stays finite in float32 accounting.
SEED_MAX = 2**32 - 1
MAX_INITIAL_CAPITAL = 1e15
TUPLE_FIELDS = ("symbols", "positions", "hidden", "evolve")


@dataclass(frozen=True)
class Range:
    """One dimension of the PBT search space. `scale`: how it is sampled and perturbed:
    "log" (x0.8 / x1.25 perturbations, log-uniform resampling), "linear", or "discount" for values
    near 1 (gamma, lambda), perturbed as g = -log(1 - x) so they never leave (0, 1)."""

    low: float
    high: float
    scale: str = "linear"
    doc: str = ""


# The one declared search space: the CLI flags, the Train form and docs/evolution.md read it.
SEARCH_SPACE: dict[str, Range] = {
    "lr": Range(1e-5, 3e-3, "log", "learning rate (Adam step size)"),
    "ent_coef": Range(1e-4, 0.1, "log", "entropy bonus coefficient"),
    "clip_eps": Range(0.05, 0.4, "linear", "PPO clip range of the probability ratio"),
    "vf_coef": Range(0.1, 1.0, "linear", "value-loss coefficient"),
    "gamma": Range(0.9, 0.999, "discount", "discount factor"),
    "gae_lambda": Range(0.8, 0.99, "discount", "GAE lambda"),
}


def parse_space(text: str, field_name: str, base: dict[str, Range] | None = None) -> dict[str, Range]:
    """'lr=1e-5:1e-2,ent_coef=0:0.05' -> ranges replacing those of `base` (default SEARCH_SPACE;
    others unchanged)."""
    space = dict(base or SEARCH_SPACE)
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, sep, bounds = item.partition("=")
        low, sep2, high = bounds.partition(":")
        if not sep or not sep2 or name.strip() not in SEARCH_SPACE:
            raise ConfigError(f"{field_name}: {item!r} must look like NAME=LOW:HIGH with NAME one of "
                              f"{', '.join(SEARCH_SPACE)}")
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise ConfigError(f"{field_name}: {item!r}: LOW and HIGH must be numbers") from None
        declared = SEARCH_SPACE[name.strip()]
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ConfigError(f"{field_name}: {item!r}: need finite LOW <= HIGH")
        if declared.scale == "log" and lo <= 0:
            raise ConfigError(f"{field_name}: {item!r}: {name.strip()} is searched on a log scale; LOW must be > 0")
        if declared.scale == "discount" and not (0 < lo and hi < 1):
            raise ConfigError(f"{field_name}: {item!r}: {name.strip()} must lie strictly between 0 and 1")
        space[name.strip()] = Range(lo, hi, declared.scale, declared.doc)
    return space


# Config keys of earlier versions -> today's field names (old run directories keep loading).
_RENAMED = {"init": "init_scheme"}


class ConfigError(ValueError):
    """A configuration value a user chose is invalid; the message names the field."""


# The feature registry (data/feature_registry.py, a higher layer) registers its spec check here on
# import; `validation_errors` runs it on `features`. Every reader of `features` imports the registry.
_FEATURES_CHECKS: list[Callable[[str], str | None]] = []


def register_features_check(check: Callable[[str], str | None]) -> None:
    """`check(spec)` returns a message naming `features` when the spec is invalid, else None."""
    _FEATURES_CHECKS.append(check)


@dataclass(frozen=True)
class TrainConfig:
    # what to trade
    mode: str = "single"  # single (one symbol per env) | portfolio (one account over the universe + cash)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    universe_size: int = 50  # portfolio mode, --symbols all with synthetic data: names in the universe
    # portfolio mode: a trade smaller than this fraction of equity is not made (the weight drifts),
    # so a policy is not charged a flat per-scrip fee for dust; 0 = trade every difference
    rebalance_band: float = 0.002
    data: str = DEFAULT_DATA  # auto | synthetic | yahoo | csv:DIR
    price_adjustment: str = "none"  # none (traded close) | dividends (total-return prices from Adj Close)
    test_days: int = 60
    val_days: int = 60  # validation days before the test days: what any selection may look at
    embargo_days: int | None = None  # unused days before validation and before test; None = window
    window: int = 32  # days of causal features in one observation
    # the feature set (data/feature_registry.py, docs/features.md): a set name or NAME,NAME(k),...
    features: str = "default"
    # market conventions (docs/accounting.md): target exposures, costs, execution
    positions: tuple[float, ...] = (0.0, 0.5, 1.0)
    cost_model: str = "nse-delivery"  # nse-delivery (statutory charges, per side) | flat (fee_bps each side)
    fee_bps: float = 5.0  # the flat model's fee per side
    slippage_bps: float = 5.0  # both models, each side
    brokerage_bps: float = 0.0  # nse-delivery: brokerage per side (0 = a discount delivery broker)
    dp_charge: float = 13.5  # nse-delivery: depository charge in rupees per sell day, before 18% GST
    execution: str = "next_open"
    episode_len: int = 256  # max training-episode length in days (episodes also end at train end)
    initial_capital: float = 1_000_000.0
    # PPO
    preset: str = "production"
    total_timesteps: int = 500_000
    num_envs: int = 256
    num_steps: int = 512
    minibatch_size: int = 4096
    epochs: int = 4
    hidden: tuple[int, ...] = (1024, 512, 256)
    activation: str = "tanh"
    init_scheme: str = "normal"  # weight initialiser: normal (original system) | orthogonal (PureJaxRL)
    init_std: float = 0.01  # std of the normal initialiser of hidden layers (original system)
    precision: str = "auto"  # auto | fp32 | tf32 | bf16 (bf16 matmuls/activations, float32 params and losses)
    lr: float = 3e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 0
    seeds: int = 1  # independent agents trained as one vmapped program (seeds seed, seed+1, ...)
    # population-based training (docs/evolution.md)
    population: int = 1  # agents trained as one vmapped program and evolved (1 = no PBT)
    pbt_interval: int = 10  # updates between two exploit/explore rounds
    pbt_fraction: float = 0.25  # bottom fraction replaced by copies of the top fraction each round
    pbt_resample: float = 0.25  # chance that explore resamples a hyperparameter instead of perturbing it
    evolve: tuple[str, ...] = ("lr", "ent_coef", "clip_eps")  # hyperparameters PBT evolves
    search_space: str = ""  # ranges overriding SEARCH_SPACE, e.g. "lr=1e-5:1e-2,ent_coef=0:0.05"
    init_space: str = ""  # ranges the first generation is drawn from (default: the search space)
    # runtime
    backend: str = "auto"  # auto | cpu | gpu | metal
    updates_per_chunk: int = 0  # 0 = choose automatically (~2 s of work per chunk)
    # members (seeds or population) computed side by side; the groups run one after another.
    # 0 = automatic: 4 on CPU (measured fastest there, docs/evolution.md), all at once elsewhere
    member_group: int = 0

    # derived sizes -------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_minibatches(self) -> int:
        return self.batch_size // self.minibatch_size

    @property
    def num_updates(self) -> int:
        return max(1, math.ceil(self.total_timesteps / self.batch_size))

    @property
    def embargo(self) -> int:
        """Days left out before the validation and the test range (at least the feature window)."""
        return self.window if self.embargo_days is None else self.embargo_days

    @property
    def members(self) -> int:
        """Agents trained together (a leading axis on the runner when more than one)."""
        return self.population if self.population > 1 else self.seeds

    @property
    def evolving(self) -> bool:
        return self.population > 1

    @property
    def total_env_steps(self) -> int:
        """Env steps of the whole run: every member's updates x batch."""
        return self.num_updates * self.batch_size * self.members

    # (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["symbols"] = list(self.symbols)
        d["positions"] = list(self.positions)
        d["hidden"] = list(self.hidden)
        d["evolve"] = list(self.evolve)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {_RENAMED.get(k, k): v for k, v in d.items()}
        if "fee_bps" in d and "cost_model" not in d:
            d["cost_model"] = "flat"  # recorded before cost models existed: it was trained with flat costs
        if "precision" not in d:
            d["precision"] = "fp32"  # recorded before precision existed: it was trained in float32
        kwargs = {k: v for k, v in d.items() if k in names}
        for key in TUPLE_FIELDS:
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs).validated()

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validated(self) -> TrainConfig:
        """Return self after checking every field; raise ConfigError naming the first bad one."""
        for msg in validation_errors(self):
            raise ConfigError(msg)
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # The original system's configuration.
    "production": dict(
        num_envs=256, num_steps=512, minibatch_size=4096, epochs=4, hidden=(1024, 512, 256),
        lr=3e-4, total_timesteps=500_000,
    ),
    # Small enough that a 2-core CPU shows a learning curve within a minute or two.
    "quick": dict(
        num_envs=64, num_steps=128, minibatch_size=1024, epochs=4, hidden=(64, 64),
        lr=1e-3, total_timesteps=200_000, init_scheme="orthogonal",
    ),
}


# What the presets mean in portfolio mode: one env is a whole account (N assets), so fewer envs and
# steps make a batch, a minibatch counts accounts, and `hidden` is the per-asset encoder shared by
# every asset (parameters do not grow with N). Sized so that N = 500 trains within 4 GiB on CPU.
PORTFOLIO_PRESETS: dict[str, dict[str, Any]] = {
    "production": dict(
        num_envs=32, num_steps=128, minibatch_size=512, epochs=4, hidden=(128, 64),
        lr=3e-4, total_timesteps=200_000, init_scheme="orthogonal", ent_coef=0.001,
    ),
    "quick": dict(
        num_envs=16, num_steps=64, minibatch_size=256, epochs=4, hidden=(32, 32),
        lr=1e-3, total_timesteps=50_000, init_scheme="orthogonal", ent_coef=0.001,
    ),
}


def preset_values(preset: str, mode: str = "single") -> dict[str, Any]:
    """The values a preset sets in a trading mode."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return dict((PORTFOLIO_PRESETS if mode == "portfolio" else PRESETS)[preset])


def make_config(preset: str = "production", **overrides: Any) -> TrainConfig:
    """Preset values (of the mode in `overrides`), then explicit overrides (None means 'not given')."""
    values: dict[str, Any] = preset_values(preset, overrides.get("mode") or "single")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    for key in TUPLE_FIELDS:
        if key in values:
            values[key] = tuple(values[key])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    return TrainConfig(**values).validated()


def validation_errors(c: TrainConfig) -> list[str]:
    """Every problem with a config, each message naming its field. Empty list = valid."""
    errs: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            errs.append(msg)

    for f in dataclasses.fields(c):  # NaN and inf pass most range checks below; name them first
        value = getattr(c, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            errs.append(f"{f.name}: must be a finite number (got {value})")
    last_seed = SEED_MAX - max(c.seeds, c.population, 1) + 1  # members use seed, seed+1, ...
    need(isinstance(c.seed, int) and 0 <= c.seed <= last_seed,
         f"seed: must be a whole number from 0 to {last_seed} (got {c.seed})")
    need(c.mode in TRADING_MODES, f"mode: must be one of {', '.join(TRADING_MODES)} (got {c.mode!r})")
    need(len(c.symbols) >= 1, "symbols: give at least one symbol")
    if ALL_SYMBOLS in c.symbols:
        need(c.mode == "portfolio", "symbols: 'all' (every symbol of the source) needs portfolio mode (--portfolio)")
        need(len(c.symbols) == 1, "symbols: 'all' stands alone (every symbol of the source)")
    need(len(c.symbols) <= MAX_UNIVERSE, f"symbols: at most {MAX_UNIVERSE} symbols (got {len(c.symbols)})")
    need(isinstance(c.universe_size, int) and 1 <= c.universe_size <= MAX_UNIVERSE,
         f"universe_size: must lie in 1 .. {MAX_UNIVERSE} (got {c.universe_size})")
    need(_finite(c.rebalance_band) and 0 <= c.rebalance_band < 0.5,
         f"rebalance_band: must lie in [0, 0.5) as a fraction of equity (got {c.rebalance_band})")
    for s in c.symbols:
        need(bool(s) and s.replace("-", "").replace("_", "").replace("&", "").replace(".", "").isalnum(),
             f"symbols: {s!r} is not a valid ticker (letters, digits, '-', '_', '&', '.')")
    need(len(set(c.symbols)) == len(c.symbols), "symbols: duplicates are not allowed")
    need(c.data in ("auto", "synthetic", "yahoo") or c.data.startswith("csv:"),
         f"data: {c.data!r} must be auto, synthetic, yahoo or csv:DIR")
    need(c.test_days >= 2, f"test_days: must be at least 2 (got {c.test_days})")
    need(c.val_days == 0 or c.val_days >= 2, f"val_days: must be 0 (no validation) or at least 2 (got {c.val_days})")
    if c.embargo_days is not None:
        need(c.embargo_days >= c.window,
             f"embargo_days: must be at least the feature window ({c.window}) (got {c.embargo_days})")
    need(1 <= c.seeds <= 4096, f"seeds: must lie in 1 .. 4096 (got {c.seeds})")
    need(1 <= c.population <= 4096, f"population: must lie in 1 .. 4096 (got {c.population})")
    need(c.population == 1 or c.seeds == 1,
         "population: use either --seeds (independent agents) or --population (PBT), not both")
    need(c.pbt_interval >= 1, f"pbt_interval: must be at least 1 update (got {c.pbt_interval})")
    need(0 < c.pbt_fraction <= 0.5, f"pbt_fraction: must lie in (0, 0.5] (got {c.pbt_fraction})")
    need(0 <= c.pbt_resample <= 1, f"pbt_resample: must lie in [0, 1] (got {c.pbt_resample})")
    unknown = [h for h in c.evolve if h not in SEARCH_SPACE]
    need(not unknown, f"evolve: unknown hyperparameter(s) {', '.join(unknown)}; choose from {', '.join(SEARCH_SPACE)}")
    if c.population > 1:
        need(c.val_days > 0, "population: PBT selects on validation days; give --val-days > 0")
        need(len(c.evolve) > 0, "evolve: name at least one hyperparameter for PBT to evolve")
    for name in ("search_space", "init_space"):
        try:
            parse_space(getattr(c, name), name)
        except ConfigError as exc:
            errs.append(str(exc))
    need(c.window >= 1, f"window: must be at least 1 (got {c.window})")
    need(isinstance(c.features, str) and bool(c.features.strip()),
         "features: give a feature set name (default, technical) or NAME,NAME(k),... (evorl features)")
    if isinstance(c.features, str) and c.features.strip():
        errs.extend(msg for check in _FEATURES_CHECKS if (msg := check(c.features)))
    need(len(c.positions) >= 2, "positions: give at least two target positions, e.g. 0,0.5,1")
    need(all(-1.0 <= p <= 1.0 for p in c.positions), "positions: each target exposure must lie in [-1, 1]")
    need(len(set(c.positions)) == len(c.positions), "positions: duplicates are not allowed")
    need(c.price_adjustment in PRICE_ADJUSTMENTS,
         f"price_adjustment: must be one of {', '.join(PRICE_ADJUSTMENTS)} (got {c.price_adjustment!r})")
    need(c.cost_model in COST_MODELS, f"cost_model: must be one of {', '.join(COST_MODELS)} (got {c.cost_model!r})")
    need(_finite(c.fee_bps) and c.fee_bps >= 0, f"fee_bps: must be >= 0 (got {c.fee_bps})")
    need(_finite(c.slippage_bps) and 0 <= c.slippage_bps < MAX_SLIPPAGE_BPS,
         f"slippage_bps: must be >= 0 and below {MAX_SLIPPAGE_BPS:g} (got {c.slippage_bps})")
    need(not (_finite(c.fee_bps) and _finite(c.slippage_bps)) or c.fee_bps + c.slippage_bps < 10000,
         "fee_bps: fee_bps + slippage_bps must be below 10000 bps")
    need(_finite(c.brokerage_bps) and 0 <= c.brokerage_bps < MAX_BROKERAGE_BPS,
         f"brokerage_bps: must be >= 0 and below {MAX_BROKERAGE_BPS:g} (got {c.brokerage_bps})")
    need(_finite(c.dp_charge) and c.dp_charge >= 0, f"dp_charge: must be >= 0 rupees (got {c.dp_charge})")
    need(c.cost_model != "nse-delivery" or not (_finite(c.dp_charge) and _finite(c.initial_capital))
         or not 0 < c.initial_capital <= MAX_INITIAL_CAPITAL or c.dp_charge < c.initial_capital,  # blame capital first
         f"dp_charge: Rs {c.dp_charge} per sell day must be below initial_capital")
    need(c.execution in EXECUTION_MODES, f"execution: must be one of {', '.join(EXECUTION_MODES)}")
    need(c.episode_len >= 2, f"episode_len: must be at least 2 (got {c.episode_len})")
    need(0 < c.initial_capital <= MAX_INITIAL_CAPITAL,
         f"initial_capital: must be positive and at most {MAX_INITIAL_CAPITAL:g} (got {c.initial_capital})")
    need(c.preset in PRESETS, f"preset: unknown preset {c.preset!r}")
    need(c.total_timesteps >= 1, f"timesteps: must be positive (got {c.total_timesteps})")
    need(c.num_envs >= 1, f"num_envs: must be positive (got {c.num_envs})")
    need(c.num_steps >= 1, f"num_steps: must be positive (got {c.num_steps})")
    need(c.minibatch_size >= 1, f"minibatch_size: must be positive (got {c.minibatch_size})")
    if c.num_envs >= 1 and c.num_steps >= 1 and c.minibatch_size >= 1:
        need(c.batch_size % c.minibatch_size == 0,
             f"minibatch_size: {c.minibatch_size} must divide num_envs x num_steps = {c.batch_size}")
    need(c.epochs >= 1, f"epochs: must be positive (got {c.epochs})")
    need(len(c.hidden) >= 1 and all(h >= 1 for h in c.hidden), "hidden: give positive layer sizes, e.g. 1024,512,256")
    need(c.activation in ("tanh", "relu"), "activation: must be tanh or relu")
    need(c.init_scheme in INIT_SCHEMES, f"init_scheme: must be one of {', '.join(INIT_SCHEMES)}")
    need(c.init_std > 0, "init_std: must be positive")
    need(c.precision in PRECISIONS,
         f"precision: must be one of {', '.join(PRECISIONS)} (got {c.precision!r}); bf16 = bfloat16 matmuls "
         "and activations with float32 parameters, optimiser state and losses")
    need(c.lr > 0 and math.isfinite(c.lr), f"lr: must be a positive number (got {c.lr})")
    need(0 < c.gamma <= 1, "gamma: must lie in (0, 1]")
    need(0 <= c.gae_lambda <= 1, "gae_lambda: must lie in [0, 1]")
    need(c.clip_eps > 0, "clip_eps: must be positive")
    need(c.ent_coef >= 0, "ent_coef: must be >= 0")
    need(c.vf_coef >= 0, "vf_coef: must be >= 0")
    need(c.max_grad_norm > 0, "max_grad_norm: must be positive")
    need(c.backend in ("auto", "cpu", "gpu", "metal"), "backend: must be auto, cpu, gpu or metal")
    need(c.updates_per_chunk >= 0, "updates_per_chunk: must be >= 0")
    need(c.member_group >= 0, f"member_group: must be >= 0 (0 = automatic; got {c.member_group})")
    return errs


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def parse_floats(text: str, field_name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise ConfigError(f"{field_name}: {text!r} is not a comma-separated list of numbers") from None


def parse_ints(text: str, field_name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise ConfigError(f"{field_name}: {text!r} is not a comma-separated list of integers") from None
