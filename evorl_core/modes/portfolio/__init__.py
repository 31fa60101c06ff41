"""Portfolio mode: one env holds one account over a universe of N assets plus cash.

`env` (pure JAX: the account, compact observations, masked softmax targets), `accounting` (exact
NumPy account in rupees: the reference the env is tested against, the baselines 1/N rebalanced,
equal-weight buy & hold and cash) and `decisions` (greedy allocations, validation fitness, the
allocation on one bar) make up `MODE`. docs/portfolio.md states the conventions.
"""

from evorl_core.modes.base import Mode
from evorl_core.modes.portfolio import accounting, decisions, env

MODE = Mode(
    name="portfolio",
    make_env=env.make_env,
    observation_size=env.observation_size_of,
    greedy_positions=decisions.greedy_positions,
    validation_fitness=decisions.validation_fitness,
    decision=decisions.decision,
    accounting=accounting,
    baselines=accounting,
)
