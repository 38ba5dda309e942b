"""What a file is, from its first bytes: the only look at a file the web process takes.

The bytes decide; the name is only a hint, used where the bytes fit two kinds (a scan that
is both a TIFF and a DICOM file). A program, a web page or a Word document renamed to .pdf
is still what its bytes say, and the family is told what it looks like and what to do.
"""

import re
import unicodedata
from dataclasses import dataclass

import puremagic

# What the first bytes of a file must include for every check here.
HEAD_BYTES = 4096
MAX_NAME_LENGTH = 120

# What we accept, in the order that decides when the bytes fit several.
KINDS = ("dicom", "pdf", "jpeg", "png", "heic", "tiff", "zip")
HINTS = {
    "pdf": "pdf",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jfif": "jpeg",
    "jpe": "jpeg",
    "mpo": "jpeg",  # a camera's multi-picture JPEG
    "png": "png",
    "heic": "heic",
    "heif": "heic",
    "hif": "heic",
    "tif": "tiff",
    "tiff": "tiff",
    "dcm": "dicom",
    "dicom": "dicom",
    "dic": "dicom",
    "zip": "zip",
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
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
}
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1"}
TIFF_HEADERS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# A ZIP file, or an empty one.
ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")
# A scan CD's index (Media Storage Directory Storage): it lists the scans, it is none.
DICOMDIR_CLASS = re.compile(rb"1\.2\.840\.10008\.1\.3\.10(?![0-9.])")
# The value representations an element written with explicit VR names after its tag.
DICOM_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip
# A ZIP whose first member is one of these is an office document, not an archive.
OFFICE_MEMBERS = (
    (b"word/", "word"),
    (b"xl/", "spreadsheet"),
    (b"ppt/", "presentation"),
    (b"opendocument.text", "word"),
    (b"opendocument.spreadsheet", "spreadsheet"),
    (b"opendocument.presentation", "presentation"),
    (b"[Content_Types].xml", "office"),
)
# What else a file may be, by puremagic's name for it, to tell the family.
LOOKS_LIKE = {
    **dict.fromkeys((".doc", ".docx", ".odt", ".rtf", ".wpd", ".pages"), "word"),
    **dict.fromkeys((".xls", ".xlsx", ".ods", ".csv"), "spreadsheet"),
    **dict.fromkeys((".ppt", ".pptx", ".odp", ".key"), "presentation"),
    **dict.fromkeys((".html", ".htm", ".xhtml", ".mht", ".mhtml"), "web_page"),
    **dict.fromkeys((".exe", ".dll", ".msi", ".elf", ".so", ".dmg", ".apk", ".jar"), "program"),
    **dict.fromkeys((".rar", ".7z", ".gz", ".tgz", ".bz2", ".xz", ".tar", ".cab"), "archive"),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv", ".webm", ".3gp", ".m4v"), "video"),
    **dict.fromkeys((".gif", ".bmp", ".webp", ".svg", ".psd", ".avif", ".jxl"), "picture"),
    **dict.fromkeys((".mp3", ".m4a", ".wav", ".ogg", ".amr", ".opus"), "sound"),
    **dict.fromkeys((".eml", ".msg"), "email"),
}
PROGRAM_STARTS = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")


@dataclass(frozen=True)
class Detected:
    kind: str | None  # one of KINDS, or None
    # When it is none of them: what it looks like ("word", "program", … or "" if unknown);
    # "dicomdir" for a scan CD's index.
    looks_like: str = ""


def detect(name: str, head: bytes) -> Detected:
    """What a file named `name` whose first bytes are `head` is."""
    kinds = possible_kinds(head)
    if "zip" in kinds:
        # A ZIP file's members may start within its first bytes (a folder's are stored as
        # they are): a PDF or a scan among them does not make the archive one.
        return Detected("zip")
    if "dicom" in kinds and DICOMDIR_CLASS.search(head, 128):
        return Detected(None, "dicomdir")
    if not kinds:
        return Detected(None, looks_like(head))
    hint = hinted_kind(name)
    if hint in kinds:
        return Detected(hint)
    return Detected(next(kind for kind in KINDS if kind in kinds))


def hinted_kind(name: str) -> str | None:
    """The kind a file's name suggests, if it is one we accept."""
    _, dot, extension = name.rpartition(".")
    return HINTS.get(extension.lower()) if dot else None


def possible_kinds(head: bytes) -> set[str]:
    """The accepted kinds these first bytes could be; empty for anything else (programs,
    web pages, SVG, office documents…)."""
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    kinds = {
        TYPES_BY_MAGIC[match.extension] for match in matches if match.extension in TYPES_BY_MAGIC
    }
    # puremagic ranks HEIC below MP4 and does not know the HEIF brands mif1 and msf1.
    if head[4:8] == b"ftyp" and head[8:12] in HEIC_BRANDS:
        kinds.add("heic")
    if head.startswith(TIFF_HEADERS):
        kinds.add("tiff")
    # A DICOM file's first 128 bytes may hold anything, so puremagic may name whatever they
    # look like; the sandbox checks what they hold.
    if head[128:132] == b"DICM" or _dicom_without_preamble(head):
        kinds.add("dicom")
    # A PDF's header may follow a little junk, which readers skip.
    if b"%PDF-" in head[:1024]:
        kinds.add("pdf")
    if head.startswith(ZIP_STARTS) and not _office_document(head):
        kinds.add("zip")
    return kinds


def _dicom_without_preamble(head: bytes) -> bool:
    """Older scanners wrote a scan with no preamble and no file meta group: the file starts
    with its first element, of group 0008 (or 0002), little- or big-endian, with its value
    representation written out or not. The sandbox decides whether it really is one."""
    if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x00\x08", b"\x02\x00", b"\x00\x02"):
        return False
    if head[4:6] in DICOM_VRS:
        return True
    # Implicit VR, little-endian: a four-byte length, small for the first elements.
    return head[:2] in (b"\x08\x00", b"\x02\x00") and int.from_bytes(head[4:8], "little") < 1024


def _first_members(head: bytes) -> list[bytes]:
    """The names of the members whose local headers lie in these first bytes of a ZIP file
    (headers read as bytes, nothing inflated)."""
    names, at = [], 0
    while head[at : at + 4] == b"PK\x03\x04" and at + 30 <= len(head):
        size = int.from_bytes(head[at + 18 : at + 22], "little")
        name_length = int.from_bytes(head[at + 26 : at + 28], "little")
        extra = int.from_bytes(head[at + 28 : at + 30], "little")
        names.append(head[at + 30 : at + 30 + name_length])
        if head[at + 6] & 0x08:
            break  # sizes come after the data: the next header cannot be found from here
        at += 30 + name_length + extra + size
    return names


def _office_document(head: bytes) -> str:
    """What office document a ZIP file is, by its members' names ("" for an archive)."""
    names = _first_members(head)
    if names[:1] == [b"mimetype"]:
        for marker, kind in OFFICE_MEMBERS:
            if marker.startswith(b"opendocument") and marker in head[:200]:
                return kind
    for name in names:
        for marker, kind in OFFICE_MEMBERS:
            if name.startswith(marker) and not marker.startswith(b"opendocument"):
                if kind != "office":
                    return kind
    return "office" if b"[Content_Types].xml" in names else ""


def looks_like(head: bytes) -> str:
    """What a file we do not accept seems to be, as a key of messages.LOOKS_LIKE ("" when
    its bytes do not say)."""
    if head.startswith(PROGRAM_STARTS) or head.startswith(b"#!"):
        return "program"
    if head.startswith(ZIP_STARTS):
        return _office_document(head) or "archive"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "web_page"
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in head.lower():
        return "picture"
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    for match in matches:
        if match.extension in LOOKS_LIKE:
            return LOOKS_LIKE[match.extension]
    return ""


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
