"""Several agents in a real browser: Live of a tiny PBT run shows every member's curves, the
validation fitness per round, the hyperparameters per member and the lineage; its Backtest shows
the choice on validation days and a fan of every member's test equity per symbol; the Walk-forward
page lists the folds and opens one. Runs made beforehand by real tiny training
(tests/population_runs.py); screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import time

import pytest
from population_runs import PBT_RUN, WALKFORWARD, copy_into, runs_dir
from test_browser import (
    ARTIFACTS,
    chromium_page,
    no_exceptions,
    streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

POPULATION_CHARTS = ("Reward per step — every member", "Validation fitness per round (★ best member of the round)",
                     "Hyperparameters per member (after each round)",
                     "Lineage: exploit events (arrow: donor → member that copied it)")
FANS = ("AAA — every member's test equity (fan)", "BBB — every member's test equity (fan)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("population")
    runs = copy_into(base / "runs")
    with streamlit_server(base, runs, base / "models", base / "cache") as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with chromium_page(height=2400) as pg:  # tall: the charts in one shot
        yield pg


def titles(pg) -> list[str]:
    return [t.strip() for t in pg.locator(".js-plotly-plot .gtitle").all_text_contents()]


def wait_for_titles(pg, expected, timeout: float = 45.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = titles(pg)
        if all(t in seen for t in expected):
            return seen
        time.sleep(0.5)
    return titles(pg)


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"pop-{name}.png"), full_page=True)


def test_live_and_backtest_of_a_population(server, page):
    pg = page
    pg.goto(f"{server}/live?run={PBT_RUN}")
    pg.get_by_text("Population: 4 members").wait_for()
    wait_idle(pg)
    seen = wait_for_titles(pg, POPULATION_CHARTS)
    no_exceptions(pg)
    assert all(t in seen for t in POPULATION_CHARTS), seen
    assert pg.get_by_text("all 4 members together", exact=False).count() == 1
    assert pg.get_by_text("Exploit events", exact=False).count() >= 1
    # the lineage chart draws one arrow per exploit event
    events = len((runs_dir() / PBT_RUN / "population" / "lineage.jsonl").read_text().splitlines())
    lineage = pg.locator(".js-plotly-plot").filter(has_text="Lineage: exploit events")
    assert events >= 1 and lineage.locator(".annotation-arrow-g").count() == events
    pg.get_by_text("Validation fitness per round", exact=False).first.scroll_into_view_if_needed()
    shot(pg, "01-live")

    pg.get_by_role("button", name="Open backtest").click()
    pg.wait_for_url(f"**/backtest?run={PBT_RUN}")
    pg.get_by_text("All 4 members of the population").wait_for()
    wait_idle(pg)
    seen = wait_for_titles(pg, FANS)
    no_exceptions(pg)
    assert all(t in seen for t in FANS), seen
    assert "AAA — equity vs buy & hold" in seen  # the chosen member against buy & hold, as for one agent
    assert pg.get_by_text("one draw from the spread", exact=False).count() == 1
    assert pg.get_by_text("(chosen)", exact=False).count() >= 2  # each fan's legend names the chosen member
    shot(pg, "02-backtest")
    pg.get_by_text(FANS[0]).first.scroll_into_view_if_needed()
    time.sleep(0.5)
    pg.screenshot(path=str(ARTIFACTS / "pop-03-fan.png"))


def test_walkforward_page_opens_a_fold(server, page):
    pg = page
    pg.goto(f"{server}/walkforward")
    pg.get_by_text("Pooled out-of-sample result").wait_for()
    wait_idle(pg)
    no_exceptions(pg)
    shot(pg, "04-walkforward")
    pg.get_by_role("button", name=f"{WALKFORWARD}-fold1 → Backtest").click()
    pg.wait_for_url(f"**/backtest?run={WALKFORWARD}-fold1")
    pg.get_by_text("All 2 members (seeds)").wait_for()
    wait_idle(pg)
    no_exceptions(pg)
