"""Several agents in a real browser: Live of a tiny PBT run shows every member's curves, the
validation fitness per round, the hyperparameters per member and the lineage; its Backtest shows
the choice on validation days and a fan of every member's test equity per symbol; the Walk-forward
page lists the folds and opens one. Runs made beforehand by real tiny training
(tests/population_runs.py); screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from population_runs import PBT_RUN, WALKFORWARD, copy_into, runs_dir
from test_browser import ARTIFACTS, CHROMIUM_ARGS, ROOT, chromium_path, free_port, no_exceptions, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

POPULATION_CHARTS = ("Reward per step — every member", "Validation fitness per round (★ best member of the round)",
                     "Hyperparameters per member (after each round)",
                     "Lineage: exploit events (arrow: donor → member that copied it)")
FANS = ("AAA — every member's test equity (fan)", "BBB — every member's test equity (fan)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("population")
    runs = copy_into(base / "runs")
    port = free_port()
    env = {**os.environ, "EVORL_RUNS_DIR": str(runs), "EVORL_MODELS_DIR": str(base / "models"),
           "EVORL_DATA_CACHE": str(base / "cache")}
    log = open(base / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited early:\n{(base / 'streamlit.log').read_text()}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{(base / 'streamlit.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 2400})  # tall: the charts in one shot
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


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
