"""The viewer panel in a real browser: headless Chromium (Debian's) driven by Playwright against ns-viewer.

On a shaped sample-scene checkpoint: jump to training view 0, arm "Select entity", click the yellow box on the
canvas, show the `jacobinerf_selection` output, and check from the screenshots' pixels that the highlight covers
the box and not the rest; then recolor the blue ball and check it turned red. Object regions come from the
screenshot before the click (colour thresholds), so the check does not depend on the viewer's camera maths.
Set JACOBINERF_SCREENSHOTS=DIR to keep the screenshots.

The viewer runs with ``--viewer.max-num-display-images 0``: with training-image thumbnails on the camera frustums,
headless Chromium's SwiftShader WebGL logs "glTexStorage2D: One or more image dimensions are not positive" and the
page stops showing new frames (the server keeps sending them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see scripts/test.sh)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; scripts/test.sh does it)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def viewer_url(trained_run):
    port = free_port()
    log = open(trained_run / "viewer_test.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nerfstudio.scripts.viewer.run_viewer",
            "--load-config",
            str(trained_run / "config.yml"),
            "--viewer.websocket-port",
            str(port),
            "--viewer.websocket-host",
            "127.0.0.1",
            "--viewer.max-num-display-images",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert process.poll() is None, (trained_run / "viewer_test.log").read_text()[-3000:]
            time.sleep(1)
    yield url
    process.terminate()
    process.wait(timeout=30)


def row(page, label: str):
    return page.get_by_text(label, exact=True).locator("xpath=ancestor::div[3]")


def status(page) -> str:
    return row(page, "Status").locator("input:visible").first.input_value()


def wait_for(condition, timeout: float = 120.0, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError("timed out waiting for the viewer")


def screenshot(page, region, path: Path) -> np.ndarray:
    page.screenshot(path=str(path), clip=region)
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255


def rendered(page, region, path: Path, unlike: np.ndarray = None, timeout: float = 300.0) -> np.ndarray:
    """The render area once the viewer shows a full-resolution frame (128 px) that differs from ``unlike`` and has
    stopped changing. Rendering runs on the CPU here, so frames arrive seconds after the action that asked for them.
    """
    previous = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(2.0)
        full_before = "128x" in page.get_by_text("Resolution:").inner_text()
        current = screenshot(page, region, path)
        full = full_before and "128x" in page.get_by_text("Resolution:").inner_text()
        changed = unlike is None or (np.abs(current - unlike).max(axis=-1) > 0.1).mean() > 0.02
        if full and changed and previous is not None and np.abs(current - previous).mean() < 0.002:
            return current
        previous = current
    raise AssertionError("the viewer never showed the expected frame")


def choose_output(page, name: str) -> None:
    select = page.locator(f'[id="{page.get_by_text("Output type", exact=True).get_attribute("for")}"]')

    def offered() -> bool:
        select.click()
        time.sleep(0.5)
        found = page.get_by_role("option", name=name, exact=True).count() > 0
        if not found:
            page.keyboard.press("Escape")
        return found

    wait_for(offered, timeout=120, every=2)
    page.get_by_role("option", name=name, exact=True).click()


def dilate(mask: np.ndarray, radius: int = 6) -> np.ndarray:
    """The mask grown by ``radius`` pixels: a margin where blur and boundaries are forgiven."""
    grown = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            grown |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return grown


def centre_of(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    index = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[index]), int(xs[index])


def armed_click(page, button: str, region, mask: np.ndarray, done: str) -> None:
    """Press a panel button that arms one click, click the centre of ``mask`` on the canvas, wait for ``done``."""
    y, x = centre_of(mask)
    page.get_by_role("button", name=button).click()
    wait_for(lambda: status(page).startswith("Click in the scene"))
    page.mouse.click(region["x"] + x, region["y"] + y)
    wait_for(lambda: status(page).startswith(done))


def test_select_and_recolor_in_the_browser(viewer_url, tmp_path):
    keep = Path(os.environ["JACOBINERF_SCREENSHOTS"]) if os.environ.get("JACOBINERF_SCREENSHOTS") else tmp_path
    keep.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 600})
        page.goto(viewer_url)
        page.get_by_role("button", name="Go to training view").wait_for(timeout=120_000)
        max_res = row(page, "Max res").locator("input:visible").first
        max_res.fill("128")
        max_res.press("Enter")
        wait_for(lambda: "128x" in page.get_by_text("Resolution:").inner_text())
        page.get_by_role("button", name="Go to training view").click()
        wait_for(lambda: status(page).startswith("At training view 0"))
        canvas = page.locator("canvas").first.bounding_box()
        panel_left = page.get_by_text("Connected", exact=True).bounding_box()["x"] - 20
        region = {"x": canvas["x"], "y": canvas["y"], "width": panel_left - canvas["x"], "height": canvas["height"]}
        before = rendered(page, region, keep / "viewer_before.png")

        red, green, blue = before[..., 0], before[..., 1], before[..., 2]
        yellow_box = (red > 0.55) & (green > 0.45) & (blue < 0.35)
        blue_ball = blue - np.maximum(red, green) > 0.2
        assert yellow_box.mean() > 0.02 and blue_ball.mean() > 0.005, (
            "training view 0 shows the yellow box and the blue ball"
        )

        armed_click(page, "Select entity (arms one click)", region, yellow_box, "Selected")
        choose_output(page, "jacobinerf_selection")
        after = rendered(page, region, keep / "viewer_selection.png", unlike=before)

        highlighted = (before[..., 1] - after[..., 1] > 0.12) & (after[..., 0] > 0.45)
        inside = highlighted[yellow_box].mean()
        outside = highlighted[~dilate(yellow_box)].mean()
        assert inside > 0.5, f"only {inside:.0%} of the box is highlighted"
        assert outside < 0.05, f"{outside:.0%} of the rest of the view is highlighted"

        armed_click(page, "Recolor entity (arms one click)", region, blue_ball, "Recolored")
        choose_output(page, "rgb")
        recolored = rendered(page, region, keep / "viewer_recolor.png", unlike=after)
        reddening = recolored[..., 0] - recolored[..., 2] - (before[..., 0] - before[..., 2])
        assert reddening[blue_ball].mean() > 0.3, "the blue ball turned towards the picked red"
        assert np.abs(reddening[~dilate(blue_ball)]).mean() < reddening[blue_ball].mean() / 3
        browser.close()
