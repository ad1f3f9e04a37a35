"""The web page of ``tvscript serve`` in a real headless Chromium (Playwright, sync API).

Needs Debian's ``chromium`` package. Without it the tests skip, unless CI is set: then a
missing browser is a failure, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import tvscript
from conftest import ServerThread
from tvscript.serve import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# A rendered turn: "NAME: words" (names are upper-cased by the page's CSS).
TURN = re.compile(r"^[^\W_][^:()\[\]\"]{0,39}?( \([^()]*\))?: \S")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str | None:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="module")
def server(tiny_run):
    with ServerThread(create_app(tvscript.load(tiny_run))) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        if _in_ci():
            pytest.fail("chromium is not installed but CI is set: install it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI=true makes this a failure")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))

    def on_console(msg) -> None:
        # Chromium logs every 4xx/5xx response as a console error; the error tests cause those.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)
    page.goto(server.url + "/")
    page.wait_for_selector("#cast input[type=checkbox]")
    yield page
    context.close()
    assert not problems, problems


def test_generate_streams_a_scene(page, server):
    import httpx

    assert page.inner_text("#model-name") == "tiny"
    assert page.inner_text("#model-ppl") == "n/a"  # the tiny run has no test metrics
    assert page.locator("#cast input").count() == 6  # all the tiny model's speakers (up to 12)

    page.select_option("#speaker", "george")
    page.fill("#max_new_tokens", "80")
    page.fill("#seed", "42")
    page.click("#generate")
    page.wait_for_selector("#script p.turn")  # streamed text appears
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')")

    text = page.inner_text("#script")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].startswith("GEORGE: ")
    assert all(TURN.match(line) for line in lines), lines
    weight = page.eval_on_selector("#script .speaker", "el => getComputedStyle(el).fontWeight")
    assert int(weight) >= 600  # speaker names are bold
    assert "seed 42" in page.inner_text("#status")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)

    # The page sent what the form shows: the JSON API gives the same scene for that seed.
    cast = page.eval_on_selector_all("#cast input:checked", "els => els.map(e => e.value)")
    form = {key: float(page.input_value(f"#{key}")) for key in ("temperature", "top_p")}
    form["no_self_reply"] = page.is_checked("#no_self_reply")
    same = httpx.post(server.url + "/api/generate", json={"prime": "george:", "max_new_tokens": 80, "seed": 42,
                                                          "cast": cast, **form}).json()
    assert [line.lower() for line in lines] == [line.lower() for line in same["text"].splitlines() if line.strip()]

    with page.expect_download() as info:
        page.click("#download-fountain")
    fountain = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename == "tvscript-42.fountain" and fountain.startswith("GEORGE\n")
    with page.expect_download() as info:
        page.click("#download-text")
    assert Path(info.value.path()).read_text(encoding="utf-8") == same["text"]


def test_errors_are_shown_in_one_line(page):
    page.select_option("#speaker", "")
    page.fill("#prime", "zzqx blorf")
    page.click("#generate")
    page.wait_for_selector("#status.error")
    assert "none of the prime's words" in page.inner_text("#status")
    assert page.is_enabled("#generate")

    page.fill("#max_new_tokens", "5000")
    page.select_option("#speaker", "jerry")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('max_new_tokens')")


def test_phone_width(page, server):
    page.set_viewport_size({"width": 375, "height": 740})
    page.fill("#max_new_tokens", "40")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
