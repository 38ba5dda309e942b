"""The guide page a patient reads: its content, its structure and its metadata."""

import json
import math
import re

import pytest
import textstat
from bs4 import BeautifulSoup
from django.core.management import call_command
from django.urls import reverse

from guides.models import (
    Faq,
    Guide,
    Product,
    PublishRefused,
    Reference,
    Service,
    strip_citations,
)

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
    "Inaticabtagene": ("inaticabtagene autoleucel", "CD19", "Leukemia"),
    "Yescarta": ("axicabtagene ciloleucel", "CD19", "Lymphoma"),
    "Abecma": ("idecabtagene vicleucel", "BCMA", "Myeloma"),
    "Carvykti": ("ciltacabtagene autoleucel", "BCMA", "Myeloma"),
}


class Page:
    """The parts of a page a reader and a search engine see, read by BeautifulSoup."""

    def __init__(self, html: str):
        soup = BeautifulSoup(html, "html.parser")
        self.soup = soup
        headings = soup.find_all(["h1", "h2", "h3"])
        self.headings = [(tag.name, " ".join(tag.get_text().split())) for tag in headings]
        self.rows = [
            [" ".join(cell.get_text().split()) for cell in row.find_all(["td", "th"])]
            for row in soup.find_all("tr")
        ]
        self.ids = {tag["id"] for tag in soup.find_all(id=True)}
        self.links = [tag["href"] for tag in soup.find_all("a", href=True)]
        self.meta = {
            tag.get("name") or tag.get("property"): tag.get("content", "")
            for tag in soup.find_all("meta")
            if tag.get("name") or tag.get("property")
        }
        canonical = soup.find("link", rel="canonical")
        if canonical:
            self.meta["canonical"] = canonical["href"]
        self.json_ld = [
            json.loads(tag.string) for tag in soup.find_all("script", type="application/ld+json")
        ]
        self.title = soup.title.get_text() if soup.title else ""
        self.main_text = soup.main.get_text(" ") if soup.main else ""


@pytest.fixture
def guide_page(client, leukemia_guide) -> Page:
    response = client.get(GUIDE_URL)
    assert response.status_code == 200
    return Page(response.content.decode())


def test_real_guide_shows_every_section_of_the_guide(guide_page):
    h2s = [text for level, text in guide_page.headings if level == "h2"]
    for heading in SECTION_HEADINGS:
        assert heading in h2s
    assert ("h3", "Benefits") in guide_page.headings
    assert ("h3", "Limitations") in guide_page.headings
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


def test_every_figure_in_the_products_table_and_key_numbers_has_a_source(guide_page):
    products = guide_page.soup.find("table", class_="products").tbody.find_all("tr")
    assert len(products) == len(PRODUCTS)
    for row in products:
        assert row.select('a[href^="#ref-"]'), row.get_text(" ", strip=True)
    numbers = guide_page.soup.find("ul", class_="key-numbers").find_all("li", recursive=False)
    assert numbers
    for item in numbers:
        assert item.select('a[href^="#ref-"]'), item.get_text(" ", strip=True)


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
        ("B-ALL", "B-cell acute lymphoblastic leukemia"),
        ("AML", "acute myeloid leukemia"),
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
    assert before[:3] == [1, 12, 8]


def test_the_way_to_send_records_follows_the_summary_on_phones_in_the_guides_words(
    guide_page, leukemia_guide
):
    early = guide_page.soup.select_one("aside.cta-early")
    # Straight after "At a glance", and hidden on wide screens, where the page is short.
    assert early.find_previous_sibling("section")["class"] == ["glance"]
    assert "d-lg-none" in early["class"]
    assert early.p.get_text() == leukemia_guide.cta_heading
    assert early.a["href"] == reverse("inquiries:new")
    assert guide_page.soup.find(id="cta-heading").get_text() == leukemia_guide.cta_heading


# Abbreviations a reader may meet in an answer, which is also published on its own (the
# FAQPage data): each answer that uses one spells it out itself.
ANSWER_ABBREVIATIONS = {
    "CAR-T": "chimeric antigen receptor T-cell",
    "CRS": "cytokine release syndrome",
    "ICANS": "immune effector cell-associated neurotoxicity syndrome",
    "B-ALL": "B-cell acute lymphoblastic leukemia",
    "T-ALL": "T-cell acute lymphoblastic leukemia",
    "CLL": "chronic lymphocytic leukemia",
    "SLL": "small lymphocytic lymphoma",
    "AML": "acute myeloid leukemia",
    "REMS": "Risk Evaluation and Mitigation Strateg",
    "BTK": "Bruton",
}


def test_every_answer_spells_out_its_abbreviations(leukemia_guide):
    for faq in leukemia_guide.faqs.all():
        answer = strip_citations(faq.answer)
        for term, expansion in ANSWER_ABBREVIATIONS.items():
            if re.search(rf"(?<![\w/-]){re.escape(term)}(?![\w/-])", answer):
                assert expansion.lower() in answer.lower(), f"{term} in “{faq.question}”"


def readable(text: str) -> str:
    """The text as a reader meets it: no citation markers, and each line (a bullet point, a
    table cell) a sentence of its own."""
    lines = [line.strip(" -") for line in strip_citations(text).splitlines() if line.strip()]
    return " ".join(line if line[-1] in ".?!" else line.rstrip(":;,") + "." for line in lines)


def sections_as_read(guide) -> dict[str, str]:
    rows = [f"{p.indication}\n{p.key_result}\n{p.harms}" for p in guide.products.all()]
    return {
        "Top of the page": guide.lead,
        "At a glance": guide.at_a_glance,
        "What this means for patients": guide.patients_text,
        "Key developments": "\n".join(
            [guide.developments_intro]
            + [f"{d.name}\n{d.summary}" for d in guide.developments.all()]
        ),
        "Approved products": "\n".join([guide.products_intro, *rows, guide.products_note]),
        "Key numbers": "\n".join(
            f"{k.figure} {k.label}\n{k.explanation}" for k in guide.key_numbers.all()
        ),
        "Who this is relevant for": guide.relevant_for,
        "Benefits and limitations": "\n".join(
            f"{b.title}\n{b.text}" for b in guide.balance_points.all()
        ),
        "When to consider this option": guide.when_to_consider,
        "Questions patients and families ask": "\n".join(
            f"{f.question}\n{f.answer}" for f in guide.faqs.all()
        ),
        "Important": guide.medical_disclaimer,
    }


def test_the_guide_reads_at_grade_8_in_every_section_and_6_as_a_whole(leukemia_guide):
    """Flesch-Kincaid grade, by textstat (a maintained readability library)."""
    sections = {name: readable(text) for name, text in sections_as_read(leukemia_guide).items()}
    grades = {name: textstat.flesch_kincaid_grade(text) for name, text in sections.items()}
    whole = textstat.flesch_kincaid_grade(" ".join(sections.values()))
    print("reading grades:", {name: round(grade, 1) for name, grade in grades.items()}, whole)
    assert {name: grade for name, grade in grades.items() if grade > 8} == {}
    assert whole <= 6


def test_references_link_to_their_doi_or_the_regulator_never_to_a_search(leukemia_guide):
    regulators = ("https://www.fda.gov/", "https://www.ema.europa.eu/", "https://www.nice.org.uk/")
    for reference in leukemia_guide.references.all():
        if reference.url:
            assert reference.url.startswith(("https://doi.org/", *regulators)), reference.key
    with_doi = leukemia_guide.references.filter(url__startswith="https://doi.org/").count()
    assert with_doi >= 15
