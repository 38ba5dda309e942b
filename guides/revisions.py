"""What a draft changes against the published revision, section by section, for the
editors and the approver to read before publishing."""

import difflib
from dataclasses import dataclass

from django.utils.html import escape, format_html_join
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Change:
    where: str
    kind: str  # "changed", "added" or "removed"
    marked: SafeString  # the text, words taken out struck through, words put in underlined


def differences(published: list, draft: list) -> list[Change]:
    """The sections whose text differs, in the draft's order (then those it removed).

    Both lists are of (where, text), as Guide.labelled_texts() gives them; a section is
    known by where it stands ("Question “Who can have CAR-T?”"), so a renamed question
    reads as one removed and one added."""
    before = dict(published)
    after = dict(draft)
    changes = []
    for where, text in draft:
        if where not in before:
            changes.append(Change(where, "added", _marked("", text)))
        elif before[where] != text:
            changes.append(Change(where, "changed", _marked(before[where], text)))
    for where, text in published:
        if where not in after:
            changes.append(Change(where, "removed", _marked(text, "")))
    return changes


def _marked(old: str, new: str) -> SafeString:
    old_words, new_words = old.split(), new.split()
    parts = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(escape(" ".join(old_words[a1:a2])))
            continue
        if a2 > a1:
            parts.append(format_html_join("", "<del>{}</del>", [(" ".join(old_words[a1:a2]),)]))
        if b2 > b1:
            parts.append(format_html_join("", "<ins>{}</ins>", [(" ".join(new_words[b1:b2]),)]))
    return mark_safe(" ".join(parts))  # noqa: S308 - every part escaped above
