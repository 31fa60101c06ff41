"""Chunk sizes of the training loop: the last chunk never compiles during training (the Live page
showed a 14 s stall at 100% while a smaller tail chunk compiled)."""

from __future__ import annotations

import pytest

from evorl_core.config import make_config
from evorl_core.training import sizing
from evorl_core.training.pipeline import run as train

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, hidden=(16,), window=8, test_days=20, data="synthetic")


@pytest.mark.parametrize("remaining", [1, 7, 12, 50, 64, 100, 128, 200, 367, 1000])
def test_automatic_chunks_divide_the_remaining_updates_when_they_can(remaining, monkeypatch):
    monkeypatch.setitem(sizing.ASSUMED_FLOPS, "cpu", 1e30)  # a target of 64 updates
    config = make_config("quick", **TINY)
    k = sizing.choose_updates_per_chunk(config, remaining)
    target = min(64, remaining)
    assert 1 <= k <= target
    divisors = [d for d in range(-(-target // 4), target + 1) if remaining % d == 0]
    if divisors:
        assert k == max(divisors) and remaining % k == 0
    else:  # 367 is prime: the target, and train() compiles the tail up front
        assert k == target


def test_explicit_chunk_size_is_kept():
    config = make_config("quick", updates_per_chunk=3, **TINY)
    assert sizing.choose_updates_per_chunk(config, 7) == 3


def test_compile_time_is_final_before_the_first_chunk(tmp_path):
    """7 updates in chunks of 3: sizes 3 and the tail 1 both compile before training starts."""
    config = make_config("quick", updates_per_chunk=3, total_timesteps=7 * 128, **TINY)
    seen = []
    rd = train(config, tmp_path, "r", progress=lambda info: seen.append(info["compile_seconds"]),
               cache_dir=str(tmp_path / "cache"))
    assert rd.read_status()["state"] == "done"
    assert len(seen) == 3 and len(set(seen)) == 1 and seen[0] > 0
