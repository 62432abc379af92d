"""The chat page in a real browser: Debian's headless Chromium, driven by
Playwright, against the chat on each backend."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .helpers import BACKENDS, running_chat
from .test_redis import redis_command, redis_server

# scripts/run-tests installs chromium; without it these tests fail, not skip.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def open_page(browser: Browser, url: str, nick: str, dialogs: list[str]) -> Page:
    """A page in its own context (its own localStorage), nickname chosen."""
    page = browser.new_context().new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#message")).to_be_enabled()  # joined under a guest name
    page.fill("#nick", nick)
    page.press("#nick", "Enter")
    # Announced at the next tick: as a rename of the guest, or (both in the
    # same second) as a join under the name it ended with.
    joined = re.compile(rf"is now {nick}|(^|, | and ){nick}( and .*)? joined")
    expect(page.locator("#messages li.event").last).to_have_text(joined)
    return page


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("#message")).to_have_value("")


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_pages_chat_and_user_text_stays_text(browser: Browser, backend: str) -> None:
    dialogs: list[str] = []
    with running_chat(backend) as chat:
        ann = open_page(browser, chat.page, "ann", dialogs)
        bob = open_page(browser, chat.page, "bob", dialogs)
        for page in (ann, bob):
            expect(page.locator("#online")).to_have_text("2")
        say(ann, "hello bob")
        expect(bob.locator("#messages")).to_contain_text("hello bob")
        say(bob, f"hi ann {XSS}")
        for page in (ann, bob):
            last = page.locator("#messages li.message").last
            expect(last).to_contain_text(f"hi ann {XSS}")  # shown as text
            expect(last.locator(".nick")).to_have_text("bob")
            assert page.locator("#messages img").count() == 0  # never parsed as HTML
        bob.context.close()
        expect(ann.locator("#online")).to_have_text("1")
        expect(ann.locator("#messages")).to_contain_text("bob left")
        ann.context.close()
    assert dialogs == []  # no script from a message ever ran


def test_rate_limit_notice_is_visible(browser: Browser) -> None:
    with running_chat("asyncio", "--rate", "0.1", "--burst", "2") as chat:
        page = open_page(browser, chat.page, "ann", [])  # the guest join and the rename
        say(page, "one too many")
        expect(page.locator("#messages li.notice")).to_contain_text("slow down")
        page.context.close()


def test_choosing_a_nickname_asks_the_server_once(browser: Browser) -> None:
    """Enter in the nickname box also fires its change event: one join must
    go out, not two (the second would spend the rate limit's burst)."""
    sent: list[str] = []
    page = browser.new_context().new_page()
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))))
    with running_chat("asyncio") as chat:
        page.goto(chat.page)
        expect(page.locator("#message")).to_be_enabled()  # joined under a guest name
        page.fill("#nick", "ann")
        page.press("#nick", "Enter")
        expect(page.locator("#nick")).to_have_value("ann")
        expect(page.locator("#messages li.event").last).to_contain_text("ann")
        page.locator("#message").focus()  # a blur: no change, nothing more to ask
        say(page, "hi")
        expect(page.locator("#messages li.message").last).to_contain_text("hi")
        joins = [json.loads(frame)["nick"] for frame in sent if '"join"' in frame]
        assert joins[1:] == ["ann"]
        assert joins[0].startswith("guest-")
    page.context.close()


def test_page_reconnects_after_the_server_restarts(browser: Browser) -> None:
    with running_chat("asyncio") as chat:
        page = open_page(browser, chat.page, "ann", [])
        port = chat.port
        chat.stop()
        expect(page.locator("#status")).to_contain_text("retrying")
        expect(page.locator("#message")).to_be_disabled()
    with running_chat("trio", port=port):  # back, on another backend even
        expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        expect(page.locator("#message")).to_be_enabled()
        expect(page.locator("#nick")).to_have_value("ann")  # joined again as ann
        say(page, "back")
        expect(page.locator("#messages li.message").last).to_contain_text("back")
    page.context.close()


def test_a_batched_presence_update_reads_as_one_line(browser: Browser) -> None:
    """Another worker's burst (as it announces it through Redis) is one
    line per kind of change, its names as text, the rest counted."""
    with (
        redis_server() as port,
        running_chat("asyncio", "--redis", f"redis://127.0.0.1:{port}/0") as chat,
    ):
        page = open_page(browser, chat.page, "ann", [])
        names = [f"n{i}" for i in range(20)]
        event = {
            "type": "presence",
            "count": 60,
            "joined": names,
            "joined_more": 37,
            "left": ["zed", "yan"],
            "renamed": [["cyd", "cydney"]],
            "renamed_more": 2,
        }
        envelope = json.dumps({"worker": "elsewhere", "event": event})
        assert redis_command(port, "PUBLISH", "wschat:room", envelope) == 1
        expect(page.locator("#online")).to_have_text("61")
        lines = page.locator("#messages li.event")
        expect(lines.nth(-4)).to_have_text("zed and yan left")
        expect(lines.nth(-3)).to_have_text("cyd is now cydney")
        expect(lines.nth(-2)).to_have_text("2 others changed their names")
        expect(lines.nth(-1)).to_have_text(", ".join(names) + " and 37 others joined")
        page.context.close()
