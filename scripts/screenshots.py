"""Regenerate docs/img/demo.png: the browser demo after a prediction on a long clip.

Starts `bentoml serve ser.serving.service:EmotionService` on a free 127.0.0.1 port with the packaged model
(the store in $BENTOML_HOME or ~/bentoml, tag $SER_MODEL_TAG or ser_emotion:latest) unless `--url`
names a running service; builds a long clip by joining four clips of the pipeline's own corpus
(data/raw, written by `dvc repro`: synthetic with the default params) from actor 08, a test-split
actor the model never trained on (neutral, happy, sad, angry; statement 1, take 1), unless `--clip`
names files; uploads it on the /demo/ page in headless Chromium (Selenium with Debian's chromium +
chromium-driver, as tests/e2e/test_demo_browser.py) and saves the whole page as a PNG.

    .venv/bin/python -m scripts.screenshots
    .venv/bin/python -m scripts.screenshots --url http://127.0.0.1:3000 --clip a.wav b.flac --out docs/img
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.support import BROWSER_FLAGS, Served

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = [REPO / f"data/raw/Actor_08/03-01-{code}-01-01-08.wav" for code in ("01-01", "03-02", "04-02", "05-02")]
CHROMIUM_FLAGS = [
    *BROWSER_FLAGS,
    "--window-size=1000,900",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
]


def join_clips(paths: list[Path], out: Path, rate: int = 16000, gap_s: float = 0.0) -> Path:
    """Decode `paths`, mix to mono, resample to `rate` if needed, and write them one after another as a WAV.

    Args:
        paths: audio files (anything soundfile reads).
        out: the WAV to write.
        rate: output sample rate.
        gap_s: silence between clips.

    Returns:
        `out`.
    """
    import librosa

    parts = []
    for path in paths:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if sr != rate:
            wave = librosa.resample(wave, orig_sr=sr, target_sr=rate)
        parts += [wave, np.zeros(int(gap_s * rate), np.float32)]
    sf.write(out, np.concatenate(parts), rate, subtype="PCM_16")
    return out


@contextlib.contextmanager
def service(url: str | None) -> Iterator[str]:
    """`url` as is, or a fresh `bentoml serve` of the service for the duration of the block."""
    if url:
        yield url.rstrip("/")
        return

    with Served("ser.serving.service:EmotionService", cwd=REPO) as served:
        yield served


def chromium(profile: Path):
    """Headless Chromium through Debian's chromedriver, with a fresh profile in `profile`."""
    from selenium import webdriver

    binary = os.environ.get("SER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if not binary or not os.access(driver, os.X_OK):
        sys.exit("needs chromium and chromedriver: apt-get install chromium chromium-driver (make setup)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def screenshot(url: str, clip: Path, out: Path, timeout: float = 120) -> dict:
    """Upload `clip` on the demo page at `url`/demo/ and save the whole page to `out`; the page's summary.

    Raises:
        RuntimeError: the page showed an error instead of a prediction.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="ser-screenshots-") as profile:
        driver = chromium(Path(profile))
        try:
            driver.get(f"{url}/demo/")
            driver.find_element(By.ID, "file").send_keys(str(clip))
            runs = lambda d: d.find_element(By.ID, "demo").get_attribute("data-runs")  # noqa: E731
            WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: runs(d) == "1")
            if driver.find_element(By.ID, "demo").get_attribute("data-state") != "done":
                raise RuntimeError(f"the page shows an error: {driver.find_element(By.ID, 'error').text}")
            driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
            size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip_rect = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip_rect}
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            return {
                "label": driver.find_element(By.ID, "label").text,
                "meta": driver.find_element(By.ID, "meta").text,
                "windows": len(driver.find_elements(By.CSS_SELECTOR, "#timeline .window")),
            }
        finally:
            driver.quit()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, make the clip, start the service if needed, and write the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start one on a free port)")
    parser.add_argument("--clip", nargs="+", type=Path, help="audio files to join (default: data/raw actor 08)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for demo.png")
    args = parser.parse_args(argv)
    clips = args.clip or DEFAULT_CLIPS
    missing = [str(p) for p in clips if not p.is_file()]
    if missing:
        sys.exit(f"clips not found: {', '.join(missing)} (run `dvc repro ingest` or pass --clip FILES)")
    with tempfile.TemporaryDirectory(prefix="ser-screenshots-") as tmp:
        clip = join_clips(clips, Path(tmp) / "four-emotions.wav")
        with service(args.url) as url:
            summary = screenshot(url, clip, args.out / "demo.png")
    print(f"{args.out / 'demo.png'}: {summary['label']}; {summary['meta']}; {summary['windows']} windows")


if __name__ == "__main__":
    main()
