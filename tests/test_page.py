"""The web page at ``/`` (api/static/), driven in a real browser against the real stack.

Playwright for Python drives Debian's Chromium (``/usr/bin/chromium``, or ``FER_CHROMIUM``;
Playwright's own browser download cannot be reached here). The page talks to a real gunicorn
serving ``api:create_app()``, the session's Redis and real Celery worker, and thumbnails come
from the local image server. Every request the browser makes is recorded: any to a host other
than those two 127.0.0.1 ports is aborted and fails the test. Screenshots go to build/page/.

Without Chromium (or Playwright) the browser tests are skipped with the reason; as root,
``make chromium`` (run by ``make test``) installs it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask

from api.keys import add_key
from tests.imageserver import ImageServer
from tests.services import ROOT, gunicorn
from worker.settings import Settings

CHROMIUM = os.environ.get("FER_CHROMIUM", "/usr/bin/chromium")
# Chromium's own connections (updates, sync, safe browsing ...) are refused by this closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "build" / "page"
EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
GROUP_PHOTO = "solvay1927.jpg"
TIMEOUT_MS = 90_000


def browser_problem() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[dev]'"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"no Chromium at {CHROMIUM} (set FER_CHROMIUM to another binary): as root, `make chromium` "
                "installs Debian's chromium package")
    return None


BROWSER_PROBLEM = browser_problem()
needs_browser = pytest.mark.skipif(BROWSER_PROBLEM is not None, reason=BROWSER_PROBLEM or "")


# -- the stack: gunicorn on a free port, the session worker, the image server ----------------------

PAGE_API_ARGS = ("--workers", "1", "--worker-class", "gthread", "--threads", "4")


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(env: dict[str, str], worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gunicorn(env, tmp_path_factory.mktemp("page-api") / "gunicorn.log", PAGE_API_ARGS) as url:
        yield url


@dataclass
class KeyedApi:
    url: str
    key: str


@pytest.fixture(scope="module")
def keyed_api(env: dict[str, str], worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedApi]:
    """The same stack with API keys on (FER_API_KEYS_FILE): one key, "page-<random>"."""
    folder = tmp_path_factory.mktemp("page-keyed-api")
    key = add_key(folder / "keys.json", f"page-{secrets.token_hex(4)}", quota_urls=1000)
    keyed_env = {**env, "FER_API_KEYS_FILE": str(folder / "keys.json")}
    with gunicorn(keyed_env, folder / "gunicorn.log", PAGE_API_ARGS) as url:
        yield KeyedApi(url, key)


def get_json(base: str, path: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(base + path, headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_job(base: str, job_id: str, key: str | None = None, timeout: float = 90) -> dict[str, Any]:
    """Poll the API until the job ends; its final JSON with every result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get_json(base, f"/jobs/{job_id}?limit=1000", key)
        if body["status"] in ("done", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


@pytest.fixture(scope="module")
def finished_job(api: str, images: ImageServer) -> dict[str, Any]:
    """A finished job submitted through the API: the group photo, two portraits, a 404 with a long URL."""
    urls = [images.url(f"/faces/{GROUP_PHOTO}"), images.url("/photos/fer_justin.jpg"),
            images.url("/photos/deepface_img25.jpg"), images.url("/status/404?" + "long=" + "x" * 200)]
    response = httpx.post(f"{api}/jobs", json={"urls": urls}, timeout=10)
    assert response.status_code == 202, response.text
    return wait_job(api, response.json()["job_id"])


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if BROWSER_PROBLEM:
        pytest.skip(BROWSER_PROBLEM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Browsing:
    """A fresh browser context (its own localStorage) and what its pages asked for."""

    context: Any
    allowed: set[str]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, URL, headers
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def page(self, viewport: dict[str, int] = DESKTOP) -> Any:
        page = self.context.new_page()
        page.set_viewport_size(viewport)
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        return page

    def _route(self, route: Any) -> None:
        request = route.request
        parts = urlsplit(request.url)
        self.requests.append((request.method, request.url, dict(request.headers)))
        if parts.scheme in ("data", "blob"):
            route.continue_()
        elif parts.scheme == "http" and parts.netloc in self.allowed:
            route.continue_()
        else:
            self.foreign.append(request.url)
            route.abort()

    def api_requests(self, base: str) -> list[tuple[str, str, dict[str, str]]]:
        return [entry for entry in self.requests if entry[1].startswith(base + "/jobs")]


@pytest.fixture()
def browsing(browser: Any, images: ImageServer, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Browsing]]:
    """Open a context allowed to reach ``base`` (the API) and the image server, and nothing else."""
    opened: list[Browsing] = []

    def open_context(base: str) -> Browsing:
        context = browser.new_context(accept_downloads=True, reduced_motion="reduce")  # no bar animation
        state = Browsing(context, {urlsplit(base).netloc, f"127.0.0.1:{images.port}"})
        context.route("**/*", state._route)
        opened.append(state)
        return state

    yield open_context
    for state in opened:
        state.context.close()
    for state in opened:
        assert not state.foreign, f"the page asked for other hosts: {state.foreign}"
        assert not state.errors, state.errors
        hosts = {urlsplit(url).netloc for _, url, _ in state.requests if url.startswith("http")}
        assert hosts <= state.allowed, hosts


def card_data(page: Any) -> list[dict[str, Any]]:
    """What each result card shows: index, status, top emotion, error code and message, bars, boxes."""
    return page.eval_on_selector_all("#results > li", """items => items.map(item => ({
        index: Number(item.dataset.index),
        status: item.dataset.status,
        hidden: item.hidden,
        top: (item.querySelector('.headline .top') || {}).textContent || null,
        code: (item.querySelector('.headline .code') || {}).textContent || null,
        message: (item.querySelector('.message') || {}).textContent || null,
        bars: [...item.querySelectorAll(':scope .info > .bars > li')].map(li => [
            li.dataset.emotion, Number(li.dataset.value), li.querySelector('.value').textContent,
            li.querySelector('.fill').style.width]),
        faceBars: [...item.querySelectorAll('.faces > li')].map(li =>
            [...li.querySelectorAll('.bars > li')].map(bar => [bar.dataset.emotion, Number(bar.dataset.value)])),
        boxes: item.querySelectorAll('.box').length,
        hasImage: !!item.querySelector('img'),
    }))""")


def wait_finished(page: Any, status: str = "done") -> None:
    page.wait_for_selector(f'#progress[data-status="{status}"]', state="attached")
    page.wait_for_selector(f'#results[data-job-status="{status}"]', state="attached")


def wait_thumbnails(page: Any) -> None:
    """Every thumbnail inside the viewport loaded (boxes are placed once an image has loaded)."""
    page.wait_for_function("""() => [...document.querySelectorAll('#results img')]
        .filter(img => { const r = img.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; })
        .every(img => img.complete)""")


# Records, in the page, the bar's width at the moment the page marks a job done (before any frame is
# drawn): a bar still growing from where the last poll left it would be caught short there. The pages
# that record it animate as a user's browser does (the tests' contexts otherwise ask for reduced motion).
WATCH_BAR = """new MutationObserver(() => {
    const bar = document.getElementById('progress');
    if (bar && bar.dataset.status === 'done' && !window.barWhenDone) {
        window.barWhenDone = [document.getElementById('progress-fill').getBoundingClientRect().width, bar.clientWidth];
    }
}).observe(document, {attributes: true, subtree: true, attributeFilter: ['data-status']});"""


def assert_bar_was_full_when_done(page: Any) -> None:
    """The moment the page showed the job done, its bar was full: drawn at once, not growing (a 9/9
    job's screenshot once caught it short)."""
    fill, track = page.evaluate("window.barWhenDone")
    assert track > 0 and fill == pytest.approx(track, abs=0.5), (fill, track)


def job_id_of(page: Any) -> str:
    return page.text_content("#job-id")


def check_cards(cards: list[dict[str, Any]], job: dict[str, Any]) -> None:
    """The cards say what the API says, row by row."""
    assert [card["index"] for card in cards] == [row["index"] for row in job["results"]]
    for card, row in zip(cards, job["results"], strict=True):
        assert card["status"] == row["status"], (card, row)
        if row["status"] == "ok":
            assert card["top"] == row["top"]
            assert [bar[0] for bar in card["bars"]] == EMOTIONS
            for name, value, text, width in card["bars"]:
                assert value == row["emotions"][name]
                assert text == f"{row['emotions'][name] * 100:.1f} %"
                assert float(width.removesuffix("%")) == pytest.approx(100 * row["emotions"][name], abs=0.01)
            faces = row.get("faces") or []
            if len(faces) > 1:  # each face its own seven bars
                assert card["faceBars"] == [[[name, face["emotions"][name]] for name in EMOTIONS] for face in faces]
        elif row["status"] == "error":
            assert card["code"] == row["error"]["code"]
            assert card["message"] == row["error"]["message"]
            assert not card["bars"]


# -- the page without a browser ---------------------------------------------------------------------


@pytest.mark.parametrize("keys_on", [False, True], ids=["keys-off", "keys-on"])
def test_the_page_and_its_files_are_served_without_a_key(make_app: Callable[..., Flask], settings: Settings,
                                                         tmp_path: Path, keys_on: bool) -> None:
    keys_file = None
    if keys_on:
        keys_file = tmp_path / "keys.json"
        add_key(keys_file, "page", quota_urls=10)
    client = make_app(settings, api_keys_file=keys_file).test_client()
    with client.get("/?job=0123456789abcdef0123456789abcdef") as page:  # file answers must be closed
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
    assert '<script src="/static/app.js" defer></script>' in html and "/static/style.css" in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]  # nothing but its own files
    assert "http" not in html.replace("http: https:", "").replace('"https://example.com/photo.jpg"', "")
    for path, mimetype in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        with client.get(path) as response:
            assert response.status_code == 200 and response.mimetype == mimetype, path
            text = response.get_data(as_text=True)
        assert "://" not in text.replace("http://", "").replace("https://", "")
    jobs = client.get("/jobs/0123456789abcdef0123456789abcdef")
    assert jobs.status_code == (401 if keys_on else 404)
    missing = client.get("/static/nothing.js")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


# -- in the browser -------------------------------------------------------------------------------


@pytest.mark.slow
@needs_browser
def test_submit_progress_results_boxes_filter_and_csv(api: str, images: ImageServer,
                                                      browsing: Callable[[str], Browsing]) -> None:
    """The bundled photos through the page: the bar finishes, every card says what the API says
    (top emotion, seven bars, each face's bars, error codes), boxes sit on the group photo's faces,
    the filters work and the CSV downloaded is the API's, byte for byte."""
    photos = sorted(p.name for p in (ROOT / "tests" / "data" / "photos").iterdir() if p.suffix in (".jpg", ".jpeg"))
    urls = [images.url(f"/faces/{GROUP_PHOTO}"), images.url("/faces/astronaut.jpg"), images.url("/status/404"),
            images.url("/text"), images.url("/faces/chelsea.png")] + [images.url(f"/photos/{name}") for name in photos]
    state = browsing(api)
    page = state.page()
    page.emulate_media(reduced_motion="no-preference")
    page.add_init_script(WATCH_BAR)
    page.goto(api + "/")
    assert page.title() == "fer-batch"
    page.fill("#urls", "\n".join(urls) + "\n\n")  # blank lines are skipped
    page.select_option("#faces", "detect")
    page.click("#submit-button")
    wait_finished(page)
    assert_bar_was_full_when_done(page)
    job_id = job_id_of(page)
    assert page.url == f"{api}/?job={job_id}"
    job = get_json(api, f"/jobs/{job_id}?limit=1000")
    assert job["status"] == "done" and job["total"] == len(urls) and job["faces"] == "detect"
    assert page.text_content("#stat-processed") == page.text_content("#stat-total") == str(len(urls))
    assert page.text_content("#stat-ok") == str(job["succeeded"])
    assert page.text_content("#stat-failed") == str(job["failed"])
    assert float(page.text_content("#stat-rate")) > 0
    assert page.get_attribute("#progress", "aria-valuenow") == str(len(urls))
    assert "done" in page.text_content("#progress-live")

    cards = card_data(page)
    assert len(cards) == len(urls)
    check_cards(cards, job)
    by_url = {row["url"]: row for row in job["results"]}
    assert by_url[images.url("/status/404")]["error"]["code"] == "http_error"
    assert by_url[images.url("/text")]["error"]["code"] == "not_an_image"
    assert by_url[images.url("/faces/chelsea.png")]["error"]["code"] == "no_face"
    assert [card["code"] for card in cards[2:5]] == ["http_error", "not_an_image", "no_face"]
    assert not cards[2]["hasImage"] and not cards[3]["hasImage"]  # a failed fetch is not shown as an image
    assert page.text_content('#results li[data-index="2"] .headline') == "http_error HTTP 404"

    # The bars are drawn to scale: each fill's width is its probability of the track's.
    fill = page.locator('#results li[data-index="1"] .info > .bars li[data-emotion="happy"] .fill').bounding_box()
    track = page.locator('#results li[data-index="1"] .info > .bars li[data-emotion="happy"] .track').bounding_box()
    assert fill["width"] == pytest.approx(track["width"] * by_url[urls[1]]["emotions"]["happy"], abs=1)

    # The group photo: a box on each face the API found, where the API says, scaled to the thumbnail.
    group = by_url[urls[0]]
    assert group["face_count"] >= 25
    page.wait_for_selector(f'#results li[data-index="0"] .frame[data-boxes="{group["face_count"]}"]',
                           state="attached")
    img = page.locator('#results li[data-index="0"] img')
    natural = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [2048, 922]
    shown = img.bounding_box()
    scale = shown["width"] / natural[0]
    assert shown["height"] / natural[1] == pytest.approx(scale, rel=0.01)
    for number, face in enumerate(group["faces"]):
        box = page.locator(f'#results li[data-index="0"] .box[data-face="{number}"]').bounding_box()
        x, y, w, h = face["box"]
        assert box["x"] == pytest.approx(shown["x"] + x * scale, abs=1.5)
        assert box["y"] == pytest.approx(shown["y"] + y * scale, abs=1.5)
        assert box["width"] == pytest.approx(w * scale, abs=1.5)
        assert box["height"] == pytest.approx(h * scale, abs=1.5)
    assert page.locator('#results li[data-index="1"] .box').count() == by_url[urls[1]]["face_count"] == 1

    page.locator("#job-panel").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('job-panel').scrollIntoView()")
    wait_thumbnails(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "results.png")

    # Filters: by error, by error code, by top emotion.
    page.select_option("#filter", "error")
    assert [c["index"] for c in card_data(page) if not c["hidden"]] == [2, 3, 4]
    assert page.text_content("#filter-info") == f"3 of {len(urls)} rows on this page match."
    page.select_option("#filter", "code:not_an_image")
    assert [c["index"] for c in card_data(page) if not c["hidden"]] == [3]
    happy = [row["index"] for row in job["results"] if row.get("top") == "happy"]
    assert happy
    page.select_option("#filter", "top:happy")
    assert [c["index"] for c in card_data(page) if not c["hidden"]] == happy
    page.select_option("#filter", "all")
    assert not any(c["hidden"] for c in card_data(page))

    # results.csv: the API's bytes (a plain link when no key is set).
    assert page.get_attribute("#dl-results", "href") == f"/jobs/{job_id}/results.csv"
    with page.expect_download() as download:
        page.click("#dl-results")
    expected = httpx.get(f"{api}/jobs/{job_id}/results.csv", timeout=10).content
    assert Path(download.value.path()).read_bytes() == expected
    assert expected.count(b"\n") == len(urls) + 1

    # The job is in the recent list, with its final status.
    assert page.locator(f'#recent a[data-job="{job_id}"]').count() == 1
    assert f"{len(urls)} URLs · done" in page.text_content("#recent li:first-child")


@pytest.mark.slow
@needs_browser
def test_cancel_a_slow_job(api: str, images: ImageServer, browsing: Callable[[str], Browsing]) -> None:
    urls = [images.url(f"/slow?seconds=2.5&n={n}") for n in range(48)]  # 3 rounds of 16 on the 2 processes
    page = browsing(api).page()
    page.goto(api + "/")
    page.fill("#urls", "\n".join(urls))
    page.click("#submit-button")
    page.wait_for_selector("#cancel-button", state="visible")
    page.click("#cancel-button")
    wait_finished(page, "cancelled")
    job_id = job_id_of(page)
    assert page.text_content("#job-status") == "cancelled"
    assert page.is_hidden("#cancel-button")
    job = get_json(api, f"/jobs/{job_id}?limit=1000")
    assert job["status"] == "cancelled" and job["processed"] < job["total"] == len(urls)
    # URLs in flight at the cancel may still be answered after it: a row read as cancelled can turn
    # ok or error later, never the other way round.
    cards = card_data(page)
    assert {card["status"] for card in cards} <= {"ok", "error", "cancelled"}
    assert sum(card["status"] == "cancelled" for card in cards) >= len(urls) - 24  # 2 processes: 2 or 3 chunks began
    assert all(card["status"] == "cancelled" for card, row in zip(cards, job["results"], strict=True)
               if row["status"] == "cancelled")
    assert page.text_content('#results li[data-status="cancelled"] .headline') == "cancelled"

    # Pages of results: 25 rows, then the other 23.
    page.select_option("#page-size", "25")
    page.wait_for_selector('#results li[data-index="24"]:last-child', state="attached")
    assert page.text_content("#page-info") == f"rows 1–25 of {len(urls)}" and page.is_disabled("#page-prev")
    page.click("#page-next")
    page.wait_for_selector('#results[data-offset="25"]', state="attached")
    cards = card_data(page)
    assert [card["index"] for card in cards] == list(range(25, len(urls)))
    assert all(card["status"] == row["status"] or row["status"] == "cancelled"
               for card, row in zip(cards, job["results"][25:], strict=True))
    assert page.text_content("#page-info") == f"rows 26–{len(urls)} of {len(urls)}" and page.is_disabled("#page-next")
    page.click("#page-prev")
    page.wait_for_selector('#results[data-offset="0"]', state="attached")


@pytest.mark.slow
@needs_browser
def test_phone_width_has_no_horizontal_scrolling(api: str, finished_job: dict[str, Any],
                                                 browsing: Callable[[str], Browsing]) -> None:
    page = browsing(api).page(PHONE)
    page.emulate_media(reduced_motion="no-preference")
    page.add_init_script(WATCH_BAR)
    for path in ("/", f"/?job={finished_job['job_id']}"):
        page.goto(api + path)
        if "job" in path:
            wait_finished(page)
            assert_bar_was_full_when_done(page)  # a job opened after it finished: full from the start
            assert len(card_data(page)) == finished_job["total"]
            page.wait_for_selector('#results li[data-index="0"] .frame[data-boxes]', state="attached")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[1] == PHONE["width"] and widths[0] <= widths[1], (path, widths)
    wider = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(node => node.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
        .map(node => node.tagName + '#' + node.id + '.' + node.className)""")
    assert not wider
    page.screenshot(path=SHOTS / "phone.png", full_page=False)


@pytest.mark.slow
@needs_browser
def test_keyboard_only_submission(api: str, images: ImageServer, browsing: Callable[[str], Browsing]) -> None:
    page = browsing(api).page()
    page.goto(api + "/")

    def tab_to(element_id: str, limit: int = 25) -> list[str]:
        seen = []
        for _ in range(limit):
            page.keyboard.press("Tab")
            seen.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
            if seen[-1] == element_id:
                return seen
        raise AssertionError(f"Tab never reached #{element_id}: {seen}")

    tab_to("urls")
    page.keyboard.type(images.url("/photos/fer_justin.jpg") + "\n" + images.url("/status/404"))
    assert tab_to("submit-button") == ["csv-file", "faces", "min-face-size", "min-score", "max-faces", "submit-button"]
    page.keyboard.press("Enter")
    wait_finished(page)
    job = get_json(api, f"/jobs/{job_id_of(page)}?limit=10")
    assert [row["status"] for row in job["results"]] == ["ok", "error"]
    check_cards(card_data(page), job)


@pytest.mark.slow
@needs_browser
def test_deep_link_recent_jobs_and_open_by_id(api: str, finished_job: dict[str, Any],
                                              browsing: Callable[[str], Browsing]) -> None:
    job_id = finished_job["job_id"]
    page = browsing(api).page()
    page.goto(f"{api}/?job={job_id}")  # straight onto the job
    wait_finished(page)
    assert job_id_of(page) == job_id
    check_cards(card_data(page), finished_job)
    recent = page.evaluate("JSON.parse(localStorage.getItem('fer-batch.recentJobs'))")
    assert [entry["id"] for entry in recent] == [job_id] and recent[0]["status"] == "done"

    page.goto(api + "/")  # a new visit lists it; one click reopens it
    assert page.is_hidden("#job-panel")
    link = page.locator(f'#recent a[data-job="{job_id}"]')
    assert link.get_attribute("href") == f"/?job={job_id}"
    link.click()
    wait_finished(page)
    assert page.url == f"{api}/?job={job_id}" and job_id_of(page) == job_id
    page.go_back()  # history: back to the empty page
    page.wait_for_selector("#job-panel", state="hidden")

    unknown = "0123456789abcdef0123456789abcdef"
    page.fill("#open-id", unknown)
    page.press("#open-id", "Enter")
    answer = httpx.get(f"{api}/jobs/{unknown}", timeout=10).json()["error"]
    page.wait_for_selector("#job-error:not(:empty)")
    assert page.text_content("#job-error") == f"{answer['message']} ({answer['code']})"
    assert page.text_content("#job-status") == "not found"


@pytest.mark.slow
@needs_browser
def test_a_dropped_csv_with_whole_faces(api: str, images: ImageServer, browsing: Callable[[str], Browsing]) -> None:
    """A CSV dropped on the page goes as a multipart upload, with the faces mode chosen."""
    state = browsing(api)
    page = state.page()
    page.goto(api + "/")
    urls = [images.url("/photos/vnsst_sad.jpg"), images.url("/photos/vnsst_surprise.jpg")]
    text = "name,URL\r\n" + "".join(f"n{i},{url}\r\n" for i, url in enumerate(urls))
    page.evaluate("""text => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], 'urls.csv', { type: 'text/csv' }));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true,
                                                                             cancelable: true }));
    }""", text)
    assert page.text_content("#file-name") == f"urls.csv ({len(text)} bytes)"
    page.select_option("#faces", "whole")
    page.click("#submit-button")
    wait_finished(page)
    job = get_json(api, f"/jobs/{job_id_of(page)}?limit=10")
    assert job["faces"] == "whole" and [row["url"] for row in job["results"]] == urls
    assert page.text_content("#job-faces") == "whole images"
    check_cards(card_data(page), job)
    assert not any(card["boxes"] for card in card_data(page))  # whole images: no face boxes
    posts = [headers for method, url, headers in state.requests
             if method == "POST" and url == f"{api}/jobs?faces=whole"]
    assert len(posts) == 1 and posts[0]["content-type"].startswith("multipart/form-data")


@pytest.mark.slow
@needs_browser
def test_a_bad_request_shows_the_apis_words(api: str, browsing: Callable[[str], Browsing]) -> None:
    state = browsing(api)
    page = state.page()
    page.goto(api + "/")
    expected = httpx.post(f"{api}/jobs", json={"urls": []}, timeout=10).json()["error"]
    assert expected["code"] == "no_urls"
    page.fill("#urls", "  \n\n")
    page.click("#submit-button")
    page.wait_for_selector("#submit-error:not(:empty)")
    assert page.text_content("#submit-error") == f"{expected['message']} (no_urls)"
    assert page.get_attribute("#submit-error", "role") == "alert"
    assert page.is_hidden("#job-panel")

    # A CSV file is sent instead of the list: one with only a header holds no URL either.
    page.set_input_files("#csv-file", {"name": "empty.csv", "mimeType": "text/csv", "buffer": b"url\n\n"})
    assert page.text_content("#file-name") == "empty.csv (5 bytes)"
    page.fill("#urls", "http://127.0.0.1:9/ignored.jpg")
    page.click("#submit-button")
    page.wait_for_function("() => document.getElementById('submit-error').textContent.includes('no_urls')")
    posts = [headers for method, url, headers in state.requests
             if method == "POST" and url == f"{api}/jobs?faces=detect"]
    assert len(posts) == 1 and posts[0]["content-type"].startswith("multipart/form-data; boundary=")


@pytest.mark.slow
@needs_browser
def test_api_keys_prompt_and_authorized_downloads(keyed_api: KeyedApi, images: ImageServer,
                                                  browsing: Callable[[str], Browsing]) -> None:
    base = keyed_api.url
    state = browsing(base)
    page = state.page()
    page.goto(base + "/")  # the page itself needs no key
    assert page.is_hidden("#key-panel")
    page.fill("#urls", images.url("/photos/vnsst_angry.jpg") + "\n" + images.url("/text"))
    page.click("#submit-button")
    page.wait_for_selector("#key-panel", state="visible")
    assert "needs an API key" in page.text_content("#key-message")
    assert page.text_content("#key-message").endswith("(unauthorized)")
    assert page.get_attribute("#key-input", "type") == "password"
    assert page.evaluate("document.activeElement.id") == "key-input"

    page.fill("#key-input", "fer_not-a-key")  # a wrong key: asked again, with the API's reason
    page.press("#key-input", "Enter")
    page.wait_for_function("() => document.getElementById('key-message').textContent.includes('not valid')")
    assert page.is_visible("#key-panel")

    page.fill("#key-input", keyed_api.key)
    page.click("#key-form button[type=submit]")
    wait_finished(page)
    job_id = job_id_of(page)
    job = get_json(base, f"/jobs/{job_id}?limit=10", keyed_api.key)
    check_cards(card_data(page), job)
    assert page.is_hidden("#key-panel") and page.is_visible("#key-state")
    assert page.evaluate("JSON.parse(localStorage.getItem('fer-batch.apiKey'))") == keyed_api.key

    # Every API request after the key was given carries it; the CSV comes through fetch + Blob.
    with page.expect_download() as download:
        page.click("#dl-results")
    expected = httpx.get(f"{base}/jobs/{job_id}/results.csv", headers={"Authorization": f"Bearer {keyed_api.key}"},
                         timeout=10).content
    assert Path(download.value.path()).read_bytes() == expected
    calls = state.api_requests(base)
    keyed_calls = [(method, url) for method, url, headers in calls
                   if headers.get("authorization") == f"Bearer {keyed_api.key}"]
    assert (("GET", f"{base}/jobs/{job_id}/results.csv") in keyed_calls)
    first_keyed = next(i for i, (_, _, headers) in enumerate(calls)
                       if headers.get("authorization") == f"Bearer {keyed_api.key}")
    assert all(headers.get("authorization") == f"Bearer {keyed_api.key}" for _, _, headers in calls[first_keyed:])

    page.goto(f"{base}/?job={job_id}")  # remembered: no prompt on the next visit
    wait_finished(page)
    assert page.is_hidden("#key-panel")
    page.click("#key-forget")
    assert page.is_hidden("#key-state")
    page.reload()
    page.wait_for_selector("#key-panel", state="visible")


@needs_browser
def test_face_filters_landmarks_and_quality_on_the_page(api: str, images: ImageServer,
                                                        browsing: Callable[[str], Browsing]) -> None:
    """The form's filters reach the job; each face shows its quality; "Show landmarks" draws the
    API's points on the thumbnail, where the API puts them; a bad filter shows the API's words."""
    urls = [images.url(f"/faces/{GROUP_PHOTO}"), images.url("/photos/fer_justin.jpg"),
            images.url("/photos/vnsst_sad.jpg")]
    state = browsing(api)
    page = state.page()
    page.goto(api + "/")
    page.fill("#urls", "\n".join(urls))
    page.fill("#min-face-size", "60")
    page.fill("#max-faces", "3")
    page.click("#submit-button")
    wait_finished(page)
    job = get_json(api, f"/jobs/{job_id_of(page)}?limit=1000")
    assert job["filters"] == {"min_face_size": 60, "min_score": None, "max_faces": 3}
    group, portrait, small = job["results"]
    assert group["face_count"] == 3 and portrait["face_count"] == 1
    assert small["error"]["code"] == "no_face" and "all filtered out" in small["error"]["message"]
    assert page.text_content('#results li[data-index="2"] .message') == small["error"]["message"]

    # Quality per face: the portrait's one face above its bars, each of the group's three in its list.
    face = portrait["faces"][0]
    assert page.text_content('#results li[data-index="1"] .info > .quality') == (
        f"{face['size']} px · brightness {round(face['quality']['brightness'])} · "
        f"sharpness {round(face['quality']['sharpness'])} · roll {round(face['pose']['roll'])}°")
    assert page.locator('#results li[data-index="0"] .faces .quality').count() == 3

    # Landmarks: hidden until asked for, then six per face at the API's points, scaled to the thumbnail.
    page.wait_for_selector('#results li[data-index="0"] .frame[data-boxes="3"]', state="attached")
    dots = page.locator('#results li[data-index="0"] .landmark')
    assert dots.count() == 3 * 6 and not dots.first.is_visible()
    page.check("#show-landmarks")
    assert dots.first.is_visible()
    img = page.locator('#results li[data-index="0"] img')
    shown = img.bounding_box()
    scale = shown["width"] / 2048
    for number, face in enumerate(group["faces"]):
        for name, (x, y) in face["landmarks"].items():
            dot = page.locator(f'#results li[data-index="0"] .landmark[data-face="{number}"][data-point="{name}"]')
            box = dot.bounding_box()
            assert box["x"] + box["width"] / 2 == pytest.approx(shown["x"] + x * scale, abs=1.5)
            assert box["y"] + box["height"] / 2 == pytest.approx(shown["y"] + y * scale, abs=1.5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator('#results li[data-index="0"]').screenshot(path=SHOTS / "landmarks.png")
    page.reload()  # the choice is remembered in this browser
    wait_finished(page)
    assert page.is_checked("#show-landmarks")
    page.uncheck("#show-landmarks")
    assert not page.locator('#results li[data-index="0"] .landmark').first.is_visible()

    # A bad value is sent as typed; the API refuses it in its own words and nothing is queued.
    before = get_json(api, "/jobs?limit=1")["total"]
    page.fill("#urls", urls[1])
    page.fill("#min-face-size", "-3")
    page.fill("#max-faces", "")
    page.click("#submit-button")
    page.wait_for_selector("#submit-error:not(:empty)")
    assert "min_face_size must be at least 0 pixels, got -3" in page.text_content("#submit-error")
    assert get_json(api, "/jobs?limit=1")["total"] == before
