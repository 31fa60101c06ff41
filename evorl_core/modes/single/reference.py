"""A plain NumPy (float64) reference of the trading environment, for tests.

Written independently of env.py and as literally as possible from the accounting in docs/accounting.md:
it keeps the account in rupees (every episode starts with `initial_capital`), computes the equity
values E_t, E_open, E_fill, E_{t+1} explicitly, charges the flat sell-day charge in rupees, and
the reward as log(E_{t+1} / E_t). `equity` is the account relative to the episode start, as in the
JAX env. It has no auto-reset and no randomness: the caller places it with `reset_to(symbol, t)`.
"""

from __future__ import annotations

import numpy as np

from evorl_core.config import EXECUTION_MODES, MIN_GROWTH  # floor of each equity factor (a wiped-out account)


class ReferenceTradingEnv:
    def __init__(self, open_, close, features, length, first_index, train_end, positions, c_buy, c_sell,
                 execution, window, episode_len, *, sell_day_charge=0.0, initial_capital=1.0):
        """c_buy, c_sell: fractions of the value bought / sold; sell_day_charge: rupees per sell day
        (p_new < p_prev); initial_capital: rupees at the start of every episode."""
        if execution not in EXECUTION_MODES:
            raise ValueError(f"unknown execution {execution!r}")
        self.open = np.asarray(open_, dtype=np.float64)
        self.close = np.asarray(close, dtype=np.float64)
        self.features = np.asarray(features, dtype=np.float64)
        self.length = np.asarray(length, dtype=np.int64)
        self.first_index = np.asarray(first_index, dtype=np.int64)
        self.train_end = np.asarray(train_end, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.c_buy = float(c_buy)
        self.c_sell = float(c_sell)
        self.sell_day_charge = float(sell_day_charge)
        self.initial_capital = float(initial_capital)
        self.execution = execution
        self.window = int(window)
        self.episode_len = int(episode_len)
        self.symbol = 0
        self.t = 0
        self.position = 0.0
        self.rupees = self.initial_capital
        self.steps = 0
        self.episode_return = 0.0

    @property
    def equity(self) -> float:
        """The account relative to the start of the episode."""
        return self.rupees / self.initial_capital

    def reset_to(self, symbol: int, t: int) -> np.ndarray:
        symbol, t = int(symbol), int(t)
        if not (self.first_index[symbol] <= t <= self.train_end[symbol] - 2):
            raise ValueError(f"start day {t} is outside the training starts of symbol {symbol}")
        self.symbol = symbol
        self.t = t
        self.position = 0.0
        self.rupees = self.initial_capital
        self.steps = 0
        self.episode_return = 0.0
        return self.observe()

    def observe(self) -> np.ndarray:
        days = self.features[self.symbol, self.t - self.window + 1 : self.t + 1, :]
        return np.concatenate([days.reshape(-1), [self.position]])

    def step(self, action: int):
        s, t = self.symbol, self.t
        p_prev = self.position
        p_new = float(self.positions[int(action)])
        bought = max(p_new - p_prev, 0.0)
        sold = max(p_prev - p_new, 0.0)
        e_now = self.rupees
        if self.execution == "next_open":
            e_open = e_now * max(1.0 + p_prev * (self.open[s, t + 1] / self.close[s, t] - 1.0), MIN_GROWTH)
        else:  # "close": the fill is at the close of day t
            e_open = e_now
        charge = self.sell_day_charge if p_new < p_prev else 0.0  # rupees, on a sell day only
        fill = 1.0 - self.c_buy * bought - self.c_sell * sold - charge / e_open
        e_fill = e_open * max(fill, MIN_GROWTH)
        if self.execution == "next_open":
            e_next = e_fill * max(1.0 + p_new * (self.close[s, t + 1] / self.open[s, t + 1] - 1.0), MIN_GROWTH)
        else:
            e_next = e_fill * max(1.0 + p_new * (self.close[s, t + 1] / self.close[s, t] - 1.0), MIN_GROWTH)
        reward = float(np.log(e_next / e_now))

        self.t = t + 1
        self.position = p_new
        self.rupees = e_next
        self.steps += 1
        self.episode_return += reward
        # The next transition would go from self.t to self.t + 1, allowed only up to train_end - 1.
        no_more_training_days = self.t + 1 > self.train_end[s] - 1
        done = self.steps >= self.episode_len or bool(no_more_training_days)
        return self.observe(), reward, done
