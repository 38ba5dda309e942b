"""The public pages in Debian's Chromium, on a phone and on a desktop screen."""

import pytest

from guides.models import Feedback

from ..support import axe_violations, watch_csp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"phone": (375, 812), "desktop": (1280, 800)}
PAGES = {
    "home": "/",
    "guides": "/guides/",
    "guide": "/guides/gene-therapy-for-leukemia/",
    "how-we-write": "/guides/how-we-write-our-guides/",
    "feedback": "/guides/gene-therapy-for-leukemia/feedback/",
    "feedback-thanks": "/guides/gene-therapy-for-leukemia/feedback/thanks/",
    "not-found": "/guides/no-such-guide/",
}


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("name", PAGES)
def test_page_fits_the_screen_and_passes_axe(
    new_context, live_server, leukemia_guide, artifacts, name, screen
):
    width, height = SCREENS[screen]
    context = new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    csp = watch_csp(page)
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    response = page.goto(live_server.url + PAGES[name])
    assert response.status == (404 if name == "not-found" else 200)
    assert failed == ([live_server.url + PAGES[name]] if name == "not-found" else [])
    page.screenshot(path=artifacts / f"{name}-{screen}.png", full_page=True)

    sideways = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert sideways <= 0, f"the page scrolls {sideways}px sideways"
    assert page.locator("h1").count() == 1
    assert axe_violations(page) == []
    assert csp == []


def test_a_question_opens_with_javascript_disabled(new_context, live_server, leukemia_guide):
    context = new_context(java_script_enabled=False, viewport={"width": 375, "height": 812})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    question = page.locator("details.faq").first
    answer = question.locator(".answer")
    assert not answer.is_visible()
    question.locator("summary").click()
    assert answer.is_visible()
    assert question.evaluate("element => element.open")


def test_skip_link_is_the_first_stop_and_moves_to_the_content(
    new_context, live_server, leukemia_guide
):
    context = new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to main content"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_products_table_becomes_labelled_cards_on_a_phone(new_context, live_server, leukemia_guide):
    context = new_context(viewport={"width": 375, "height": 812})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    rows = page.locator(".products tbody tr")
    assert rows.count() == leukemia_guide.products.count() == 8
    assert rows.first.bounding_box()["width"] <= 375
    label = page.locator(".products td[data-label='Approved for']").first.evaluate(
        "cell => getComputedStyle(cell, '::before').content"
    )
    assert label == '"Approved for"'
    # Screen readers still meet a table with its headers, not a pile of text.
    table = page.get_by_role("table")
    assert table.get_by_role("columnheader").count() == 6
    assert table.get_by_role("rowheader").count() == 8


def test_products_table_fits_a_desktop_screen_without_scrolling(
    new_context, live_server, leukemia_guide
):
    context = new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    box = page.locator(".table-scroll")
    assert box.evaluate("element => element.scrollWidth - element.clientWidth") <= 0


def test_printed_guide_shows_every_answer_and_no_navigation(
    new_context, live_server, leukemia_guide
):
    context = new_context(viewport={"width": 800, "height": 1100})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    answer = page.locator("details.faq .answer").first
    assert not answer.is_visible()
    page.emulate_media(media="print")
    assert answer.is_visible()
    assert not page.locator("nav.contents").is_visible()
    assert not page.get_by_role("navigation", name="Main").is_visible()
    assert page.locator(".references a").first.is_visible()


def test_a_reader_says_whether_the_guide_was_useful_without_javascript(
    new_context, live_server, leukemia_guide, artifacts
):
    context = new_context(java_script_enabled=False, viewport={"width": 375, "height": 812})
    page = context.new_page()
    page.goto(live_server.url + PAGES["guide"])
    page.get_by_label("Anything we should change? (optional)").fill("Clear, thank you.")
    page.get_by_role("button", name="Yes, it was useful").click()
    page.get_by_role("heading", name="Thank you").wait_for()
    page.screenshot(path=artifacts / "feedback-sent-phone.png", full_page=True)
    assert list(Feedback.objects.values_list("useful", "comment")) == [(True, "Clear, thank you.")]
