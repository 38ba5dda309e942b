"""The guide page a patient reads: its content, its structure and its metadata."""

import json
import math
import re
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.urls import reverse

from guides.models import Faq, Guide, Product, PublishRefused, Reference, Service

from .conftest import ROOT
from .support import publish

GUIDE_URL = "/guides/gene-therapy-for-leukemia/"

SECTION_HEADINGS = [
    "At a glance",
    "What this means for patients",
    "Key developments",
    "Approved products",
    "Key numbers",
    "Who this is relevant for",
    "Benefits and limitations",
    "When to consider this option",
    "Questions patients and families ask",
    "How CancerFax helps",
    "References",
    "Changes to this guide",
]

PRODUCTS = {
    # brand: (generic name, target, disease)
    "Kymriah": ("tisagenlecleucel", "CD19", "Leukemia"),
    "Tecartus": ("brexucabtagene autoleucel", "CD19", "Leukemia"),
    "Breyanzi": ("lisocabtagene maraleucel", "CD19", "Leukemia"),
    "Aucatzyl": ("obecabtagene autoleucel", "CD19", "Leukemia"),
    "Yescarta": ("axicabtagene ciloleucel", "CD19", "Lymphoma"),
    "Abecma": ("idecabtagene vicleucel", "BCMA", "Myeloma"),
    "Carvykti": ("ciltacabtagene autoleucel", "BCMA", "Myeloma"),
}


class Page(HTMLParser):
    """The parts of a page a reader and a search engine see."""

    def __init__(self, html: str):
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.rows: list[list[str]] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.meta: dict[str, str] = {}
        self.json_ld: list[dict] = []
        self.title = ""
        self.main_text = ""
        self._in_title = False
        self._heading: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_main = False
        self._script: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "meta":
            key = attrs.get("name") or attrs.get("property")
            if key:
                self.meta[key] = attrs.get("content", "")
        if tag == "link" and attrs.get("rel") == "canonical":
            self.meta["canonical"] = attrs["href"]
        if tag == "script" and attrs.get("type") == "application/ld+json":
            self._script = []
        if tag in {"h1", "h2", "h3"}:
            self._heading = [tag]
        if tag == "tr":
            self.rows.append([])
        if tag in {"td", "th"} and self.rows:
            self._cell = []
        if tag == "main":
            self._in_main = True
        if tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag in {"h1", "h2", "h3"} and self._heading:
            self.headings.append((self._heading[0], " ".join("".join(self._heading[1:]).split())))
            self._heading = None
        if tag in {"td", "th"} and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "script" and self._script is not None:
            self.json_ld.append(json.loads("".join(self._script)))
            self._script = None
        if tag == "main":
            self._in_main = False
        if tag == "title":
            self._in_title = False
        if tag in {"p", "li", "td", "th", "h1", "h2", "h3", "summary", "div"}:
            self.main_text += " "

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._script is not None:
            self._script.append(data)
        if self._heading is not None:
            self._heading.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_main:
            self.main_text += data


@pytest.fixture
def guide_page(client, leukemia_guide) -> Page:
    response = client.get(GUIDE_URL)
    assert response.status_code == 200
    return Page(response.content.decode())


def test_real_guide_shows_every_section_of_the_guide(guide_page):
    h2s = [text for level, text in guide_page.headings if level == "h2"]
    for heading in SECTION_HEADINGS:
        assert heading in h2s
    assert [text for level, text in guide_page.headings if level == "h1"] == [
        "Gene therapy for leukemia"
    ]


def test_real_guide_lists_all_seven_products_with_target_and_disease(guide_page):
    rows = {row[0].split()[0]: row for row in guide_page.rows[1:]}
    assert set(rows) == set(PRODUCTS)
    for brand, (generic, target, disease) in PRODUCTS.items():
        product_cell, disease_cell, target_cell = rows[brand][:3]
        assert generic in product_cell
        assert (target_cell, disease_cell) == (target, disease)


def test_every_reference_cited_in_the_text_is_in_the_reference_list(guide_page, leukemia_guide):
    cited = {link[1:] for link in guide_page.links if link.startswith("#ref-")}
    listed = {
        f"ref-{number}" for number in leukemia_guide.references.values_list("number", flat=True)
    }
    assert cited, "the guide cites its sources"
    assert cited <= guide_page.ids
    assert cited == listed, "every reference is cited, and every citation is listed"
    assert leukemia_guide.unresolved_citations() == []
    assert "[ref:" not in guide_page.main_text


def test_every_figure_in_the_products_table_and_key_numbers_has_a_source(guide_page, client):
    html = client.get(GUIDE_URL).content.decode()
    for block in re.findall(r"<tr>.*?</tr>", html, re.S)[1:]:
        assert 'href="#ref-' in block, block
    numbers = re.search(r'<ul class="key-numbers">(.*?)</ul>', html, re.S).group(1)
    for item in re.findall(r"<li>.*?</li>", numbers, re.S):
        assert 'href="#ref-' in item, item


def test_real_guide_answers_at_least_ten_questions_that_open_without_javascript(
    client, leukemia_guide
):
    html = client.get(GUIDE_URL).content.decode()
    questions = re.findall(r'<details class="faq">\s*<summary>(.*?)</summary>', html, re.S)
    assert len(questions) >= 10
    assert leukemia_guide.faqs.count() == len(questions)


def test_real_guide_text_is_clean_typography_with_the_disclaimer(guide_page):
    # The seed page's mis-decoded dashes ("\u0e42\u20ac", "\u00e2\u20ac"), a replacement
    # character, and placeholder words must never reach a reader.
    for bad in ("\u0e42\u20ac", "\u00e2\u20ac", "\ufffd", "lorem", "TO" + "DO"):
        assert bad not in guide_page.main_text
    assert "not medical advice" in guide_page.main_text
    assert "does not guarantee" in guide_page.main_text


@pytest.mark.parametrize(
    ("term", "expansion"),
    [
        ("CRS", "cytokine release syndrome"),
        ("ICANS", "immune effector cell-associated neurotoxicity syndrome"),
        ("ORR", "overall response rate"),
        ("r/r", "relapsed or refractory"),
        ("B-ALL", "B-cell acute lymphoblastic leukemia"),
        ("CLL", "chronic lymphocytic leukemia"),
    ],
)
def test_abbreviations_are_spelled_out_where_they_first_appear(guide_page, term, expansion):
    text = " ".join(guide_page.main_text.split())
    first = re.search(rf"(?<![\w/-]){re.escape(term)}(?![\w/-])", text)
    assert first, f"{term} appears on the page"
    before = text[: first.start()]
    assert before.lower().endswith(f"{expansion} (".lower()), text[first.start() - 80 : first.end()]


def test_car_t_and_remission_are_explained_where_they_first_appear(guide_page):
    text = " ".join(guide_page.main_text.split())
    car_t = text.index("CAR-T")
    assert "T cells" in text[car_t : car_t + 250] or "T-cells" in text[car_t : car_t + 250]
    remission = text.lower().index("remission")
    nearby = text[max(0, remission - 200) : remission + 250].lower()
    assert "no sign" in nearby or "cannot be found" in nearby or "can no longer be found" in nearby


def test_page_title_description_canonical_and_open_graph(guide_page):
    assert guide_page.title == "Gene therapy for leukemia – CancerFax"
    assert 50 <= len(guide_page.meta["description"]) <= 160
    assert guide_page.meta["canonical"] == "http://127.0.0.1:8000" + GUIDE_URL
    assert guide_page.meta["og:title"] == "Gene therapy for leukemia"
    assert guide_page.meta["og:url"] == guide_page.meta["canonical"]
    assert guide_page.meta["og:type"] == "article"


def test_structured_data_describes_a_reviewed_medical_page_and_its_questions(
    guide_page, leukemia_guide
):
    by_type = {block["@type"]: block for block in guide_page.json_ld}
    medical = by_type["MedicalWebPage"]
    revision = leukemia_guide.current_revision()
    assert medical["lastReviewed"] == revision.reviewed_on.isoformat()
    reviewers = [(person["@type"], person["name"]) for person in medical["reviewedBy"]]
    assert reviewers == [("Person", "Dr Morgan Sample"), ("Person", "Dr Robin Example")]
    assert medical["medicalAudience"]["@type"] == "Patient"
    faq = by_type["FAQPage"]
    assert len(faq["mainEntity"]) == leukemia_guide.faqs.count()
    assert all("[ref:" not in q["acceptedAnswer"]["text"] for q in faq["mainEntity"])


def test_contents_list_links_to_every_section(guide_page):
    contents = [
        link for link in guide_page.links if link.startswith("#") and not link.startswith("#ref-")
    ]
    assert "#main" in contents
    for anchor in ["patients", "developments", "products", "questions", "references", "changes"]:
        assert f"#{anchor}" in contents
        assert anchor in guide_page.ids


def test_review_dates_and_reviewers_at_the_foot_of_the_page(guide_page, leukemia_guide):
    text = " ".join(guide_page.main_text.split())
    revision = leukemia_guide.current_revision()
    assert f"Last reviewed: {revision.reviewed_on:%-d %B %Y}" in text
    assert f"Next review due: {revision.next_review_due:%-d %B %Y}" in text
    assert (
        "Reviewed by Dr Robin Example, Consultant haematologist (MB BS, MRCP, FRCPath): "
        "a fictional reviewer, for the demonstration only." in text
    )


def test_reading_time_is_computed_from_the_text(client, make_guide):
    guide = make_guide(items=1)
    short = client.get(guide.get_absolute_url()).content.decode()
    assert "1 min read" in short
    guide.patients_text = "word " * 1000
    guide.save()
    publish(guide, kind="correction")
    long_page = Page(client.get(guide.get_absolute_url()).content.decode())
    words = sum(len(text.split()) for text in Guide.objects.get(pk=guide.pk).texts())
    assert f"{math.ceil(words / 200)} min read" in long_page.main_text
    assert math.ceil(words / 200) >= 6


def test_unpublished_guide_is_not_found(client, make_guide):
    guide = make_guide(published=False)
    response = client.get(guide.get_absolute_url())
    assert response.status_code == 404
    assert "We cannot find that page" in response.content.decode()


def test_guide_list_and_home_show_only_published_guides(client, make_guide):
    make_guide(slug="published-guide", title="Published guide")
    make_guide(slug="draft-guide", title="Draft guide", published=False)
    for url in (reverse("guides:list"), reverse("home")):
        html = client.get(url).content.decode()
        assert "Published guide" in html
        assert "Draft guide" not in html


def test_a_citation_to_a_missing_reference_is_left_out_and_stops_publishing(
    admin_client, make_guide
):
    guide = make_guide(
        items=1, lead="A claim [ref:nowhere] and a sourced one [ref:test-1].", published=False
    )
    html = admin_client.get(reverse("guides:preview", args=[guide.slug])).content.decode()
    assert "nowhere" not in html
    assert 'href="#ref-1"' in html
    assert guide.unresolved_citations() == ["nowhere"]
    with pytest.raises(PublishRefused, match=r"\[ref:nowhere\]"):
        publish(guide)
    assert not guide.revisions.exists()


def test_text_is_escaped_not_run_as_html(client, make_guide):
    guide = make_guide(items=1, patients_text="<script>alert(1)</script> & more")
    html = client.get(guide.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_guide_page_refuses_a_post(client, leukemia_guide):
    assert client.post(GUIDE_URL).status_code == 405


def test_loading_the_fixture_again_adds_no_duplicates(leukemia_guide):
    models = [Guide, Faq, Product, Reference, Service]
    before = [model.objects.count() for model in models]
    call_command("loaddata", ROOT / "fixtures" / "guides.json", verbosity=0)
    assert [model.objects.count() for model in models] == before
    assert before[:3] == [1, 12, 7]
