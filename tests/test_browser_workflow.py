"""A trader's daily workflow in a real browser (issue 12): the Train form keeps its values across
pages and reloads; a test-day count the data cannot hold is refused before start, the message at
its field; a synthetic run is badged on Live and Home; runs are renamed, tagged, archived and
deleted; the HTML report downloads, opens and holds its charts; the paper ledger appends a day
and refuses the same day twice.

One server for the module, over runs trained beforehand with a tiny config (no training in the
browser). Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from test_browser import (
    ARTIFACTS,
    chromium,
    no_exceptions,
    streamlit_server,
    wait_idle,
)

from evorl_core.config import make_config
from evorl_core.deploy.bundle import deploy_run
from evorl_core.training.pipeline import run as train

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, hidden=(16,), total_timesteps=512, test_days=30,
            symbols=("BPCL", "TATASTEEL"), data="synthetic")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("workflow")
    runs, models, cache = base / "runs", base / "models", base / "cache"
    for run_id in ("wf-a", "wf-b"):
        assert train(make_config("quick", **TINY), runs, run_id, cache_dir=str(cache)).read_status()["state"] == "done"
    deploy_run(runs / "wf-a", name="wf-model", models_dir=models)
    csv = base / "csv"  # a real-data folder too short for 2100 test days
    csv.mkdir()
    days = pd.bdate_range("2021-01-01", periods=300)
    (csv / "AAA.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                                 + "".join(f"{d.date()},10,11,9,10.5,10.5,100\n" for d in days))
    with streamlit_server(base, runs, models, cache) as url:
        yield {"url": url, "runs": runs, "models": models, "csv": csv, "base": base}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"wf-{name}.png"), full_page=True)


def open_page(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector("h1")
    wait_idle(pg)
    no_exceptions(pg)


def field(pg, kind: str, label: str):
    return pg.locator(f'[data-testid="{kind}"]').filter(has_text=label).first


def fill(pg, kind: str, label: str, value: str) -> None:
    box = field(pg, kind, label).locator("input")
    box.fill(value)
    box.press("Enter")
    wait_idle(pg)


def choose(pg, label: str, option: str) -> None:
    field(pg, "stSelectbox", label).click()
    pg.get_by_role("option", name=option, exact=True).click()
    wait_idle(pg)


def value(pg, kind: str, label: str) -> str:
    return field(pg, kind, label).locator("input").input_value()


def column_alerts(pg, kind: str, label: str) -> list[str]:
    """The alerts in the column that holds the field: errors drawn under their field."""
    column = pg.locator('[data-testid="stColumn"]').filter(has=field(pg, kind, label)).last
    return column.locator('[data-testid="stAlert"]').all_inner_texts()


def test_train_form_survives_navigation_and_reload(server, page):
    pg = page
    open_page(pg, f"{server['url']}/train")
    choose(pg, "Data source", "CSV directory")
    fill(pg, "stTextInput", "CSV directory", str(server["csv"]))
    fill(pg, "stNumberInput", "Timesteps", "1234567")
    fill(pg, "stNumberInput", "Test days", "120")
    pg.get_by_role("link", name="Data").click()
    wait_idle(pg)
    assert value(pg, "stTextInput", "CSV directory") == str(server["csv"])  # Data starts from Train's source
    pg.get_by_role("link", name="Train").click()
    wait_idle(pg)
    for _ in range(2):  # back from another page, then a reload (a new session)
        assert value(pg, "stTextInput", "CSV directory") == str(server["csv"])
        assert value(pg, "stNumberInput", "Timesteps").replace(",", "") == "1234567"
        assert value(pg, "stNumberInput", "Test days") == "120"
        assert "CSV directory" in value(pg, "stSelectbox", "Data source")
        pg.reload()
        pg.wait_for_selector("h1")
        wait_idle(pg)
    shot(pg, "01-train-kept")


def test_too_many_test_days_are_refused_at_their_field(server, page):
    pg = page
    open_page(pg, f"{server['url']}/train")
    fill(pg, "stTextInput", "Symbols", "AAA")
    choose(pg, "Data source", "CSV directory")
    fill(pg, "stTextInput", "CSV directory", str(server["csv"]))
    fill(pg, "stNumberInput", "Test days", "2100")
    before = sorted(p.name for p in server["runs"].iterdir())
    pg.get_by_role("button", name="Start training").click()
    wait_idle(pg)
    pg.get_by_text("test_days: AAA has 300 rows").wait_for()
    no_exceptions(pg)
    alerts = column_alerts(pg, "stNumberInput", "Test days")
    assert any("test_days: AAA has 300 rows; 2,100 test days need at least" in a for a in alerts), alerts
    assert "/train" in pg.url  # nothing started: still on Train
    assert sorted(p.name for p in server["runs"].iterdir()) == before
    shot(pg, "02-train-refused")


def test_synthetic_run_is_badged_on_live_and_home(server, page):
    pg = page
    open_page(pg, f"{server['url']}/live?run=wf-a")
    pg.get_by_text("Synthetic data — not real prices").first.wait_for()
    assert "SYNTHETIC" in value(pg, "stSelectbox", "Run")
    shot(pg, "03-live-badge")
    open_page(pg, f"{server['url']}/?run=wf-a")
    pg.get_by_text("Synthetic data — not real prices").first.wait_for()
    assert "SYNTHETIC" in value(pg, "stSelectbox", "Run")
    shot(pg, "04-home-badge")


def test_rename_tag_archive_and_delete(server, page):
    pg = page
    open_page(pg, f"{server['url']}/?run=wf-b")
    assert "wf-b" in value(pg, "stSelectbox", "Run")
    fill(pg, "stTextInput", "Name", "momentum try")
    fill(pg, "stTextInput", "Tags", "baseline, long-only")
    pg.get_by_role("button", name="Save name, tags and note").click()
    wait_idle(pg)
    pg.get_by_text("Saved name, tags and note of wf-b").wait_for()
    assert "momentum try" in value(pg, "stSelectbox", "Run")
    notes = json.loads((server["runs"] / "wf-b" / "annotations.json").read_text())
    assert notes["name"] == "momentum try" and notes["tags"] == ["baseline", "long-only"]
    shot(pg, "05-home-renamed")

    pg.get_by_role("button", name="Archive", exact=True).click()
    wait_idle(pg)
    pg.get_by_text("Archived wf-b").wait_for()
    assert json.loads((server["runs"] / "wf-b" / "annotations.json").read_text())["archived"] is True
    open_page(pg, f"{server['url']}/backtest")  # archived: gone from the other pages' pickers
    field(pg, "stSelectbox", "Run").click()
    options = pg.get_by_role("option").all_inner_texts()
    pg.keyboard.press("Escape")
    assert options and not any("wf-b" in o for o in options), options

    open_page(pg, f"{server['url']}/")
    pg.get_by_text("Archived", exact=True).click()  # show archived runs too
    wait_idle(pg)
    field(pg, "stSelectbox", "Run").click()
    pg.get_by_role("option").filter(has_text="wf-b").click()
    wait_idle(pg)
    assert "archived" in value(pg, "stSelectbox", "Run") and "wf-b" in value(pg, "stSelectbox", "Run")
    delete = pg.get_by_role("button", name="Delete", exact=True)
    assert delete.is_disabled()  # not confirmed yet
    pg.get_by_text("Delete wf-b and all its files").click()
    wait_idle(pg)
    delete.click()
    wait_idle(pg)
    pg.get_by_text("Deleted wf-b").wait_for()
    no_exceptions(pg)
    assert not (server["runs"] / "wf-b").exists() and (server["runs"] / "wf-a").exists()
    shot(pg, "06-home-deleted")


def test_html_report_downloads_opens_and_holds_the_charts(server, page):
    pg = page
    open_page(pg, f"{server['url']}/backtest?run=wf-a")
    with pg.expect_download() as info:
        pg.get_by_role("button", name="Download HTML report").click()
    path = server["base"] / "report.html"
    info.value.save_as(path)
    html = path.read_text(encoding="utf-8")
    assert info.value.suggested_filename == "wf-a-report.html" and html.startswith("<!doctype html>")
    pg.goto(path.as_uri())  # opens offline: plotly.js is inside the file
    pg.wait_for_selector(".js-plotly-plot")
    titles = [t.strip() for t in pg.locator(".js-plotly-plot .gtitle").all_text_contents()]
    assert "Portfolio — equity vs buy & hold, drawdown, exposure" in titles, titles
    assert "Monthly returns of the portfolio (%)" in titles
    assert "BPCL — equity vs buy & hold" in titles and "TATASTEEL — equity vs buy & hold" in titles
    assert pg.locator(".js-plotly-plot").count() == 5
    assert pg.get_by_text("Synthetic data — not real prices").count() >= 1
    shot(pg, "07-report")


def test_paper_ledger_appends_a_day_once(server, page):
    pg = page
    open_page(pg, f"{server['url']}/models")
    assert "Synthetic" in value(pg, "stSelectbox", "Data source")  # the model's training source
    pg.get_by_role("button", name="Record paper trade", exact=True).click()
    wait_idle(pg)
    pg.get_by_text(re.compile(r"Appended 2 entries for \d{4}-\d\d-\d\d")).wait_for()
    no_exceptions(pg)
    ledger = server["models"] / "wf-model" / "ledger.jsonl"
    first = ledger.read_bytes()
    assert len(first.decode().splitlines()) == 2
    pg.locator(".js-plotly-plot .gtitle").filter(has_text="Forward (paper) equity since deployment").wait_for()
    shot(pg, "08-paper-appended")
    pg.get_by_role("button", name="Record paper trade", exact=True).click()
    wait_idle(pg)
    pg.get_by_text(re.compile(r"Nothing appended: already recorded up to")).wait_for()
    assert ledger.read_bytes() == first
    shot(pg, "09-paper-refused")
