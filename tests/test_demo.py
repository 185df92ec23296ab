"""python -m ftlab.demo in a real browser: headless Chromium picks a held-out question, both answers appear."""

import json
import shutil
import subprocess
import sys

import pytest
from helpers import ARTIFACTS, CHROMEDRIVER, CHROMIUM, shared_run, web_page

ARTIFACT = ARTIFACTS / "demo.png"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture
def demo_url(demo_run, tmp_path):
    """The demo, started as a person starts it, on a free localhost port; stopped after the test."""
    log = tmp_path / "demo.log"
    with web_page("ftlab.demo", [str(demo_run)], log) as url:
        assert f"Running on local URL:  {url.rstrip('/')}" in log.read_text()  # localhost only, no share link
        yield url


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),  # checked before the run is trained and the demo started
    reason="chromium and chromedriver are not installed (bash .ci/install-browser installs them)",
)
def test_browser_shows_base_and_tuned_answers_side_by_side(demo_run, browser, demo_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    held_out = json.loads((demo_run / "answers.json").read_text())["answers"][0]
    wait = WebDriverWait(browser, 120)
    browser.get(demo_url)

    def answers(driver):
        return [e.get_property("value") for e in driver.find_elements(By.CSS_SELECTOR, "[id^=answer-] textarea")]

    # Pick the question from the held-out list, as a person does: type part of it, click the option.
    pick = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#pick input"))
    pick.click()
    pick.send_keys(held_out["question"][:25])
    option = f'li[role=option][aria-label="{held_out["question"]}"]'
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, option)).click()
    wait.until(lambda d: len(answers(d)) == 2 and all(answers(d)))
    base, tuned = answers(browser)
    # The same answers as the run's own evaluation (greedy, its settings), and they differ: base vs fine-tuned.
    assert (base, tuned) == (held_out["base_answer"], held_out["tuned_answer"]) and base != tuned
    expected = browser.find_element(By.ID, "expected").text
    assert f"Expected: {', '.join(held_out['expected'])}" in expected
    numbers = browser.find_element(By.ID, "numbers").text
    assert "lora" in numbers and "→" in numbers  # the run's key numbers, base -> fine-tuned
    base_box = browser.find_element(By.ID, "answer-base-0")
    tuned_box = browser.find_element(By.ID, "answer-tuned-0")
    assert base_box.location["y"] == tuned_box.location["y"] and base_box.location["x"] < tuned_box.location["x"]

    # The page asks nothing of any other host: no analytics, no fonts or scripts from a CDN.
    requested = {
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    }
    assert requested and {u for u in requested if not u.startswith((demo_url, "data:", "blob:"))} == set()

    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACT)

    # A question of one's own: answered too, with no expected facts to check.
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea, #question input")
    box.clear()
    box.send_keys("Hello, who are you?", Keys.ENTER)
    wait.until(lambda d: "question of your own" in d.find_element(By.ID, "expected").text)
    wait.until(lambda d: all(answers(d)))


def test_demo_refuses_bad_input_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.demo", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'missing'}: no such directory"


def test_numbers_table_reads_results():
    from ftlab.demo import Contender, numbers_table

    run = Contender(
        "r1",
        None,
        None,
        None,
        results={
            "choices": {"strategy": "lora", "quant": "4bit", "objective": "sft"},
            "train": {"steps": 8},
            "eval": {"answer_accuracy": 0.5, "base_answer_accuracy": 0.0, "loss": 0.4, "base_loss": 3.7634},
        },
    )
    assert numbers_table([run]).splitlines()[-1] == "| r1 | lora | 4bit | sft | 0.00 → 0.50 | 3.763 → 0.400 | 8 |"
