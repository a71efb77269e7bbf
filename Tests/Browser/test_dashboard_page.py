"""A real browser against a live hub: headless Chromium opens the built-in page while
`hub demo` streams simulated devices, and checks what a person would see.

Needs HUB_BIN (the hub executable), Debian's chromium and chromium-driver, and selenium.
The screenshot lands in $BROWSER_OUTPUT (default: Tests/Browser/output/dashboard.png).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HUB_BIN = os.environ.get("HUB_BIN")
OUTPUT = Path(os.environ.get("BROWSER_OUTPUT", Path(__file__).parent / "output"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_hub():
    if not HUB_BIN:
        pytest.fail("HUB_BIN must point at the hub executable (CI sets it)")
    folder = tempfile.mkdtemp(prefix="hub-browser-")
    os.chmod(folder, 0o755)
    port = free_port()
    process = subprocess.Popen(
        [HUB_BIN, "demo", "--data-dir", folder, "--port", str(port), "--devices", "3", "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    deadline = time.time() + 120
    while url is None and time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"dashboard\s+(http://\S+)", line)
        if match:
            url = match.group(1).replace("localhost", "127.0.0.1")
    try:
        assert url, "hub demo did not print the dashboard's address"
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        pid_file = Path(folder, "postgres", "postmaster.pid")
        if pid_file.exists():  # the hub did not stop its cluster: stop it here
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            time.sleep(2)
        shutil.rmtree(folder, ignore_errors=True)




def test_the_page_shows_a_live_device_live_points_and_a_command_that_succeeds(demo_hub, browser):
    wait = WebDriverWait(browser, 30)
    browser.get(demo_hub + "&device=demo-01")

    # The device shows online.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#devices li.sel .dot.on"))
    assert "demo-01" in browser.find_element(By.CSS_SELECTOR, "#devices li.sel").text
    assert browser.find_element(By.ID, "conn").text == "live"

    # A chart receives live points: its latest value changes while we watch.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-metric="count"] h3 span'))
    first = browser.find_element(By.CSS_SELECTOR, '[data-metric="count"] h3 span').text
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-metric="count"] h3 span').text not in ("", first))
    assert browser.find_elements(By.CSS_SELECTOR, '[data-metric="temp"] canvas')

    # A command sent from the page reaches succeeded.
    browser.find_element(By.ID, "cmdname").send_keys("set_interval")
    params = browser.find_element(By.ID, "cmdparams")
    params.clear()
    params.send_keys('{"seconds": 0.5}')
    browser.find_element(By.CSS_SELECTOR, "#cmdform button").click()
    wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "#cmdlog .status") if e.text == "succeeded"])

    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(OUTPUT / "dashboard.png"))
