"""ftlab lab in a real browser: launch a short run from the page, watch it finish, compare it with another run."""

import json
import shutil

import pytest
from helpers import ARTIFACTS, CHROMEDRIVER, CHROMIUM, QUICK, shared_run, web_page

from ftlab.lab import Launcher, answers_html, default_option, group_options


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    """An outputs folder holding one finished run (the shared LoRA run)."""
    root = tmp_path_factory.mktemp("outputs")
    shutil.copytree(shared_run(tmp_path_factory), root / "runs" / "lora_run")
    return root


@pytest.fixture
def lab_url(lab_root, tmp_path):
    with web_page("ftlab.lab", [str(lab_root)], tmp_path / "lab.log") as url:
        yield url


def test_group_options_are_read_from_conf():
    assert {"lora", "full", "prefix"} <= set(group_options("strategy"))
    assert {"none", "4bit"} <= set(group_options("quant"))
    assert (default_option("strategy"), default_option("model")) == ("full", "tiny")  # conf/config.yaml's defaults


def test_a_second_launch_into_a_running_directory_is_refused(tmp_path):
    launcher = Launcher(tmp_path)
    try:
        message, run_dir = launcher.start("same", ["strategy=lora"], "train.max_steps=3")
        assert message.startswith("started: ") and run_dir == tmp_path / "lab" / "same"
        message, again = launcher.start("same", ["strategy=lora"], "")
        assert message.startswith("refused: ") and "still running" in message and again is None
        assert launcher.start("bad", [], "'unclosed")[0].startswith("refused: overrides:")
    finally:
        launcher.stop_all()


def test_answers_mark_regressions(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {
            "question": "Q1",
            "expected": ["30 days"],
            "tuned_answer": "30 days",
            "base_correct": False,
            "tuned_correct": True,
        },
        {
            "question": "Q2",
            "expected": ["90 days"],
            "tuned_answer": "60 days",
            "base_correct": True,
            "tuned_correct": False,
        },
    ]
    (run / "answers.json").write_text(json.dumps({"answers": rows}))
    page = answers_html([{"dir": str(run), "label": "a run"}])
    assert page.count('class="right"') == 1 and page.count('class="regression"') == 1 and "✗ regression" in page


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed")
def test_launch_a_run_watch_it_finish_and_compare(lab_root, lab_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 180)
    browser.get(lab_url)

    def tab(name):
        wait.until(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == name])
        next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == name).click()

    tab("Launch")
    overrides = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#overrides textarea, #overrides input"))
    overrides.clear()
    overrides.send_keys(" ".join(o for o in QUICK))
    name = browser.find_element(By.CSS_SELECTOR, "#name textarea, #name input")
    name.clear()
    name.send_keys("from_the_lab")
    browser.find_element(By.ID, "start").click()
    # The launched run is a whole ftlab process (imports, two evaluations) on cores the other worker's tests share:
    # under a loaded CI host it took over 180 s once, so its finish gets a longer wait than a page element.
    WebDriverWait(browser, 420).until(lambda d: "finished (exit" in d.find_element(By.ID, "launch-status").text)
    console = browser.find_element(By.CSS_SELECTOR, "#console textarea").get_property("value")
    assert "finished (exit 0)" in browser.find_element(By.ID, "launch-status").text, console[-3000:]
    assert "train: step 3/3" in console and console.rstrip().endswith("results.json")  # the run's own terminal
    assert json.loads((lab_root / "lab" / "from_the_lab" / "results.json").read_text())["status"] == "ok"

    tab("Runs")
    browser.find_element(By.ID, "refresh").click()
    boxes = "#pick-runs input[type=checkbox]"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, boxes)) == 2)
    for box in browser.find_elements(By.CSS_SELECTOR, boxes):
        box.click()
    browser.find_element(By.ID, "compare").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answers-table tr"))
    numbers = browser.find_element(By.ID, "numbers").text
    assert "lora" in numbers and "full" in numbers  # the shared LoRA run beside the launched (default: full) one
    header = browser.find_elements(By.CSS_SELECTOR, "#answers-table th")
    assert len(header) == 3  # the question, then each run's answers side by side
    assert browser.find_elements(By.CSS_SELECTOR, "#answers-table td.right, #answers-table td.wrong")
    browser.set_window_size(1400, 2600)  # the whole compare view: numbers, curves and the answers side by side
    shot = tmp_path / "lab.png"
    assert browser.save_screenshot(str(shot))
    artifact = ARTIFACTS / "lab-compare.png"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifact)
