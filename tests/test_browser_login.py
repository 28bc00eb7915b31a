"""Logins in chromium: log in, reload (the cookie keeps the session), log out (the cookie goes),
and a removed account's cookie opens nothing."""

from __future__ import annotations

import pytest

from apprunner import CHROMIUM, CHROMIUM_ARGS, click, require_chromium, serve_app
from cowdetect.store import Store
from ui.auth import COOKIE, ENDED, WRONG

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    store = Store(tmp_path_factory.mktemp("browser-login") / "data")
    store.add_user("ada", "admin", PASSWORD)
    store.add_user("lea", "labeler", PASSWORD)
    with serve_app(store.data_dir) as url:
        yield url, store


def log_in(page, name: str, password: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    click(page, page.get_by_role("button", name="Log in"))


def test_log_in_reload_log_out(served):
    from playwright.sync_api import sync_playwright

    url, store = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url + "/data")  # a deep link: the login form answers it
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        assert not page.get_by_role("heading", name="Data").count()

        log_in(page, "ada", "not the password")
        page.get_by_text(WRONG).wait_for(timeout=30_000)
        log_in(page, "ada", PASSWORD)
        page.get_by_role("heading", name="Data").wait_for(timeout=60_000)  # the page the link asked for
        page.get_by_text("signed in as").wait_for(timeout=30_000)
        assert page.get_by_role("link", name="Users").count() == 1  # an admin's navigation
        cookie = page.wait_for_function(f"document.cookie.includes('{COOKIE}=')", timeout=30_000)
        assert cookie
        token = next(c for c in context.cookies() if c["name"] == COOKIE)
        assert store.session_user(token["value"]).name == "ada"
        assert token["sameSite"] == "Strict" and token["expires"] > 0

        page.reload()  # a new Streamlit session: the cookie logs it in
        page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
        page.get_by_text("signed in as").wait_for(timeout=30_000)

        click(page, page.get_by_role("button", name="Log out"))
        page.get_by_role("button", name="Log in").wait_for(timeout=30_000)
        page.wait_for_function(f"!document.cookie.includes('{COOKIE}=')", timeout=30_000)
        page.reload()
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        assert not page.get_by_text("signed in as").count()
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()


def test_a_removed_account_s_cookie_opens_nothing(served):
    from playwright.sync_api import sync_playwright

    url, store = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        log_in(page, "lea", PASSWORD)
        page.get_by_text("signed in as").wait_for(timeout=60_000)
        assert page.get_by_role("link", name="Users").count() == 0
        page.wait_for_function(f"document.cookie.includes('{COOKIE}=')", timeout=30_000)
        store.remove_user("lea")
        page.reload()
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        page.get_by_text(ENDED).wait_for(timeout=30_000)
        assert not page.get_by_text("signed in as").count()
        browser.close()
