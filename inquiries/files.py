"""Checks one medical document a family uploads, and makes the copy that is stored.

What a file is comes from its bytes, never from its name or from what the browser said.
PDFs and DICOM scans are stored unchanged once checked; photos are decoded and written
again, which drops everything but the picture (camera details, GPS location, comments).
"""

import hashlib
import logging
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import puremagic
import pydicom
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, ImageOps
from pillow_heif import register_heif_opener
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject

register_heif_opener()

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# Files are read this much at a time, so that a 20 MB scan never sits in memory whole.
CHUNK = MB
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
LABELS = {
    "pdf": "a PDF",
    "jpeg": "a JPEG photo",
    "png": "a PNG image",
    "heic": "a HEIC photo",
    "dicom": "a DICOM scan",
}

MESSAGES = {
    "type": "“{name}” is not a type we can accept. Please send PDF, JPEG, PNG, HEIC or DICOM "
    "files.",
    "empty": "“{name}” is empty. Please choose it again, or another copy of it.",
    "too_large": "“{name}” is larger than {limit}. Please send a smaller copy, for example a "
    "PDF saved at a lower quality.",
    "mismatch": "“{name}” does not look like {label}, although its name says so. Please send "
    "the original file, or a photo of each page.",
    "encrypted": "“{name}” is protected with a password. Please send a copy without a "
    "password, or a photo of each page.",
    "damaged": "“{name}” seems to be damaged or incomplete. Please save it again and choose it "
    "again.",
    "active_content": "“{name}” contains active content (such as scripts), which we do not "
    "accept for safety. Please print it to a new PDF or send photos of the pages.",
    "embedded_file": "“{name}” has other files attached inside it, which we do not accept for "
    "safety. Please print it to a new PDF, and send any attached reports on their own.",
    "too_many_pixels": "“{name}” is too large a picture for us to open safely (more than "
    "{limit:,} pixels). Please send a smaller copy, for example a photo taken at a lower "
    "resolution.",
    "too_many_pages": "“{name}” has more than {limit:,} pages. Please send the parts that matter "
    "most, or split it into smaller files.",
    "too_complex": "“{name}” is built in an unusually complicated way that we cannot check "
    "safely. Please copy the scan again from the hospital’s disc, or ask for a new copy.",
    "executable_preamble": "“{name}” carries something other than a scan at its start, which "
    "we do not accept for safety. Please copy the scan again from the hospital’s disc, or ask "
    "the hospital for a new copy.",
}


@dataclass
class CheckedDocument:
    original_name: str
    detected_type: str
    content_type: str
    extension: str
    size: int
    sha256: str
    pages: int | None
    content: File


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


def check_document(upload: UploadedFile) -> CheckedDocument:
    """Checks one uploaded file; raises ValidationError with a message for the family."""
    name = sanitise_filename(upload.name or "")
    _, dot, extension = name.rpartition(".")
    kind = TYPES_BY_EXTENSION.get(extension.lower()) if dot else None
    if kind is None:
        raise _refused("type", name)
    if not upload.size:
        raise _refused("empty", name)
    if upload.size > settings.DOCUMENT_MAX_BYTES:
        raise _refused("too_large", name, limit=f"{settings.DOCUMENT_MAX_BYTES / MB:g} MB")
    if kind not in _sniff(upload.file):
        raise _refused("mismatch", name, label=LABELS[kind])
    if kind == "pdf":
        return _checked_pdf(upload, name)
    if kind == "dicom":
        return _checked_dicom(upload, name)
    return _cleaned_image(upload, name, kind)


def _refused(code: str, name: str, **details: Any) -> ValidationError:
    # The reason and the kind of file only: a file's name can itself be health data
    # ("… HIV test.pdf"), and its contents never belong in a log.
    logger.info("Document refused (%s), a %s file", code, Path(name).suffix.lower() or "nameless")
    return ValidationError(MESSAGES[code].format(name=name, **details), code=code)


def _sniff(file: IO[bytes]) -> set[str]:
    """The allowed types these bytes could be; empty for anything else (programs, web
    pages, SVG, ZIP...)."""
    file.seek(0)
    head = file.read(132)
    file.seek(0)
    kinds = {
        TYPES_BY_MAGIC[match.extension]
        for match in puremagic.magic_stream(file)
        if match.extension in TYPES_BY_MAGIC
    }
    # puremagic ranks HEIC below MP4 and does not know the HEIF brands mif1 and msf1. A
    # DICOM file's first 128 bytes may hold anything, so puremagic may name whatever they
    # look like; what they hold is checked later.
    if head[4:8] == b"ftyp" and head[8:12] in HEIC_BRANDS:
        kinds.add("heic")
    if head[128:132] == b"DICM":
        kinds.add("dicom")
    file.seek(0)
    return kinds


def _digest(file: IO[bytes]) -> tuple[str, int]:
    file.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := file.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return digest.hexdigest(), size


STORED_UNCHANGED = {"pdf": ("application/pdf", "pdf"), "dicom": ("application/dicom", "dcm")}


def _unchanged(upload: UploadedFile, name: str, kind: str, pages: int | None) -> CheckedDocument:
    sha256, size = _digest(upload.file)
    content_type, extension = STORED_UNCHANGED[kind]
    return CheckedDocument(name, kind, content_type, extension, size, sha256, pages, upload)


# PDF

ACTIVE_ACTIONS = {
    "/JavaScript",
    "/Launch",
    "/SubmitForm",
    "/ImportData",
    "/GoToE",
    "/GoToR",
    "/RichMediaExecute",
}
# A PDF whose trees make the checker take more steps than this, or that has more pages, is
# built to wear a checker out (a medical report has dozens of pages, not thousands).
WALK_LIMIT = 100_000
MAX_PDF_PAGES = 2_000


def _checked_pdf(upload: UploadedFile, name: str) -> CheckedDocument:
    problem, pages = _read_pdf(upload.file, upload.size)
    if problem is None and _has_script_tokens(upload.file):
        problem = "active_content"
    if problem:
        raise _refused(problem, name, limit=MAX_PDF_PAGES)
    return _unchanged(upload, name, "pdf", pages)


def _read_pdf(file: IO[bytes], size: int) -> tuple[str | None, int]:
    """The refusal code, if any, and the number of pages."""
    file.seek(max(0, size - 1024))
    if b"%%EOF" not in file.read(1024):
        return "damaged", 0
    file.seek(0)
    try:
        # A file object, never a path or bytes: pypdf then reads only the objects it needs.
        reader = PdfReader(file)
        if reader.is_encrypted:
            return "encrypted", 0
        declared = _resolve(_dictionary(reader.root_object.get("/Pages")).get("/Count"))
        if not isinstance(declared, int) or declared > MAX_PDF_PAGES:
            return ("too_many_pages" if isinstance(declared, int) else "damaged"), 0
        pages = len(reader.pages)
        # pypdf skips a page it cannot find; the page tree still says how many there are.
        if pages != declared:
            return "damaged", pages
        return _pdf_problem(reader), pages
    except Exception:
        # pypdf raises many kinds of error on a broken file; each means the same to a family.
        return "damaged", 0


def _pdf_problem(reader: PdfReader) -> str | None:
    """The refusal code if the PDF can run, send or open anything, else None."""
    root = reader.root_object
    names = _dictionary(root.get("/Names"))
    form = _dictionary(root.get("/AcroForm"))
    if "/EmbeddedFiles" in names:
        return "embedded_file"
    if "/JavaScript" in names or "/XFA" in form:
        return "active_content"
    starts = [root.get("/OpenAction"), *_dictionary(root.get("/AA")).values()]
    # One walk for the whole file: an array shared by every page is checked once, and the
    # step budget counts every step, so a crafted file cannot make the check run for hours.
    walk = Walk()
    for page in reader.pages:
        starts += _dictionary(page.get("/AA")).values()
        for annotation in walk(page.get("/Annots")):
            if annotation.get("/Subtype") == "/FileAttachment":
                return "embedded_file"
            starts += [annotation.get("/A"), *_dictionary(annotation.get("/AA")).values()]
    for field in walk(form.get("/Fields"), links=("/Kids",)):
        starts += [field.get("/A"), *_dictionary(field.get("/AA")).values()]
    outline = _dictionary(root.get("/Outlines")).get("/First")
    starts += [item.get("/A") for item in walk(outline, links=("/First", "/Next"))]
    for action in Walk()(*starts, links=("/Next",)):
        if action.get("/S") in ACTIVE_ACTIONS or "/JS" in action:
            return "active_content"
    return None


def _resolve(value: Any) -> Any:
    return value.get_object() if hasattr(value, "get_object") else value


def _dictionary(value: Any) -> DictionaryObject:
    value = _resolve(value)
    return value if isinstance(value, DictionaryObject) else DictionaryObject()


class Walk:
    """Walks a PDF's object trees: every dictionary in the starts, or in arrays among them,
    or reached from them through the keys `links`, each once however the file loops back on
    itself, and at most WALK_LIMIT steps in all."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.steps = 0

    def __call__(self, *starts: Any, links: tuple[str, ...] = ()) -> Iterator[DictionaryObject]:
        pending = list(starts)
        while pending:
            self.steps += 1
            if self.steps > WALK_LIMIT:
                raise ValueError("Too many objects to check")
            node = _resolve(pending.pop())
            if not isinstance(node, DictionaryObject | ArrayObject) or id(node) in self.seen:
                continue
            self.seen.add(id(node))
            if isinstance(node, ArrayObject):
                pending += node
                continue
            yield node
            pending += [node[link] for link in links if link in node]


def _name_pattern(name: str) -> bytes:
    # Any character of a PDF name may be written as #xx instead, e.g. /J#61vaScript.
    def either(char: str) -> bytes:
        code = f"{ord(char):02x}"
        return b"(?:%s|#%s)" % (
            re.escape(char.encode()),
            "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in code).encode(),
        )

    return b"/" + b"".join(either(char) for char in name)


# Outside stream data only: a compressed scan holds every byte sequence sooner or later
# (/JS followed by a delimiter about once in 250 MB of random bytes), and stream data
# cannot name an action anyway.
_PDF_TOKENS = re.compile(
    rb"(?P<endstream>endstream)|(?P<stream>(?<![A-Za-z])stream\r?\n)|(?P<name>(?:"
    + b"|".join(_name_pattern(name) for name in ("JavaScript", "JS", "Launch"))
    + rb"))(?=[\x00\t\n\x0c\r ()<>\[\]{}/%])"
)
_TOKEN_OVERLAP = 64


def _has_script_tokens(file: IO[bytes]) -> bool:
    """A second net under _pdf_problem: script names anywhere in the file's own text, even
    in objects that nothing points to and that a lenient viewer might still find."""
    file.seek(0)
    buffer, position, in_stream = b"", 0, False
    while True:
        chunk = file.read(CHUNK)
        buffer += chunk
        # A token that the end of this chunk cuts in two is found whole in the next one.
        safe_end = len(buffer) - _TOKEN_OVERLAP if chunk else len(buffer)
        resume = safe_end
        for match in _PDF_TOKENS.finditer(buffer, position):
            if match.end() > safe_end:
                resume = match.start()
                break
            if match.lastgroup == "endstream":
                in_stream = False
            elif match.lastgroup == "stream":
                in_stream = True
            elif not in_stream:
                return True
            position = match.end()
        if not chunk:
            file.seek(0)
            return False
        resume = max(resume, position)
        # Keep a few bytes before the resume point for the (?<!...) look-behind.
        context = min(resume, 8)
        buffer, position = buffer[resume - context :], context


# DICOM

# A DICOM file starts with 128 bytes that readers skip. Zeros, or a TIFF header (files
# that are both TIFF and DICOM), are all that scanners write there; anything else, such
# as a Windows program that runs when the file is opened the wrong way, is refused.
DICOM_PREAMBLES = (b"II*\0", b"MM\0*")


def _checked_dicom(upload: UploadedFile, name: str) -> CheckedDocument:
    file = upload.file
    file.seek(0)
    preamble = file.read(128)
    if preamble != bytes(128) and not preamble.startswith(DICOM_PREAMBLES):
        raise _refused("executable_preamble", name)
    if _too_many_dicom_items(file):
        raise _refused("too_complex", name)
    file.seek(0)
    try:
        # Values over 64 KB are skipped, not read, so a large scan is never held in memory.
        dataset = pydicom.dcmread(file, stop_before_pixels=True, defer_size="64 KB")
        readable = _dicom_complete(file, dataset, upload.size) and _dicom_identified(dataset)
    except Exception:
        raise _refused("damaged", name) from None
    if not readable:
        raise _refused("damaged", name)
    return _unchanged(upload, name, "dicom", None)


# pydicom makes a Python object of every item of a sequence: a few MB of empty items would
# take gigabytes. Real files have hundreds of items at most (the image's fragments aside,
# which are not read).
MAX_DICOM_ITEMS = 20_000
DICOM_ITEM_TAGS = (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")


def _too_many_dicom_items(file: IO[bytes]) -> bool:
    file.seek(0)
    count, tail = 0, b""
    while chunk := file.read(CHUNK):
        window = tail + chunk
        count += sum(window.count(tag) for tag in DICOM_ITEM_TAGS)
        # Three bytes carried over: a tag cut across two chunks is found whole, and only once.
        tail = chunk[-3:]
        if count > MAX_DICOM_ITEMS:
            return True
    return False


def _dicom_identified(dataset: pydicom.Dataset) -> bool:
    """pydicom reads almost any bytes after "DICM" without complaint, finding nothing; a
    real file says what it holds and how it is encoded."""
    uids = [
        dataset.file_meta.get("TransferSyntaxUID"),
        dataset.file_meta.get("MediaStorageSOPClassUID"),
        dataset.get("SOPClassUID"),
        dataset.get("SOPInstanceUID"),
    ]
    return all(uid and re.fullmatch(r"[0-9.]{1,64}", str(uid)) for uid in uids)


def _dicom_complete(file: IO[bytes], dataset: pydicom.Dataset, size: int) -> bool:
    """pydicom stops quietly where a file ends, even in the middle of a value, and it
    stops before the image here; so the last value read must end exactly where reading
    stopped, and the image must be as long as it says."""
    stopped_at = file.tell()
    last = dataset.get_item(max(dataset.keys(), default=0))
    if last is None or stopped_at > size:
        return False
    # Sequences of undefined length end at a delimiter, not at a length that can be checked.
    if last.length != 0xFFFFFFFF and last.value_tell + last.length != stopped_at:
        return False
    header = file.read(12)
    if not header:
        # The end of the file; an image must not end before its pixels.
        return "Rows" not in dataset
    if len(header) < 8:
        return False
    implicit, little = dataset.original_encoding
    order = "little" if little else "big"
    if implicit:
        length, header_size = int.from_bytes(header[4:8], order), 8
    elif header[4:6] in {b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"}:
        length, header_size = int.from_bytes(header[8:12], order), 12
    else:
        length, header_size = int.from_bytes(header[6:8], order), 8
    if length == 0xFFFFFFFF:
        # Compressed frames, closed by a sequence delimiter at the very end.
        file.seek(size - 8)
        return file.read(4) == (b"\xfe\xff\xdd\xe0" if little else b"\xff\xfe\xe0\xdd")
    return stopped_at + header_size + length <= size


# Images

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "heic": "HEIF"}
# A JPEG with several pictures inside (many cameras write one) opens as "MPO".
OPENED_AS = {"jpeg": {"JPEG", "MPO"}, "png": {"PNG"}, "heic": {"HEIF"}}
# HEIC becomes JPEG, so that coordinators can open it on any computer.
STORED_AS = {
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "heic": ("JPEG", "image/jpeg", "jpg"),
}
SEE_THROUGH_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _cleaned_image(upload: UploadedFile, name: str, kind: str) -> CheckedDocument:
    file = upload.file
    file.seek(0)
    # Pillow's own bomb limit is checked as it opens the file (an error at twice the limit,
    # a warning above it, which the test settings turn into an error); ours is stricter,
    # and is checked before decoding without changing the process-wide warning filters.
    limit = min(settings.DOCUMENT_IMAGE_MAX_PIXELS, Image.MAX_IMAGE_PIXELS or float("inf"))
    try:
        with Image.open(file, formats=[PILLOW_FORMATS[kind]]) as image:
            if image.format not in OPENED_AS[kind]:
                raise _refused("mismatch", name, label=LABELS[kind])
            if image.width * image.height > limit:
                raise _refused("too_many_pixels", name, limit=int(limit))
            # Decoding everything now is what finds a truncated or corrupt picture.
            image.load()
            content, sha256, size = _without_metadata(image, kind)
    except ValidationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refused("too_many_pixels", name, limit=int(limit)) from None
    except Exception:
        # Decoders raise many kinds of error on broken data; each means the same here.
        raise _refused("damaged", name) from None
    _, content_type, extension = STORED_AS[kind]
    return CheckedDocument(name, kind, content_type, extension, size, sha256, None, content)


def _without_metadata(image: Image.Image, kind: str) -> tuple[File, str, int]:
    """The picture alone, upright, written to an anonymous temporary file."""
    output_format, _, extension = STORED_AS[kind]
    original_mode = image.mode
    # The colour profile is kept: it describes colours, not people, and without it photos
    # of skin or of coloured charts would change colour. Everything else is left behind.
    icc_profile = image.info.get("icc_profile")
    transparency = image.info.get("transparency")
    # Phones store pictures sideways with a note to turn them; the note goes, so turn now.
    ImageOps.exif_transpose(image, in_place=True)
    upright = image
    options: dict[str, Any] = {}
    if output_format == "JPEG":
        upright = _for_jpeg(upright)
        options["quality"] = 90
    elif transparency is not None:
        options["transparency"] = transparency
    same_colours = upright.mode == original_mode or (
        upright.mode == "RGB" and original_mode in {"RGBA", "RGBX", "P", "PA"}
    )
    if icc_profile and same_colours:
        options["icc_profile"] = icc_profile
    upright.info = {}
    # Deleted by the system when closed, or if the process dies: no copy is left behind.
    output = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
    try:
        upright.save(output, output_format, **options)
        sha256, size = _digest(output)
    except BaseException:
        output.close()
        raise
    return File(output, name=f"document.{extension}"), sha256, size


def _for_jpeg(image: Image.Image) -> Image.Image:
    if image.mode in {"RGB", "L"}:
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        # Keep the top 8 bits; a plain conversion would clip nearly everything to white.
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in SEE_THROUGH_MODES or "transparency" in image.info:
        # See-through parts become white, as on paper, rather than JPEG's black.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")
