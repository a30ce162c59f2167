"""SPEC 3-4 in a real browser: two headless Chromium contexts log in, chat, see join and leave lines;
a nickname made of markup shows as text. Screenshots go to reports/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from wsbench.target import ServerProcess

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

XSS_NICKNAME = "<img src=x onerror=window.pwn=1>"  # 31 characters: a valid nickname


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run the tests with scripts/test.sh, which installs it")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page: object, base_url: str, nickname: str) -> None:
    page.goto(base_url + "/login")
    page.fill("#nickname", nickname)
    page.press("#nickname", "Enter")
    page.wait_for_url(base_url + "/")
    playwright_api.expect(page.locator("#status")).to_have_attribute("data-state", "open")


def lines(page: object) -> list[str]:
    return page.locator("#contents li").all_inner_texts()


def test_two_browsers_chat(browser: object, shared_server: ServerProcess) -> None:
    expect = playwright_api.expect
    kind = shared_server.label
    base = shared_server.url
    alice_ctx = browser.new_context(viewport={"width": 900, "height": 520})
    mallory_ctx = browser.new_context(viewport={"width": 900, "height": 520})
    alice, mallory = alice_ctx.new_page(), mallory_ctx.new_page()
    errors: list[str] = []
    for page in (alice, mallory):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: None if req.url.startswith(base) else errors.append("external " + req.url))
    try:
        # Login page: the form, and a hint on a bad nickname (SPEC 3.1, 3.2).
        alice.goto(base + "/login")
        alice.fill("#nickname", "   ")
        alice.evaluate("document.querySelector('#nickname').removeAttribute('required')")
        alice.click("#login")
        expect(alice.locator("#hint")).not_to_be_empty()

        log_in(alice, base, "Alice")
        expect(alice.locator("#me")).to_have_text("Alice")
        expect(alice.locator("#contents li").first).to_have_text("~~~欢迎您进入聊天室~~~")

        # A nickname that is markup: shown as text everywhere, never run (SPEC 3.6, 4.3).
        log_in(mallory, base, XSS_NICKNAME)
        expect(mallory.locator("#me")).to_have_text(XSS_NICKNAME)
        expect(alice.locator("#contents li").last).to_have_text(f"~~~{XSS_NICKNAME}进入了聊天室~~~")

        # The nickname is online: a third browser gets 409 and the hint (SPEC 3.3).
        third = browser.new_context().new_page()
        third.goto(base + "/login")
        third.fill("#nickname", "Alice")
        third.click("#login")
        expect(third.locator("#hint")).to_have_text("昵称已被使用，请更换昵称")
        third.context.close()

        # Enter sends; the sender sees 我说：, the other side {nickname}说： (SPEC 4.3, 7.2).
        mallory.fill("#content", "hello <b>there</b>")
        mallory.press("#content", "Enter")
        expect(mallory.locator("#contents li").last).to_have_text("我说：hello <b>there</b>")
        expect(alice.locator("#contents li").last).to_have_text(f"{XSS_NICKNAME}说：hello <b>there</b>")
        expect(mallory.locator("#content")).to_have_value("")

        # The send button sends; blank input is not sent.
        alice.fill("#content", "   ")
        alice.click("#send")
        alice.fill("#content", "你好 😀")
        alice.click("#send")
        expect(mallory.locator("#contents li").last).to_have_text("Alice说：你好 😀")
        assert lines(alice)[-1] == "我说：你好 😀" and "我说：" not in lines(alice)[-2]

        assert alice.evaluate("window.pwn") is None and mallory.evaluate("window.pwn") is None
        assert alice.locator("#contents img").count() == 0

        # The quit link closes the WebSocket and goes to /login; the other side sees the leave line.
        mallory.click("#quit")
        mallory.wait_for_url(base + "/login")
        expect(alice.locator("#contents li").last).to_have_text(f"~~~{XSS_NICKNAME}离开了聊天室~~~")
        assert lines(alice).count(f"~~~{XSS_NICKNAME}离开了聊天室~~~") == 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        alice.screenshot(path=str(SCREENSHOTS / f"chat-{kind}.png"))
        if kind == "tornado":
            alice.screenshot(path=str(SCREENSHOTS / "chat.png"))
        assert errors == []
    finally:
        alice_ctx.close()
        mallory_ctx.close()
