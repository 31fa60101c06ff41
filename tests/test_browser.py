"""The dashboard in a real browser: `streamlit run dashboard.py` driven through Chromium.

Train the quick preset on synthetic data from the form, watch Live update, open the Backtest and
count one equity chart per symbol. Screenshots go to test-artifacts/ (gitignored).

Needs Debian's Chromium (`apt-get install chromium`; never `playwright install`). A missing browser
fails the test with that instruction instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SYMBOLS = ("BPCL", "HDFCLIFE", "TATASTEEL")
# Per agent: the quick preset trains 4 seeds, so 1M env steps in all, long enough to watch it run,
# short enough for CI.
TIMESTEPS = 250_000


def chromium_path() -> str:
    for candidate in (os.environ.get("EVORL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("Chromium not found: install Debian's chromium (apt-get install -y chromium) or set "
                "EVORL_CHROMIUM to its path. Do not run `playwright install`.")


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, driven by Playwright; screenshots folder made."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def chromium_page(height: int = 1100):
    """One page, 1400 px wide, 60 s default timeout, in a fresh Chromium."""
    with chromium() as browser:
        pg = browser.new_page(viewport={"width": 1400, "height": height})
        pg.set_default_timeout(60_000)
        yield pg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(base: Path, runs: Path, models: Path, cache: Path):
    """The dashboard served by a real `streamlit run` on a free local port, with its runs, models
    and data cache in the given folders; yields the URL once the health check answers."""
    port = free_port()
    env = {**os.environ, "EVORL_RUNS_DIR": str(runs), "EVORL_MODELS_DIR": str(models), "EVORL_DATA_CACHE": str(cache)}
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
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
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
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    with streamlit_server(base, base / "runs", base / "models", base / "cache") as url:
        yield {"url": url, "runs": base / "runs", "log": base / "streamlit.log"}


@pytest.fixture(scope="module")
def page(server):
    with chromium_page() as pg:
        yield pg


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_idle(pg, timeout: float = 60.0) -> None:
    """Wait until Streamlit has finished the script run a previous action triggered."""
    app = pg.locator('[data-testid="stApp"]')
    app.wait_for()
    time.sleep(0.3)  # the rerun request reaches the server a moment after the click
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = app.get_attribute("data-test-script-state")
        if state in ("running", "rerunRequested", "initial"):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        time.sleep(0.1)
    pytest.fail(f"Streamlit still busy after {timeout} s")


def no_exceptions(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator(
        '[data-testid="stException"]').first.inner_text()


def choose(pg, label: str, option: str) -> None:
    """Pick an option in the st.selectbox labelled `label`."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    pg.get_by_role("option", name=option, exact=True).click()
    wait_idle(pg)


def plot_titles(pg) -> list[str]:
    return [t.strip() for t in pg.locator(".js-plotly-plot .gtitle").all_text_contents()]


def test_train_watch_backtest(server, page):
    pg = page
    url = server["url"]

    # Train: quick preset on synthetic data
    pg.goto(f"{url}/train")
    pg.get_by_role("button", name="Start training").wait_for()
    wait_idle(pg)
    no_exceptions(pg)
    choose(pg, "Data source", "Synthetic (offline)")
    steps = pg.locator('[data-testid="stNumberInput"]').filter(has_text="Timesteps").locator("input")
    steps.fill(str(TIMESTEPS))
    steps.press("Enter")
    wait_idle(pg)
    shot(pg, "01-train-form")
    pg.get_by_role("button", name="Start training").click()

    # Live: charts appear, steps/s above zero, the page polls while the run is active
    pg.wait_for_url(re.compile(r".*/live\?run=run-.*"), timeout=60_000)
    run_id = re.search(r"run=([^&]+)", pg.url).group(1)
    value = pg.locator('.st-key-throughput [data-testid="stMetricValue"]')
    progress_text = pg.locator('[data-testid="stProgress"]')
    seen_states, steps_per_sec, running_shot = set(), 0.0, False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        text = progress_text.first.inner_text() if progress_text.count() else ""
        for state in ("queued", "compiling", "running", "done", "failed"):
            if re.search(rf"\b{state}\b", text):
                seen_states.add(state)
        if value.count():
            raw = value.first.inner_text().replace(",", "").strip()
            if re.fullmatch(r"[0-9.]+", raw):
                steps_per_sec = max(steps_per_sec, float(raw))
        if "running" in seen_states and steps_per_sec > 0 and not running_shot:
            time.sleep(1.5)  # let the charts draw
            shot(pg, "02-live-running")
            running_shot = True
        if "done" in seen_states or "failed" in seen_states:
            break
        time.sleep(0.5)
    no_exceptions(pg)
    assert "failed" not in seen_states, pg.locator('[data-testid="stAlert"]').all_inner_texts()
    assert "done" in seen_states, f"run did not finish; saw {seen_states}"
    assert "running" in seen_states, f"never saw the run while it was running: {seen_states}"
    assert steps_per_sec > 0
    titles = plot_titles(pg)
    for expected in ("Throughput", "Memory", "PPO losses", "Reward per step (mean ± std)"):
        assert expected in titles, titles
    shot(pg, "03-live-done")

    # Backtest: one equity chart per symbol
    pg.get_by_role("button", name="Open backtest").click()
    pg.wait_for_url(re.compile(r".*/backtest.*"))
    pg.get_by_text("BPCL — equity vs buy & hold").first.wait_for()
    wait_idle(pg)
    no_exceptions(pg)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        equity = sorted(t for t in plot_titles(pg) if t.endswith("equity vs buy & hold"))
        if len(equity) >= len(SYMBOLS):
            break
        time.sleep(0.5)
    assert equity == sorted(f"{s} — equity vs buy & hold" for s in SYMBOLS)
    assert pg.get_by_text("Synthetic data").count() >= 1
    assert pg.get_by_text("A = 252", exact=False).count() >= 1
    assert f"run={run_id}" in pg.url
    shot(pg, "04-backtest")


@pytest.mark.parametrize("name", ["home", "models", "data"])
def test_other_pages_render(server, page, name):
    pg = page
    pg.goto(f"{server['url']}/{'' if name == 'home' else name}")
    pg.wait_for_selector("h1")
    wait_idle(pg)
    if name == "models" and any(server["runs"].glob("*/backtest/metrics.json")):
        # the run trained by the first test can be deployed from here
        pg.get_by_role("button", name="Deploy").wait_for()
    if name == "data":
        choose(pg, "Source", "Synthetic (offline)")
        pg.get_by_role("button", name="Load").click()
        wait_idle(pg)
        pg.locator(".js-plotly-plot").first.wait_for()
        assert any("daily OHLC" in t for t in plot_titles(pg))
    no_exceptions(pg)
    assert pg.locator('[data-testid="stSidebar"] img').count() >= 1  # the logo: the shared frame is there
    shot(pg, f"05-{name}")
