"""End to end in a real headless Chromium: upload a real and a fake face on the web page, read the verdict."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from facecheck.checkpoint import build_model, card_for, save_checkpoint

from .conftest import SHARED_DATA, quick_config, start_live_server, write_face_set

CHROMIUM = Path("/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
    ),
]
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _faces(tmp_path: Path) -> tuple[Path, Path]:
    ffhq = SHARED_DATA / "ffhq-stylegan"
    if ffhq.is_dir():
        return sorted((ffhq / "real").iterdir())[0], sorted((ffhq / "fake").iterdir())[0]
    data = write_face_set(tmp_path / "faces", per_class=1)
    return data / "real" / "000.png", data / "fake" / "000.png"


def test_page_shows_the_verdict_for_a_real_and_a_fake_face(tmp_path: Path):
    config = quick_config("seed-mobilenet", None, model={"pretrained": False})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    base, stop = start_live_server(tmp_path / "m.pt")
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            context = browser.new_context()
            page = context.new_page()
            page.goto(base + "/")
            assert "facecheck" in page.title()
            for image in _faces(tmp_path):
                expected = httpx.post(f"{base}/v1/predict", files={"file": (image.name, image.read_bytes())}).json()
                page.set_input_files("#file", str(image))
                page.wait_for_function("document.getElementById('verdict').textContent.startsWith('Likely')")
                verdict = page.inner_text("#verdict")
                assert verdict == ("Likely FAKE" if expected["label"] == "fake" else "Likely REAL")
                shown = page.inner_text("#prob")
                assert shown == f"{100 * expected['p_fake']:.1f}%"
                # the bar takes the verdict's colour, never a red "fake" fill under a "real" verdict
                assert page.get_attribute("#fill", "class") == expected["label"] and page.is_visible("#score")
                page.wait_for_selector("#heatmap[src^='data:image/png']")
                assert "pushed the model towards" in page.inner_text("#heatwords")
                shot = tmp_path / f"page-{image.stem}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                if os.environ.get("FACECHECK_SCREENSHOTS"):  # keep them, e.g. for a person to look at
                    Path(os.environ["FACECHECK_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                    shutil.copy(shot, Path(os.environ["FACECHECK_SCREENSHOTS"]) / shot.name)
            # "no face": no probability bar and no heatmap; the uncertain band is drawn when there is one
            answer = {"p_fake": 0.52, "label": "no face", "notice": "no face found", "threshold": 0.6,
                      "uncertain_band": [0.53, 0.67], "model": "m", "latency_ms": 1}  # fmt: skip
            page.route("**/v1/predict", lambda route: route.fulfill(json=answer))
            page.set_input_files("#file", str(_faces(tmp_path)[0]))
            page.wait_for_function("document.getElementById('verdict').textContent === 'No face found'")
            assert not page.is_visible("#score") and not page.is_visible("#heatfig")
            answer |= {"label": "uncertain", "p_fake": 0.6}
            page.set_input_files("#file", str(_faces(tmp_path)[1]))
            page.wait_for_function("document.getElementById('verdict').textContent.startsWith('Uncertain')")
            assert page.is_visible("#band") and "uncertain (53-67%)" in page.inner_text("#legend")
            page.unroute("**/v1/predict")
            # a non-image gets a readable error on the page, not a broken page
            (tmp_path / "notes.jpg").write_text("not an image")
            page.set_input_files("#file", str(tmp_path / "notes.jpg"))
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "not a JPEG, PNG, WebP or BMP" in page.inner_text("#error")
            browser.close()
    finally:
        stop()


@pytest.mark.skipif(not (SHARED_DATA / "ffhq-stylegan").is_dir(), reason="../shared/data is absent: needs real faces")
def test_page_draws_each_face_and_explains_the_one_clicked(tmp_path: Path):
    """A group photo: every face boxed in its verdict's colour with its p_fake; a click asks for that face's
    Grad-CAM (``/v1/explain?face=i``) and shows it. A screenshot is kept (FACECHECK_SCREENSHOTS)."""
    from PIL import Image

    config = quick_config("seed-mobilenet", None, model={"pretrained": False},
                          preprocess={"face_crop": True, "image_size": 64})  # fmt: skip
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    photos = sorted((SHARED_DATA / "ffhq-stylegan" / "real").iterdir())[:3]
    group = Image.new("RGB", (3 * 240 + 40, 280), (128, 128, 128))
    for index, photo in enumerate(photos):
        group.paste(Image.open(photo).convert("RGB").resize((200, 200)), (40 + index * 240, 40))
    picture = tmp_path / "group.png"
    group.save(picture)
    base, stop = start_live_server(tmp_path / "m.pt")
    try:
        expected = httpx.post(f"{base}/v1/predict", files={"file": ("group.png", picture.read_bytes())}).json()
        assert len(expected["faces"]) == 3
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = browser.new_context().new_page()
            page.goto(base + "/")
            page.set_input_files("#file", str(picture))
            page.wait_for_function("document.getElementById('facenote').textContent.includes('3 faces')")
            page.wait_for_selector("#heatmap[src^='data:image/png']")
            # the box of the first face is drawn in its verdict's colour (sampled on the canvas)
            x0, y0, x1, y1 = expected["faces"][0]["box"]
            pixel = f"getImageData({x0}, {(y0 + y1) // 2}, 1, 1).data"
            colour = page.evaluate(f"Array.from(document.getElementById('preview').getContext('2d').{pixel})")
            wanted = {"fake": (229, 57, 53), "real": (67, 160, 71), "uncertain": (251, 192, 45)}
            assert tuple(colour[:3]) == wanted[expected["faces"][0]["label"]]
            first = page.get_attribute("#heatmap", "src")
            box = page.locator("#preview").bounding_box()
            scale = box["width"] / group.width
            x0, y0, x1, y1 = expected["faces"][2]["box"]
            with page.expect_request(lambda request: "/v1/explain?face=2" in request.url):
                page.mouse.click(box["x"] + scale * (x0 + x1) / 2, box["y"] + scale * (y0 + y1) / 2)
            page.wait_for_function(f"document.getElementById('heatmap').src !== {first!r}")
            assert page.is_visible("#cardbox")  # the model card's text, as `facecheck models --card`
            shot = tmp_path / "page-group-photo.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("FACECHECK_SCREENSHOTS"):
                Path(os.environ["FACECHECK_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(os.environ["FACECHECK_SCREENSHOTS"]) / shot.name)
            browser.close()
    finally:
        stop()
