"""The demo as a person uses it: ``hf-primaldual-demo CHECKPOINT`` serving in its own process, opened in a real
browser (Playwright driving the system's Chromium: Playwright's own browser download is not needed), a real
JapaneseVowels file uploaded, Classify clicked, the answer read off the page."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hf_primaldual.data import SHIPPED_UEA_DIR
from hf_primaldual.demo import classify_series, load_demo_model, read_series_file

VOWELS_TEST = SHIPPED_UEA_DIR / "JapaneseVowels" / "JapaneseVowels_TEST.ts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def system_chromium() -> str:
    found = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
    if found is None:
        pytest.skip(f"no Chromium on PATH (tried {', '.join(CHROMIUM_NAMES)}): install it (Debian: apt-get install -y "
                    "chromium; .ci/run does) to run the browser test")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(vowels_checkpoint):
    """The URL of ``hf-primaldual-demo`` serving the trained checkpoint in a child process."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hf_primaldual.cli.demo", str(vowels_checkpoint), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240  # imports take a minute on a busy 2-core machine
        while True:
            if server.poll() is not None:
                pytest.fail(f"hf-primaldual-demo exited with {server.returncode}:\n{server.stdout.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"hf-primaldual-demo did not answer on {url} within 240 s")
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_person_classifies_a_series_in_the_browser(served, vowels_checkpoint):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
    chromium = system_chromium()
    series = read_series_file(VOWELS_TEST)
    expected = next(iter(classify_series(load_demo_model(vowels_checkpoint), series.series[2]).ranking))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.goto(served)
            page.locator("input[type=file]").set_input_files(str(VOWELS_TEST))
            page.get_by_label("Series number in the file").fill("3")
            page.get_by_role("button", name="Classify").click()
            answer = page.get_by_text("the file says")
            answer.wait_for(timeout=120_000)
            assert answer.inner_text().startswith(f"Series 3 of 370 (case 2, {len(series.series[2])} time steps): {expected}")
            assert page.get_by_test_id("label-output-value").inner_text() == expected
            assert page.get_by_role("img").count() >= 2  # the series plot and the attention maps
        finally:
            browser.close()
