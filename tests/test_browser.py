"""The viewer panel in a real browser: headless Chromium (Debian's) driven by Playwright against ns-viewer.

On a shaped sample-scene checkpoint: jump to training view 0, arm "Select entity", click the green box on the
canvas, show the `jacobinerf_selection` output, and check from the screenshots' pixels that the highlight covers
the box and not the rest; then recolor the blue ball and check it turned red. Then label: paint the box, the ball and
the wall as three classes, check the legend, the autosave, the labels and confidence outputs, *Suggest next click*,
*Go to least-explained training view*, and a download → clear → upload round trip of the click set. Object regions
come from the screenshot before the clicks (colour thresholds), so the checks do not depend on the viewer's camera
maths. Set JACOBINERF_SCREENSHOTS=DIR to keep the screenshots (`viewer_labelling.png` is the whole window).

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
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from PIL import Image

from jacobinerf_ns.clicks import RayClick, read_clicks
from jacobinerf_ns.visualization import HIGHLIGHT, HIGHLIGHT_ALPHA, palette

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see scripts/test.sh)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; scripts/test.sh does it)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def viewer_run(run: Path, folder: Path) -> Path:
    """A run folder for the viewer under ``folder``: its config points there and its checkpoints are a link to
    ``run``'s, so what the viewer writes beside the config (the clicks' autosave, its log) never lands in ``run``."""
    import yaml

    config = yaml.load((run / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = folder
    base = config.get_base_dir()
    base.mkdir(parents=True)
    (base / config.relative_model_dir).symlink_to(run / config.relative_model_dir)
    (base / "config.yml").write_text(yaml.dump(config))
    return base


@pytest.fixture(scope="module")
def viewer(trained_run, tmp_path_factory):
    """ns-viewer on a copy of the trained run: ``url``, and ``run`` (the folder beside its config)."""
    run = viewer_run(trained_run, tmp_path_factory.mktemp("viewer_run"))
    port = free_port()
    log = open(run / "viewer_test.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nerfstudio.scripts.viewer.run_viewer",
            "--load-config",
            str(run / "config.yml"),
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
            assert process.poll() is None, (run / "viewer_test.log").read_text()[-3000:]
            time.sleep(1)
    yield SimpleNamespace(url=url, run=run)
    process.terminate()
    process.wait(timeout=30)


def row(page, label: str):
    return page.get_by_text(label, exact=True).locator("xpath=ancestor::div[3]")


def status(page) -> str:
    """The panel's status message (a markdown paragraph that starts with a bold "Status:")."""
    text = page.locator("p", has=page.locator("strong", has_text="Status:")).first.inner_text()
    return text.removeprefix("Status:").strip()


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


def choose_output(page, name: str, dropdown: str = "Output type") -> None:
    """Pick ``name`` in one of the viewer's output dropdowns (once a render has offered it)."""
    label = page.get_by_text(dropdown, exact=True)
    wait_for(label.is_visible)
    select = page.locator(f'[id="{label.get_attribute("for")}"]')

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


def screenshots(tmp_path) -> Path:
    keep = Path(os.environ["JACOBINERF_SCREENSHOTS"]) if os.environ.get("JACOBINERF_SCREENSHOTS") else tmp_path
    keep.mkdir(parents=True, exist_ok=True)
    return keep


FRAME_RATE_CAP = """
const nextFrame = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => setTimeout(() => nextFrame(callback), 100);
"""
"""The page's animation frames capped at 10 per second: viser's canvas redraws on every frame, and Chromium's software
WebGL (SwiftShader) drawing it 60 times a second takes a CPU core from the rest of the suite. Not fewer: viser handles
the server's messages once per frame and decodes each image asynchronously, so two frames in one batch may be shown
in either order; nerfstudio sends its full frame at least 0.2 s after the quick one (it waits 0.2 s for the camera to
rest), so at 10 per second each lands in its own batch (at 2 per second the quick frame stayed on screen once)."""


def open_viewer(driver, url: str, width: int, height: int):
    """A page on the viewer at 128 px renders, at training view 0; its render area (screen region)."""
    browser = driver.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    )
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.add_init_script(FRAME_RATE_CAP)
    page.goto(url)
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
    return browser, page, region


def objects(before: np.ndarray):
    """Masks of the yellow box, the blue ball, the red ball and the green box of training view 0, from their colours
    (the lit floor is as bright as the yellow box's dark squares; its blue is ~0.55 of its red, the box's ~0.2; the red
    ball's green and blue are under half its red, the floor's over; the green box is the only green surface, apart
    from the viewer's axes gizmo, a few hundred pixels)."""
    from scipy import ndimage

    red, green, blue = before[..., 0], before[..., 1], before[..., 2]
    yellow_box = (red > 0.55) & (green > 0.45) & (blue < 0.4 * red)
    blue_ball = blue - np.maximum(red, green) > 0.2
    red_ball = (red > 0.35) & (green < 0.5 * red) & (blue < 0.5 * red)
    greenish, _ = ndimage.label((green - np.maximum(red, blue) > 0.05) & (red < 0.3))
    sizes = np.bincount(greenish.flatten())
    green_box = np.isin(greenish, np.nonzero(sizes > 0.003 * greenish.size)[0][1:])  # the vase splits it in two
    assert yellow_box.mean() > 0.02 and blue_ball.mean() > 0.005 and red_ball.mean() > 0.01, (
        "training view 0 shows the yellow box and both balls"
    )
    assert green_box.mean() > 0.01, "training view 0 shows the green box"
    return yellow_box, blue_ball, red_ball, green_box


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask`` (its centre lies on it)."""
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    return parts == 1 + int(np.argmax(ndimage.sum(mask, parts, range(1, count + 1))))


def tinted(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels the selection's highlight tinted: ``after ≈ (1 − α) before + α HIGHLIGHT`` and visibly changed (the
    viewer streams JPEG frames: a few hundredths of noise)."""
    expected = (1 - HIGHLIGHT_ALPHA) * before + HIGHLIGHT_ALPHA * HIGHLIGHT.numpy()
    return (np.abs(after - expected).max(axis=-1) < 0.1) & (np.abs(after - before).max(axis=-1) > 0.15)


def test_select_and_recolor_in_the_browser(viewer, tmp_path):
    keep = screenshots(tmp_path)
    with playwright.sync_playwright() as driver:
        browser, page, region = open_viewer(driver, viewer.url, 1000, 600)
        before = rendered(page, region, keep / "viewer_before.png")
        _, blue_ball, _, green_box = objects(before)

        armed_click(page, "Select entity (arms one click)", region, largest_part(green_box), "Selected")
        choose_output(page, "jacobinerf_selection")
        after = rendered(page, region, keep / "viewer_selection.png", unlike=before)

        highlighted = tinted(before, after)
        inside = highlighted[green_box].mean()
        outside = highlighted[~dilate(green_box)].mean()
        assert inside > 0.5, f"only {inside:.0%} of the green box is highlighted"
        assert outside < 0.05, f"{outside:.0%} of the rest of the view is highlighted"

        armed_click(page, "Recolor entity (arms one click)", region, blue_ball, "Recolored")
        choose_output(page, "rgb")
        recolored = rendered(page, region, keep / "viewer_recolor.png", unlike=after)
        reddening = recolored[..., 0] - recolored[..., 2] - (before[..., 0] - before[..., 2])
        assert reddening[blue_ball].mean() > 0.3, "the blue ball turned towards the picked red"
        assert np.abs(reddening[~dilate(blue_ball)]).mean() < reddening[blue_ball].mean() / 3
        browser.close()


def erode(mask: np.ndarray, radius: int = 6) -> np.ndarray:
    """The mask shrunk by ``radius`` pixels: its interior, away from blur and boundaries."""
    return ~dilate(~mask, radius)


def legend(page) -> list:
    """The legend's rows: (colour code, class, clicks), read in one snapshot: the panel rebuilds the table as clicks
    change, so a row counted first may be gone when read one by one."""
    table = page.locator("table", has=page.locator("th", has_text="clicks"))
    texts = table.first.locator("tbody tr").all_inner_texts()
    return [tuple(cell.strip() for cell in text.split("\t")) for text in texts]


def hex_color(color) -> str:
    return "#" + "".join(f"{round(255 * float(c)):02x}" for c in color)


def nearest_turbo(image: np.ndarray):
    """``(H, W, 3)`` colours → (distance to the nearest colour of nerfstudio's turbo table, its value in [0, 1]), each
    ``(H, W)`` (a k-d tree: the brute-force distance matrix of a screenshot is gigabytes)."""
    from scipy.spatial import cKDTree

    table = np.asarray(matplotlib.colormaps["turbo"].colors, dtype=np.float32)
    distance, index = cKDTree(table).query(image.reshape(-1, 3))
    return distance.reshape(image.shape[:2]), (index / (len(table) - 1)).reshape(image.shape[:2])


def turbo_values(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` turbo heatmap → values in [0, 1] (nearest colour of nerfstudio's turbo table)."""
    return nearest_turbo(image)[1]


def paint(page, region, name: str, mask: np.ndarray) -> None:
    class_name = row(page, "Class name").locator("input:visible").first
    class_name.fill(name)
    class_name.press("Enter")
    armed_click(page, "Paint label (arms one click)", region, mask, f"Painted '{name}'")


def test_label_three_classes_with_legend_confidence_suggestions_and_click_files(viewer, tmp_path):
    keep = screenshots(tmp_path)
    with playwright.sync_playwright() as driver:
        browser, page, region = open_viewer(driver, viewer.url, 1400, 1100)
        page.get_by_role("button", name="Reset colors").click()  # the first test's recolouring is server state
        page.get_by_role("button", name="Clear labels").click()
        wait_for(lambda: status(page).startswith("Cleared every class"))
        choose_output(page, "rgb")
        before = rendered(page, region, keep / "viewer_labelling_before.png")
        yellow_box, blue_ball, _, _ = objects(before)
        wall = np.zeros_like(yellow_box)
        wall[: len(wall) // 8, wall.shape[1] // 3 : 2 * wall.shape[1] // 3] = True  # the back wall, above the objects
        classes = {"box": yellow_box, "ball": blue_ball, "wall": wall}
        for name, mask in classes.items():
            paint(page, region, name, mask)

        colors = palette(len(classes) + 1)
        assert legend(page) == [(hex_color(colors[i + 1]), name, "1") for i, name in enumerate(classes)]
        autosave = read_clicks(viewer.run / "clicks.autosave.json")
        assert autosave.classes == tuple(classes) and len(autosave.clicks) == 3 and autosave.fingerprint is not None
        assert all(isinstance(click, RayClick) for click in autosave.clicks)

        choose_output(page, "jacobinerf_labels")
        labels = rendered(page, region, keep / "viewer_labels.png", unlike=before)
        painted_color = 2 * labels - before  # the overlay is (rgb + class colour) / 2
        for name, mask in classes.items():
            # share of the region's interior painted in each class's colour: most of it in its own class's
            shares = {
                other: float((np.abs(painted_color[erode(mask, 4)] - colors[index + 1].numpy()).max(-1) < 0.2).mean())
                for index, other in enumerate(classes)
            }
            assert shares[name] > 0.5, f"{name} is painted {shares}"

        choose_output(page, "jacobinerf_confidence")
        heatmap = rendered(page, region, keep / "viewer_confidence.png", unlike=labels)
        off_table, confidence = nearest_turbo(heatmap)
        assert np.median(off_table) < 0.05, "the confidence output is shown as a turbo heatmap"
        assert confidence.max() - confidence.min() > 0.5, "confidence varies over the view"

        page.get_by_role("button", name="Suggest next click").click()
        wait_for(lambda: status(page).startswith("The clicks explain the magenta marker least"))
        suggested = rendered(page, region, keep / "viewer_suggestion.png")
        marker = (suggested[..., 0] > 0.8) & (suggested[..., 2] > 0.8) & (suggested[..., 1] < 0.3)
        assert marker.sum() > 20, "the magenta marker shows the suggested click"
        y, x = centre_of(marker)
        near = np.zeros_like(marker)
        near[max(0, y - 40) : y + 40, max(0, x - 40) : x + 40] = True
        around = near & ~dilate(marker, 3)
        assert np.mean(confidence[around]) < np.median(confidence), "the marker is where confidence is low"

        choose_output(page, "jacobinerf_labels")
        page.get_by_text("Enable", exact=True).first.click()  # split screen: labels | confidence
        choose_output(page, "jacobinerf_confidence", dropdown="Output render split")
        split = rendered(page, region, keep / "viewer_split.png", unlike=suggested)
        half = split.shape[1] // 2
        assert np.abs(split[:, : half - 20] - labels[:, : half - 20]).mean() < 0.03, "labels on the left"
        right = np.abs(turbo_values(split[:, half + 20 :]) - confidence[:, half + 20 :])
        assert np.median(right) < 0.1, "confidence on the right"
        status_line = page.locator("p", has=page.locator("strong", has_text="Status:")).first
        status_line.evaluate("element => element.scrollIntoView({block: 'start'})")  # the panel from its status down
        page.screenshot(path=str(keep / "viewer_labelling.png"))

        page.get_by_role("button", name="Skip suggestion").click()
        wait_for(lambda: status(page).startswith("Skipped that suggestion (1 skipped). The clicks explain the magenta"))

        page.get_by_role("button", name="Go to least-explained training view").click()
        wait_for(lambda: status(page).startswith("At training view "), timeout=300)
        view = int(status(page).split()[3].rstrip(","))
        assert f"At training view {view}, the one the clicks explain least (mean " in status(page)
        assert row(page, "Training view").locator("input:visible").first.input_value() == str(view)

        with page.expect_download() as download:
            page.get_by_role("button", name="Download clicks").click()
        downloaded = tmp_path / "downloaded.json"
        download.value.save_as(downloaded)
        assert read_clicks(downloaded) == read_clicks(viewer.run / "clicks.autosave.json")
        page.get_by_role("button", name="Clear labels").click()
        wait_for(lambda: legend(page) == [])
        page.locator("input[type=file]").set_input_files(str(downloaded))
        wait_for(lambda: status(page).startswith("Loaded 3 clicks of 3 classes from downloaded.json (uploaded)"))
        assert legend(page) == [(hex_color(colors[i + 1]), name, "1") for i, name in enumerate(classes)]
        browser.close()
