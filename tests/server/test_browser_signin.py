"""Signing in on the device verification page in a real headless Chromium (Debian's).

Driven through WebDriver (selenium + Debian's chromium-driver): the browser
loads the page from a real `streamctl server run`, the test types into the
form fields and clicks Approve, and the browser submits the form itself. A
plain httpx OAuth client then polls the token endpoint.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.server.helpers import DEVICE_GRANT, PASSWORDS, free_port, make_server_dir, run_server


def _browser(profile: Path) -> webdriver.Chrome:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "run scripts/system-deps.sh (chromium, chromium-driver)"
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_sign_in_on_the_verification_page_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    result = make_server_dir(tmp_path / "srv", f"sqlite:///{tmp_path / 'db.sqlite'}",
                             f"http://127.0.0.1:{port}")
    with run_server(result.config_path, port) as server, httpx.Client(base_url=server.url) as http:
        code = http.post("/oauth/device_authorization", data={"client_id": "streamctl"}).json()
        browser = _browser(tmp_path / "chromium-profile")
        try:
            browser.set_page_load_timeout(60)
            browser.get(code["verification_uri_complete"])
            field = browser.find_element(By.ID, "user_code")
            assert field.get_attribute("value") == code["user_code"]  # prefilled from the URL
            browser.find_element(By.ID, "username").send_keys("alice")
            browser.find_element(By.ID, "password").send_keys(PASSWORDS["alice"])
            browser.find_element(By.ID, "approve").click()
            WebDriverWait(browser, 30).until(
                expected_conditions.text_to_be_present_in_element((By.ID, "message"), "Signed in")
            )
        finally:
            browser.quit()
        time.sleep(1.1)  # the poll interval
        tokens = http.post("/oauth/token", data={
            "grant_type": DEVICE_GRANT, "device_code": code["device_code"],
            "client_id": "streamctl"})
        assert tokens.status_code == 200, tokens.text
        me = http.get("/v1/whoami",
                      headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
        assert me.json()["subject"] == "alice"
