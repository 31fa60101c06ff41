"""Single-asset mode: one env holds one symbol and a target exposure from a discrete set.

`env` (pure JAX), `accounting` (exact NumPy equity and cost figures), `baselines`, `reference`
(the NumPy env the JAX env is tested against) and `decisions` (greedy paths, validation fitness,
the decision on one bar) make up `MODE`.
"""

from evorl_core.modes.base import Mode
from evorl_core.modes.single import accounting, baselines, decisions, env

MODE = Mode(
    name="single",
    make_env=env.make_env,
    observation_size=env.observation_size_of,
    greedy_positions=decisions.greedy_positions,
    validation_fitness=decisions.validation_fitness,
    decision=decisions.decision,
    accounting=accounting,
    baselines=baselines,
)
