"""The browser demo end to end: headless Chromium (Selenium) against a real `bentoml serve` on 127.0.0.1.

The tiny untrained model is packaged into a tmp BENTOML_HOME (as in test_service_http.py) and served;
the demo page at /demo/ comes from that same process. Each test loads the page, uploads files written
with soundfile in tmp_path (or records from Chromium's fake microphone), waits for the page's
`data-runs` counter to move, and compares what the page shows with what `/predict` answers for the same
file when called directly: the bars carry the API's probabilities, a long clip's timeline has one
entry per window with the window's label, and a bad file shows the service's own error message.

Needs Debian's `chromium` and `chromium-driver` (`make setup` installs them) and the `selenium`
package; skips only when no Chromium binary is found at all.

    python -m pytest tests/e2e/test_demo_browser.py -q
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.support import BROWSER_FLAGS, CLASSES, Served, tone

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PACKAGE = (
    "import sys; from pathlib import Path; from tests.support import package_tiny_model as p; "
    "print(p(Path(sys.argv[1]))['tag'])"
)
CHROMIUM_FLAGS = [
    *BROWSER_FLAGS,
    "--window-size=1100,1000",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
WAIT_S = 90


def find_chromium() -> str | None:
    """$SER_CHROMIUM, or the first Chromium on PATH (Debian's package installs /usr/bin/chromium)."""
    candidates = [
        os.environ.get("SER_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def find_chromedriver() -> str | None:
    """chromedriver from Debian's chromium-driver package (on PATH or beside the browser)."""
    candidates = [shutil.which("chromedriver"), "/usr/lib/chromium/chromedriver"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of `bentoml serve ser.serving.service:EmotionService` with the tiny model in its own store."""
    work = tmp_path_factory.mktemp("demo")
    home = work / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", PACKAGE, str(work)], cwd=REPO, env=env, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = Served("ser.serving.service:EmotionService", env={"BENTOML_HOME": str(home)}, cwd=REPO)
    with served as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium through chromedriver, with a fresh profile and a fake microphone."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (chromium / chromium-browser / $SER_CHROMIUM): run `make setup`")
    driver_path = find_chromedriver()
    assert driver_path, "Chromium is installed but chromedriver is not: apt-get install chromium-driver (make setup)"
    from selenium import webdriver

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server: str):
    """The demo page freshly loaded (idle); after the test, no JavaScript error may have been logged."""
    browser.get(f"{server}/demo/")
    assert attr(browser, "data-state") == "idle"
    yield browser
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    script_errors = [m for m in errors if "Failed to load resource" not in m]  # the 4xx answers log as SEVERE
    assert not script_errors, script_errors


def attr(driver, name: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "demo").get_attribute(name)


def wait_for_run(driver, before: int) -> str:
    """Wait until the page finished request number `before + 1`; its state (done / error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: int(attr(d, "data-runs")) > before)
    return attr(driver, "data-state")


def upload(driver, path: Path) -> str:
    """Choose `path` in the page's file input; the state once the page shows the answer."""
    from selenium.webdriver.common.by import By

    before = int(attr(driver, "data-runs"))
    driver.find_element(By.ID, "file").send_keys(str(path))
    return wait_for_run(driver, before)


def api(server: str, path: Path) -> requests.Response:
    """The service's own answer for the same file."""
    with path.open("rb") as f:
        return requests.post(
            f"{server}/predict", files={"audio": (path.name, f, "application/octet-stream")}, timeout=60
        )


def error_message(resp: requests.Response) -> str:
    """What the page shows of a 4xx body, which always has the one shape {"error": m, "code": c}."""
    body = resp.json()
    assert set(body) == {"error", "code"}, body
    return f"{body['error']} [{body['code']}]"


def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> Path:
    sf.write(path, tone(seconds, rate, channels, freq), rate, subtype="PCM_16")
    return path


def shown_bars(driver) -> list[tuple[str, float, str]]:
    """(class, data-p, visible value text) of every bar, in page order."""
    from selenium.webdriver.common.by import By

    shown = []
    for bar in driver.find_elements(By.CSS_SELECTOR, "#bars .bar"):
        value = bar.find_element(By.CLASS_NAME, "value").text
        shown.append((bar.get_attribute("data-label"), float(bar.get_attribute("data-p")), value))
    return shown


def test_page_is_served_by_the_service_and_self_contained(server: str, page) -> None:
    assert requests.get(f"{server}/demo", timeout=10).url == f"{server}/demo/"  # redirected to the folder
    for asset in ("demo.js", "demo.css", "recorder-worklet.js"):
        assert requests.get(f"{server}/demo/{asset}", timeout=10).status_code == 200, asset
    assert requests.get(f"{server}/demo/missing.js", timeout=10).status_code == 404
    resources = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(f"{server}/demo/") for r in resources), resources
    assert page.title.startswith("Speech emotion recognition")
    assert requests.get(f"{server}/readyz", timeout=5).status_code == 200  # the API beside it is untouched


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_demo_app_without_its_files_answers_404_and_says_why(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from ser.serving.demo import demo_app

    client = TestClient(Starlette(routes=[Mount("/demo", app=demo_app(tmp_path / "absent"))]))
    resp = client.get("/demo/")
    assert resp.status_code == 404 and "demo page is not in this build" in resp.text


def test_upload_shows_the_api_probabilities_as_bars(server: str, page, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    clip = write_wav(tmp_path / "clip.wav", 1.0, freq=330.0)
    expected = api(server, clip).json()
    assert upload(page, clip) == "done"
    bars = shown_bars(page)
    assert [b[0] for b in bars] == list(expected["probabilities"]) == CLASSES
    for name, p, text in bars:
        assert p == pytest.approx(expected["probabilities"][name], abs=1e-6), name
        assert text.endswith("%") and abs(float(text[:-1]) - 100 * p) <= 0.05 + 1e-9, (name, text, p)
    top = page.find_element(By.CSS_SELECTOR, "#bars .bar.top").get_attribute("data-label")
    assert top == expected["label"] and page.find_element(By.ID, "label").text.startswith(expected["label"])
    assert "clip.wav" in page.find_element(By.ID, "meta").text
    assert not page.find_element(By.ID, "timeline-block").is_displayed()  # one window: no timeline


def test_long_clip_timeline_has_one_entry_per_window(server: str, page, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    clip = write_wav(tmp_path / "long.wav", 5.0, rate=22050, channels=2)
    expected = api(server, clip).json()
    assert len(expected["windows"]) > 2
    assert upload(page, clip) == "done"
    assert page.find_element(By.ID, "timeline-block").is_displayed()
    columns = page.find_elements(By.CSS_SELECTOR, "#timeline .window")
    assert len(columns) == len(expected["windows"])
    for column, window in zip(columns, expected["windows"], strict=True):
        assert column.get_attribute("data-label") == window["label"]
        assert float(column.get_attribute("data-start")) == pytest.approx(window["start_s"])
        assert column.find_element(By.CLASS_NAME, "cap").get_attribute("textContent") == window["label"]
        assert len(column.find_elements(By.CLASS_NAME, "seg")) == len(CLASSES)
    assert page.find_element(By.ID, "axis-end").text == f"{max(expected['duration_s'], 5.0):.2f} s"
    widths = [c.rect["width"] for c in columns]
    assert min(widths) > 0 and sum(widths) > 500  # drawn, spanning the strip
    assert [b[1] for b in shown_bars(page)] == pytest.approx(list(expected["probabilities"].values()), abs=1e-6)


@pytest.mark.parametrize("case", ["random bytes", "over the duration cap", "over the upload cap"])
def test_bad_file_shows_the_service_error(server: str, page, tmp_path: Path, case: str) -> None:
    from selenium.webdriver.common.by import By

    noise = np.random.default_rng(1).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()
    if case == "random bytes":  # 400 from the decoder (raised in the API method)
        bad = tmp_path / "x.wav"
        bad.write_bytes(noise[:4000])
    elif case == "over the duration cap":  # 413 from the decoder: the tiny model's serve cap is 10 s
        bad = write_wav(tmp_path / "eleven.wav", 11.0)
    else:  # 413 from the upload gate (ser.serving.gate.UploadGate): the cap is 2 MiB
        bad = tmp_path / "big.wav"
        bad.write_bytes(noise)
    resp = api(server, bad)
    assert 400 <= resp.status_code < 500
    message = error_message(resp)
    assert upload(page, bad) == "error"
    box = page.find_element(By.ID, "error")
    assert box.is_displayed()
    assert box.find_element(By.CLASS_NAME, "message").text == message
    assert bad.name in box.text and f"HTTP {resp.status_code}" in box.text
    assert not page.find_element(By.ID, "result").is_displayed()
    assert upload(page, write_wav(tmp_path / "fine.wav", 1.0)) == "done"  # the page recovers
    assert not box.is_displayed() and len(shown_bars(page)) == len(CLASSES)


def test_microphone_recording_is_sent_as_wav(server: str, page) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = page.find_element(By.ID, "record")
    before = int(attr(page, "data-runs"))
    button.click()
    WebDriverWait(page, 20, poll_frequency=0.1).until(lambda d: attr(d, "data-state") == "recording")
    time.sleep(1.5)
    button.click()
    assert wait_for_run(page, before) == "done", page.find_element(By.ID, "error").text
    meta = page.find_element(By.ID, "meta").text.split(" · ")
    assert meta[0] == "recording.wav"
    assert 1.0 <= float(meta[1].removesuffix(" s")) <= 10.0  # what the service decoded from the page's WAV
    assert meta[2] in ("44100 Hz", "48000 Hz", "16000 Hz")  # the AudioContext's rate, in the WAV header
    assert len(shown_bars(page)) == len(CLASSES) and button.text == "Record"
