"""A person rates in a real browser: headless Chromium clicks like on the gateway's page.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`);
skipped with that reason when they are missing.
"""

import shutil
import time

import pytest

from rewardloop.config import FeedbackConfig, RewardConfig
from rewardloop.feedback.gateway.server import FeedbackGateway
from rewardloop.feedback.sources.human_source import HumanReward
from rewardloop.scoring import ScoreRequest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver: apt-get install -y chromium chromium-driver",
)
TOKEN = "page-token"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.mark.parametrize("scale", ["like", "stars"])
def test_click_in_chromium_reaches_the_store_and_the_worker(tmp_path, browser, scale):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = FeedbackConfig(
        store_path=str(tmp_path / "fb.sqlite3"), http_port=0, grpc_port=0, token=TOKEN
    )
    gateway = FeedbackGateway(cfg)
    addresses = gateway.start()
    source = HumanReward.from_config(
        RewardConfig(kind="human", url=addresses["grpc_target"], timeout_s=5), token=TOKEN
    )
    try:
        source.score(
            [
                ScoreRequest(
                    id="traj-1", prompt="A headline for ana:", completion="Local team wins the cup"
                )
            ]
        )

        browser.get(f"{addresses['rate_url']}?scale={scale}&token={TOKEN}")
        assert "Local team wins the cup" in browser.find_element(By.ID, "item-0").text
        rater = browser.find_element(By.ID, "rater").text
        button = "like-0" if scale == "like" else "star-0-4"
        browser.find_element(By.ID, button).click()
        WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "message")))
        assert "saved" in browser.find_element(By.ID, "message").text
        assert browser.find_elements(By.ID, "empty")  # nothing left to rate

        rating = gateway.core.store.rating("traj-1")
        expected = 1.0 if scale == "like" else 0.75
        assert rating["value"] == expected and rating["rater"] == rater

        got, deadline = {}, time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = dict(source.poll(0.5))
        assert got["traj-1"].reward == expected and got["traj-1"].rater == rater
    finally:
        source.close()
        gateway.stop()
