"""The web page at `/`, /docs and /redoc: served with no key and nothing from the internet,
and driven in a real browser (Debian's Chromium through Playwright; skipped without it)."""

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.utils.processes import new_key

EXAMPLES = Path(__file__).resolve().parents[2] / "models" / "digits" / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install -y chromium"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def test_page_and_docs_need_no_key_and_nothing_from_the_internet(api):
    anonymous = httpx.Client(base_url=api.url, timeout=10)
    page = anonymous.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for path in ("/", "/docs", "/redoc"):
        html = anonymous.get(path).text
        assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
        assert assets, path
        for asset in assets:
            assert re.match(r"/[^/]", asset), (path, asset)  # this origin's, not //host/...
            assert anonymous.get(asset).status_code == 200, (path, asset)
    assert "fonts.googleapis" not in anonymous.get("/redoc").text
    assert anonymous.get("/static/nothing.js").status_code == 404
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc"} & set(paths)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip(f"no Chromium for the browser tests: install Debian's with `{INSTALL}` (CI's .ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def visit(browser, api):
    """A new browser context's page. Every URL it requests must be the API's, or refused by the
    browser before it left (the Content-Security-Policy: ReDoc's sidebar asks cdn.redoc.ly for a logo)."""
    contexts, requested, refused = [], [], set()

    def open_page(**options):
        context = browser.new_context(base_url=api.url, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("request", lambda request: requested.append(request.url))
        page.on("requestfailed", lambda request: request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP")
                and refused.add(request.url))
        return page

    yield open_page
    for context in contexts:
        context.close()
    origin = urlsplit(api.url).netloc
    elsewhere = [url for url in requested if urlsplit(url).scheme not in ("data", "blob")
                 and urlsplit(url).netloc != origin and url not in refused]
    assert not elsewhere, f"requests to other hosts: {elsewhere}"


def enter_key(page, key):
    page.goto("/")
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#submit", state="visible")


def test_page_labels_two_digits(visit, api, worker, redis_server, tmp_path):
    page = visit(viewport={"width": 1280, "height": 900})
    key, _ = new_key(redis_server.url)  # a key of its own: its recent jobs are this test's
    enter_key(page, key)
    assert page.input_value("#model") == "digits:1"
    assert "serving" in page.text_content("#model-info")

    page.set_input_files("#files", [EXAMPLES / "3.png", EXAMPLES / "7.png"])
    expect(page.locator(".job[data-status=succeeded]")).to_have_count(2, timeout=30_000)
    cards = page.locator(".job")
    labels = {cards.nth(i).locator(".name").text_content(): cards.nth(i).locator(".label").text_content()
              for i in range(cards.count())}
    assert labels == {"3.png": "3", "7.png": "7"}
    assert page.locator(".job .bar").count() >= 2
    expect(page.locator("#recent tr[data-status=succeeded]")).to_have_count(2, timeout=10_000)
    page.screenshot(path=tmp_path / "page.png", full_page=True)

    page.reload()  # the key is kept in the browser
    page.wait_for_selector("#submit", state="visible")
    assert page.is_hidden("#key-form")

    phone = visit(**PHONE)
    enter_key(phone, key)
    phone.set_input_files("#files", [EXAMPLES / "5.png"])
    phone.wait_for_selector(".job[data-status=succeeded]")
    assert phone.text_content(".job .label") == "5"
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing sideways
    phone.screenshot(path=tmp_path / "page-phone.png", full_page=True)


def test_page_asks_again_for_a_refused_key(visit):
    page = visit()
    page.goto("/")
    page.fill("#key", "qi_not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#notice:has-text('refused')")
    assert page.is_visible("#key-form")
    assert page.is_hidden("#submit")


def test_docs_render_offline_and_authorize_with_a_key(visit, api, tmp_path):
    page = visit(viewport={"width": 1280, "height": 900})
    page.goto("/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() >= 8
    page.click(".auth-wrapper .authorize")
    page.fill(".auth-container input", api.key)
    page.click(".auth-btn-wrapper .authorize")
    page.click(".auth-btn-wrapper .btn-done")
    operation = "#operations-models-list_models_models_get"
    page.click(f"{operation} .opblock-summary")
    page.click(f"{operation} .try-out__btn")
    page.click(f"{operation} .execute")
    status = page.wait_for_selector(f"{operation} .live-responses-table .response .response-col_status")
    assert status.text_content().strip() == "200"
    page.screenshot(path=tmp_path / "docs.png")

    page.goto("/redoc")
    page.wait_for_selector("h2:has-text('List Models')")
    assert page.locator("h1").first.text_content().startswith("Queue inference")
    page.screenshot(path=tmp_path / "redoc.png")
