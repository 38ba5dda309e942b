import json
import logging

from django import template
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..models import CITATION, Reference

register = template.Library()
logger = logging.getLogger(__name__)


def _citation_links(keys: str, citations: dict[str, Reference]) -> str:
    references = []
    for key in (key.strip() for key in keys.split(",")):
        if key in citations:
            references.append(citations[key])
        else:
            # The admin warns the editor on save; a reader is not shown a broken marker.
            logger.warning("Citation [ref:%s] matches no reference of the guide", key)
    if not references:
        return ""
    links = format_html_join(
        ", ",
        '<a href="#{}" aria-label="Reference {}">{}</a>',
        ((ref.anchor, ref.number, ref.number) for ref in references),
    )
    return format_html('<sup class="cite">[{}]</sup>', links)


def _with_citations(text: str, citations: dict[str, Reference]) -> str:
    escaped = escape(text)
    return CITATION.sub(lambda match: _citation_links(match.group(1), citations), escaped)


@register.filter
def cite(text: str, citations: dict[str, Reference]) -> SafeString:
    """One line of text with its [ref:key] markers turned into links to the reference list."""
    return mark_safe(_with_citations(" ".join(text.split()), citations))  # noqa: S308


@register.filter
def prose(text: str, citations: dict[str, Reference] | None = None) -> SafeString:
    """Paragraphs separated by blank lines; lines starting with "- " become a list."""
    citations = citations or {}
    html = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        paragraph, items = [], []
        for line in (line.strip() for line in block.split("\n")):
            if line.startswith("- "):
                if paragraph:
                    html.append(f"<p>{_with_citations(' '.join(paragraph), citations)}</p>")
                    paragraph = []
                items.append(f"<li>{_with_citations(line[2:], citations)}</li>")
            elif line:
                if items:
                    html.append(f"<ul>{''.join(items)}</ul>")
                    items = []
                paragraph.append(line)
        if paragraph:
            html.append(f"<p>{_with_citations(' '.join(paragraph), citations)}</p>")
        if items:
            html.append(f"<ul>{''.join(items)}</ul>")
    return mark_safe("\n".join(html))  # noqa: S308


@register.filter
def ld_json(data: object) -> SafeString:
    """A JSON-LD <script> element, safe to place in HTML. It is data, never run, so it needs
    no CSP nonce, and the page holding it can be cached whole."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # The same escapes as Django's json_script, so that no text can close the <script>
    # element; replace() rather than translate(), many times faster on a long text.
    payload = payload.replace("&", "\\u0026").replace("<", "\\u003C").replace(">", "\\u003E")
    return format_html(
        '<script type="application/ld+json">{}</script>',
        mark_safe(payload),  # noqa: S308 - escaped above, as json_script does
    )
