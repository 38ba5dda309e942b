"""What a draft changes against the published revision, for the editors and the approver to
read before publishing: every field of the guide, of its parts, of its reviewers and of the
services the page shows, not only its text (a link, a date or a review cycle changes what
readers get as surely as a sentence)."""

import difflib
from dataclasses import dataclass

from django.utils.html import escape, format_html_join
from django.utils.safestring import SafeString, mark_safe

# The field that names each kind of part, for the comparison's first column.
PART_LABELS = {
    "developments": ("Key development", "name"),
    "products": ("Product", "brand_name"),
    "key_numbers": ("Key number", "figure"),
    "balance_points": ("Benefit or limitation", "title"),
    "faqs": ("Question", "question"),
    "references": ("Reference", "key"),
}


@dataclass(frozen=True)
class Change:
    where: str
    kind: str  # "changed", "added" or "removed"
    marked: SafeString  # the value, words taken out struck through, words put in underlined


def flattened(snapshot: dict) -> dict[str, str]:
    """{where: value} for every value a snapshot (Guide.snapshot()) holds."""
    if not snapshot:
        return {}
    values = {f"Guide: {field}": value for field, value in snapshot["guide"].items()}
    for name, parts in snapshot["parts"].items():
        label, key = PART_LABELS[name]
        for part in parts:
            for field, value in part.items():
                values[f"{label} “{part.get(key)}”: {field}"] = value
    for reviewer in snapshot.get("reviewers", []):
        for field, value in reviewer.items():
            values[f"Reviewer “{reviewer.get('name')}”: {field}"] = value
    for service in snapshot.get("services", []):
        for field, value in service.items():
            values[f"Service “{service.get('title')}”: {field}"] = value
    # And the page's prose as a reader meets it, section by section.
    for where, text in snapshot.get("texts", []):
        values[f"Text: {where}"] = text
    return {where: "" if value is None else str(value) for where, value in values.items()}


def differences(published: dict | None, draft: dict) -> list[Change]:
    """Each value the draft changes, adds or removes, in the draft's order."""
    before, after = flattened(published or {}), flattened(draft)
    changes = []
    for where, value in after.items():
        if where not in before:
            changes.append(Change(where, "added", _marked("", value)))
        elif before[where] != value:
            changes.append(Change(where, "changed", _marked(before[where], value)))
    for where, value in before.items():
        if where not in after:
            changes.append(Change(where, "removed", _marked(value, "")))
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
