"""The OHIF Viewer at ``/viewer`` (``DICOM_VIEWER=true``), in a real browser.

A study stored with ``dicomweb upload`` is found in the viewer's study list, opens in its
basic viewer, and its image is drawn: the viewport's canvas holds many different colours,
from frames the page fetched from this server's ``/v2``. The browser is Debian's
``chromium``, driven through its ``chromedriver`` by Selenium (``make test`` installs both).

The test also takes the README's screenshot: ``DICOM_TEST_SCREENSHOT=docs/viewer.png`` saves
it there (a palette PNG under 150 KB); otherwise it is only checked, in the test's folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pydicom.data
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from dicomweb_cli.__main__ import main as dicomweb
from functions_host import ohif
from tests.support.server import ROOT, Server, start_server, stop_server

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Headless, and nothing that reaches for the network on its own: without these Chromium waits
# on connections that a closed network never answers. A fresh profile per run.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
)
# OHIF's first load compiles some 20 MB of JavaScript; on a busy 2-core machine that is slow.
PAGE_SECONDS = 120
SCREENSHOT_LIMIT = 150 * 1024
CT = "CT_small.dcm"
CT_PATIENT = "CompressedSamples, CT1"  # how OHIF shows its PatientName, CompressedSamples^CT1

# The distinct colours in the viewport's canvas, read back through a 2D copy of it (the
# viewport draws into its canvas from WebGL or, without a GPU, on the CPU).
CANVAS_COLOURS = """
const canvas = document.querySelector('.cornerstone-canvas');
if (!canvas || canvas.width === 0 || canvas.height === 0) return 0;
const copy = document.createElement('canvas');
copy.width = canvas.width;
copy.height = canvas.height;
const context = copy.getContext('2d');
context.drawImage(canvas, 0, 0);
const pixels = context.getImageData(0, 0, copy.width, copy.height).data;
const colours = new Set();
for (let i = 0; i < pixels.length; i += 4) {
  colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
}
return colours.size;
"""
# What the page fetched (the Resource Timing entries' URLs).
FETCHED = "return performance.getEntriesByType('resource').map(entry => entry.name);"


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ohif.ensure_installed()  # before the server starts, which waits for nothing else
    running = start_server(tmp_path_factory.mktemp("viewer"), DICOM_VIEWER="true")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        reason = "needs Debian's chromium and chromium-driver (make test installs them as root)"
        if os.environ.get("CI"):  # where make test installs them: missing is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With the driver's path given, Selenium looks for no driver of its own (no download).
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_study_uploaded_with_dicomweb_opens_from_the_study_list_and_is_drawn(
    viewer_server: Server,
    browser: WebDriver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: pydicom's CT_small.dcm stored with `dicomweb upload`
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file(CT), folder / CT)
    journal = str(tmp_path / "journal")
    code = dicomweb(
        ["upload", str(folder), "--url", viewer_server.url, "--journal", journal, "--json"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 1
    study = pydicom.dcmread(folder / CT, stop_before_pixels=True).StudyInstanceUID

    # when: the study list shows it, and its row opens the basic viewer
    browser.get(f"{viewer_server.url}/viewer/")
    click(browser, "//button[normalize-space()='Confirm and hide']")  # "investigational use"
    click(browser, f"//tbody/tr[contains(., '{CT_PATIENT}')]")
    click(browser, "//button[normalize-space()='Basic Viewer']")

    # then: the viewport draws the image, from frames of this server's WADO-RS
    colours = wait(browser, lambda: browser.execute_script(CANVAS_COLOURS) >= 64 or None)
    assert colours
    assert f"/viewer/viewer?StudyInstanceUIDs={study}" in browser.current_url
    fetched = browser.execute_script(FETCHED)
    assert any(f"/v2/studies/{study}/series/" in url and "/frames/1" in url for url in fetched)
    # Every file the page asked for was there (a path the base-path edits missed 404s).
    assert failed_requests(browser) == []
    screenshot(browser, tmp_path / "viewer.png")


@pytest.fixture(scope="module")
def partitioned_viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ohif.ensure_installed()
    running = start_server(
        tmp_path_factory.mktemp("partitioned-viewer"),
        DICOM_VIEWER="true",
        DICOM_DATA_PARTITIONS="true",
    )
    try:
        yield running
    finally:
        stop_server(running)


def test_with_partitions_the_viewer_shows_the_partition_its_address_names(
    partitioned_viewer_server: Server,
    browser: WebDriver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With DICOM_DATA_PARTITIONS=true the unpartitioned routes answer 400, as in Azure; the
    viewer reads /v2/partitions/{name}: Microsoft.Default, or the one ?partition= names."""
    server = partitioned_viewer_server
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file(CT), folder / CT)
    code = dicomweb(
        ["upload", str(folder), "--url", server.url, "--partition", "research", "--json"]
        + ["--journal", str(tmp_path / "journal")]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 1
    study = pydicom.dcmread(folder / CT, stop_before_pixels=True).StudyInstanceUID

    # Microsoft.Default: an empty study list, and no request the server refused.
    browser.get(f"{server.url}/viewer/")
    click(browser, "//button[normalize-space()='Confirm and hide']")
    wait(
        browser,
        lambda: (
            any(
                "/v2/partitions/Microsoft.Default/studies" in url
                for url in browser.execute_script(FETCHED)
            )
            or None
        ),
    )
    assert not browser.find_elements(By.XPATH, f"//tbody/tr[contains(., '{CT_PATIENT}')]")
    assert failed_requests(browser) == []

    # The partition the address names: the study opens and is drawn from its frames.
    browser.get(f"{server.url}/viewer/?partition=research")
    click(browser, f"//tbody/tr[contains(., '{CT_PATIENT}')]")
    click(browser, "//button[normalize-space()='Basic Viewer']")
    assert wait(browser, lambda: browser.execute_script(CANVAS_COLOURS) >= 64 or None)
    fetched = browser.execute_script(FETCHED)
    assert any(
        f"/v2/partitions/research/studies/{study}/series/" in url and "/frames/1" in url
        for url in fetched
    )
    assert failed_requests(browser) == []


def failed_requests(browser: WebDriver) -> list[str]:
    """The page's requests that failed (a 4xx or 5xx, a missing file), from its console."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["source"] == "network" and entry["level"] == "SEVERE"
    ]


def test_the_api_keeps_its_paths_beside_the_viewer(viewer_server: Server) -> None:
    with viewer_server.client() as client:
        assert client.get("/viewer/").headers["content-type"] == "text/html; charset=utf-8"
        assert client.get("/v2/studies").status_code in (200, 204)
        # Only /viewer and below are the viewer's: the app's catch-all answers the rest.
        other = client.get("/viewers")
        assert other.status_code == 404 and "API version" in other.json()["message"]


def test_without_the_setting_there_is_no_viewer(client: httpx.Client) -> None:
    # The app's own answer to an unknown path, as in Azure, where the viewer never is.
    response = client.get("/viewer/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def click(browser: WebDriver, xpath: str) -> None:
    element: WebElement = wait(browser, lambda: _clickable(browser, xpath))
    element.click()


def _clickable(browser: WebDriver, xpath: str) -> WebElement | None:
    for element in browser.find_elements(By.XPATH, xpath):
        if element.is_displayed() and element.is_enabled():
            return element
    return None


def wait[T](browser: WebDriver, condition: Callable[[], T | None]) -> T:
    """``condition``'s first truthy answer within ``PAGE_SECONDS``; on a timeout, the page's
    console in the failure message."""
    try:
        result: T = WebDriverWait(browser, PAGE_SECONDS, poll_frequency=0.5).until(
            lambda _: condition()
        )
    except TimeoutException:
        console = "\n".join(entry["message"] for entry in browser.get_log("browser")[-20:])
        pytest.fail(f"timed out on {browser.current_url}; the console said:\n{console}")
    return result


def screenshot(browser: WebDriver, default: Path) -> None:
    """The viewer as the README shows it: a palette PNG (the UI is a few flat colours and the
    image is grey), under ``SCREENSHOT_LIMIT``."""
    # Let the viewer's tour (OHIF's first-visit tips) go before the picture.
    for skip in browser.find_elements(By.XPATH, "//*[normalize-space()='Skip all']"):
        if skip.is_displayed():
            skip.click()
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=128).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < SCREENSHOT_LIMIT
    target = os.environ.get("DICOM_TEST_SCREENSHOT")
    path = ROOT / target if target else default
    path.write_bytes(buffer.getvalue())
