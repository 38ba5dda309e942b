"""What a file is, from its first bytes: the only look at a file the web process takes.

The name only tells what the family expects it to be; a program, a web page or an archive
renamed to .pdf is still what its bytes say.
"""

import re
import unicodedata

import puremagic

# What the first bytes of a file must include for every check here.
HEAD_BYTES = 4096
MAX_NAME_LENGTH = 120

TYPES_BY_EXTENSION = {
    "pdf": "pdf",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "heic": "heic",
    "heif": "heic",
    "dcm": "dicom",
    "dicom": "dicom",
}
# puremagic names several JPEG variants and both HEIF spellings.
TYPES_BY_MAGIC = {
    ".pdf": "pdf",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jfif": "jpeg",
    ".jpe": "jpeg",
    ".png": "png",
    ".heic": "heic",
    ".heif": "heic",
    ".dcm": "dicom",
}
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1"}


def named_type(name: str) -> str | None:
    """The type a file's name claims, if it is one we accept."""
    _, dot, extension = name.rpartition(".")
    return TYPES_BY_EXTENSION.get(extension.lower()) if dot else None


def sniffed_types(head: bytes) -> set[str]:
    """The accepted types these first bytes could be; empty for anything else (programs,
    web pages, SVG, ZIP…)."""
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    kinds = {
        TYPES_BY_MAGIC[match.extension] for match in matches if match.extension in TYPES_BY_MAGIC
    }
    # puremagic ranks HEIC below MP4 and does not know the HEIF brands mif1 and msf1. A
    # DICOM file's first 128 bytes may hold anything, so puremagic may name whatever they
    # look like; the sandbox checks what they hold.
    if head[4:8] == b"ftyp" and head[8:12] in HEIC_BRANDS:
        kinds.add("heic")
    if head[128:132] == b"DICM":
        kinds.add("dicom")
    # A PDF's header may follow a little junk, which readers skip.
    if b"%PDF-" in head[:1024]:
        kinds.add("pdf")
    return kinds


def sanitise_filename(name: str) -> str:
    """The name a person gave their file, safe to show as text (never used on disk)."""
    name = re.split(r"[/\\]", name)[-1]
    # Cc and Cf hold line breaks, right-to-left overrides and zero-width characters, which
    # can make "gpj.exe" show as "exe.jpg"; Cs (lone surrogates) cannot even be stored.
    name = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Cs"})
    name = " ".join(unicodedata.normalize("NFC", name).split())
    stem, dot, extension = name.rpartition(".")
    if not dot or not extension or len(extension) > 16:
        stem, extension = name, ""
    else:
        extension = f".{extension}"
    stem = stem.lstrip(". ")[: MAX_NAME_LENGTH - len(extension)].rstrip()
    return (stem or "document") + extension
