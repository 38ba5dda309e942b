"""Each uploaded document is checked, and cleaned where it can be, before it is stored."""

import hashlib
import io
import logging
import os
import time
import tracemalloc

import pydicom
import pytest
from django.core.exceptions import ValidationError
from PIL import ExifTags, Image, ImageCms

from inquiries.files import CheckedDocument, check_document, sanitise_filename

from .sample_files import (
    CATALOG,
    HTML_PAGE,
    PAGE,
    PAGES,
    SVG_DRAWING,
    WINDOWS_EXE,
    big_png_bytes,
    dicom_bytes,
    heic_bytes,
    jpeg_bytes,
    large_pdf,
    pdf_bytes,
    pdf_from_objects,
    png_bytes,
    uploaded,
    uploaded_from_disk,
)

MB = 1024 * 1024


def refusal(name: str, data: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        check_document(uploaded(name, data))
    return caught.value


def stored_bytes(document: CheckedDocument) -> bytes:
    assert document.content.tell() == 0
    data = document.content.read()
    document.content.seek(0)
    return data


def stored_image(document: CheckedDocument) -> Image.Image:
    return Image.open(io.BytesIO(stored_bytes(document)))


def open_file_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# Good files


def test_good_pdf_is_stored_unchanged_with_its_pages_counted():
    data = pdf_bytes(pages=3)
    document = check_document(uploaded("Blood count.pdf", data))
    assert (document.original_name, document.detected_type, document.pages) == (
        "Blood count.pdf",
        "pdf",
        3,
    )
    assert (document.content_type, document.extension) == ("application/pdf", "pdf")
    assert stored_bytes(document) == data
    assert document.size == len(data)
    assert document.sha256 == hashlib.sha256(data).hexdigest()


def test_pdf_with_a_link_to_a_web_page_is_accepted():
    assert check_document(uploaded("letter.pdf", pdf_bytes(web_link=True))).pages == 1


def test_photo_is_stored_upright_without_camera_details_location_or_comment():
    # Orientation 6: the phone was turned; the black top half must end up on the right.
    data = jpeg_bytes(640, 480, exif_gps=True, orientation=6)
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    document = check_document(uploaded("blood-count.JPG", data))
    assert (document.detected_type, document.content_type, document.extension) == (
        "jpeg",
        "image/jpeg",
        "jpg",
    )
    stored = stored_bytes(document)
    assert stored != data
    assert document.size == len(stored)
    assert document.sha256 == hashlib.sha256(stored).hexdigest()
    with stored_image(document) as image:
        assert image.format == "JPEG"
        assert len(image.getexif()) == 0
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert "comment" not in image.info and "exif" not in image.info
        assert image.size == (480, 640)
        assert sum(image.getpixel((470, 320))) < 60
        assert sum(image.getpixel((10, 320))) > 700
    assert b"Ada Example" not in stored and b"Example Phone" not in stored


def test_png_is_stored_without_its_text_chunks_or_exif():
    data = png_bytes()
    assert b"Ada Example" in data
    document = check_document(uploaded("scan.png", data))
    assert (document.detected_type, document.content_type, document.extension) == (
        "png",
        "image/png",
        "png",
    )
    with stored_image(document) as image:
        assert image.format == "PNG"
        assert image.text == {}
        assert len(image.getexif()) == 0
    assert b"tEXt" not in stored_bytes(document) and b"iTXt" not in stored_bytes(document)


def test_iphone_heic_photo_is_stored_as_a_jpeg_without_its_location():
    document = check_document(uploaded("IMG_0001.HEIC", heic_bytes(exif_gps=True)))
    assert (document.detected_type, document.content_type, document.extension) == (
        "heic",
        "image/jpeg",
        "jpg",
    )
    with stored_image(document) as image:
        assert image.format == "JPEG"
        assert image.size == (320, 240)
        assert len(image.getexif()) == 0


def test_heif_photo_with_the_general_mif1_brand_is_recognised():
    # puremagic takes these for MP4 videos; the explicit ftyp check knows better.
    data = heic_bytes()
    data = data[:8] + b"mif1" + data[12:]
    assert check_document(uploaded("photo.heif", data)).detected_type == "heic"


def test_photo_for_print_in_cmyk_becomes_an_ordinary_rgb_jpeg():
    with stored_image(check_document(uploaded("cmyk.jpg", jpeg_bytes(mode="CMYK")))) as image:
        assert image.mode == "RGB"


def test_see_through_parts_of_a_heic_photo_become_white_not_black():
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 48), (255, 0, 0, 0)).save(buffer, "HEIF")
    with stored_image(check_document(uploaded("sticker.heic", buffer.getvalue()))) as image:
        assert image.mode == "RGB"
        assert sum(image.getpixel((10, 10))) > 700


def test_colour_profile_of_a_photo_is_kept():
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, "JPEG", icc_profile=profile)
    with stored_image(check_document(uploaded("rash.jpg", buffer.getvalue()))) as image:
        assert image.info.get("icc_profile") == profile


def test_good_dicom_is_stored_unchanged():
    data = dicom_bytes()
    document = check_document(uploaded("CT0001.dcm", data))
    assert (document.detected_type, document.content_type, document.extension) == (
        "dicom",
        "application/dicom",
        "dcm",
    )
    assert document.pages is None
    assert stored_bytes(document) == data
    assert document.sha256 == hashlib.sha256(data).hexdigest()
    assert pydicom.dcmread(document.content).PatientName == "Example^Ada"


def test_dicom_that_is_also_a_tiff_is_accepted():
    data = dicom_bytes(preamble=b"II*\0" + bytes(124))
    assert check_document(uploaded("scan.dicom", data)).detected_type == "dicom"


def test_twenty_megabyte_pdf_is_checked_without_holding_it_in_memory(tmp_path):
    # Image data holds every byte sequence sooner or later; "/JS " inside it is no script.
    path = large_pdf(tmp_path / "ct-report.pdf", size_mb=20, hidden_token=b"/JS ")
    upload = uploaded_from_disk("ct-report.pdf", path)
    tracemalloc.start()
    try:
        document = check_document(upload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert document.pages == 1
    assert document.size == path.stat().st_size > 19 * MB
    assert peak < 10 * MB


# Refused: what the name or the size says


def test_empty_file_is_refused():
    error = refusal("scan.pdf", b"")
    assert error.code == "empty"
    assert error.message == "“scan.pdf” is empty. Please choose it again, or another copy of it."


def test_file_over_the_limit_is_refused_saying_the_limit(settings):
    settings.DOCUMENT_MAX_BYTES = 1 * MB
    error = refusal("photo.jpg", jpeg_bytes() + b"\0" * MB)
    assert error.code == "too_large"
    assert error.message.startswith("“photo.jpg” is larger than 1 MB. Please send a smaller")


@pytest.mark.parametrize(
    ("name", "data", "shown_as"),
    [
        ("report.docx", b"PK\x03\x04" + bytes(100), "report.docx"),
        ("report", pdf_bytes(), "report"),
        ("chart.svg", SVG_DRAWING, "chart.svg"),
        ("report.exe", WINDOWS_EXE, "report.exe"),
        ("report.pdf.exe", pdf_bytes(), "report.pdf.exe"),
        ("report.pdf.", pdf_bytes(), "report.pdf."),
        ("\u202egpj.exe", WINDOWS_EXE, "gpj.exe"),
        ("page.html", HTML_PAGE, "page.html"),
    ],
)
def test_file_of_a_type_we_do_not_accept_is_refused(name, data, shown_as):
    error = refusal(name, data)
    assert error.code == "type"
    assert error.message == (
        f"“{shown_as}” is not a type we can accept. Please send PDF, JPEG, PNG, HEIC or DICOM "
        "files."
    )


@pytest.mark.parametrize(
    ("name", "data", "label"),
    [
        ("report.pdf", WINDOWS_EXE, "a PDF"),
        ("photo.jpg", WINDOWS_EXE, "a JPEG photo"),
        ("report.pdf", HTML_PAGE, "a PDF"),
        ("photo.jpg", png_bytes(), "a JPEG photo"),
        ("scan.png", jpeg_bytes(), "a PNG image"),
        ("photo.heic", jpeg_bytes(), "a HEIC photo"),
        ("scan.dcm", pdf_bytes(), "a DICOM scan"),
        ("photo.jpg", SVG_DRAWING, "a JPEG photo"),
        ("report.pdf", b"\x7fELF" + bytes(200), "a PDF"),
        ("report.pdf", b"#!/bin/sh\nrm -rf ~\n", "a PDF"),
    ],
)
def test_file_that_is_not_what_its_name_says_is_refused(name, data, label):
    error = refusal(name, data)
    assert error.code == "mismatch"
    assert error.message.startswith(f"“{name}” does not look like {label}, although its name")


# Refused: PDFs


def test_password_protected_pdf_is_refused():
    error = refusal("scan.pdf", pdf_bytes(encrypted=True))
    assert error.code == "encrypted"
    assert error.message == (
        "“scan.pdf” is protected with a password. Please send a copy without a password, or a "
        "photo of each page."
    )


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 40,
        pdf_bytes(pages=2)[: len(pdf_bytes(pages=2)) // 2],
        b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n",
        pdf_from_objects(CATALOG, b"<< /Type /Pages /Kids [3 0 R 9 0 R] /Count 2 >>", PAGE),
        pdf_from_objects(CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"),
        pdf_from_objects(b"<< /Type /Catalog >>"),
        # A later revision cut short: pypdf alone would quietly read the earlier one.
        pdf_bytes() + b"4 0 obj\n<< /Title (Ada Example " + b"x" * 2000,
    ],
    ids=[
        "random-bytes",
        "cut-in-half",
        "random-bytes-with-eof",
        "missing-page",
        "loop",
        "no-pages",
        "update-cut-short",
    ],
)
def test_damaged_or_truncated_pdf_is_refused(data):
    error = refusal("CT.pdf", data)
    assert error.code == "damaged"
    assert error.message == (
        "“CT.pdf” seems to be damaged or incomplete. Please save it again and choose it again."
    )


ACTIVE = (
    "“plan.pdf” contains active content (such as scripts), which we do not accept for "
    "safety. Please print it to a new PDF or send photos of the pages."
)


@pytest.mark.parametrize(
    "data",
    [
        pdf_bytes(javascript=True),
        pdf_bytes(open_action_javascript=True),
        pdf_bytes(launch=True),
        pdf_from_objects(CATALOG, PAGES, PAGE, b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>"),
        pdf_from_objects(CATALOG, PAGES, PAGE, b"<< /Type /Action /S /Launch /F (calc.exe) >>"),
        pdf_from_objects(
            CATALOG[:-2] + b"/AcroForm << /Fields [] /XFA 4 0 R >> >>",
            PAGES,
            PAGE,
            b"<< /Length 0 >>\nstream\n\nendstream",
        ),
        pdf_from_objects(
            CATALOG, PAGES, PAGE[:-2] + b"/AA << /O << /S /SubmitForm /F (x) >> >> >>"
        ),
    ],
    ids=[
        "document-script",
        "open-action-script",
        "launch-link",
        "hex-escaped-names",
        "launch-nothing-points-to",
        "xfa-form",
        "page-opens-submit",
    ],
)
def test_pdf_with_active_content_is_refused(data):
    error = refusal("plan.pdf", data)
    assert error.code == "active_content"
    assert error.message == ACTIVE


@pytest.mark.parametrize(
    ("catalog", "extra"),
    [
        # A string that looks like the start of stream data hides what follows from the
        # byte scan; the document's structure still leads to the script.
        (CATALOG[:-2] + b"/OpenAction 5 0 R >>", b"<< /S /JavaScript /JS (app.alert(1)) >>"),
        (
            CATALOG[:-2] + b"/Outlines 5 0 R >>",
            b"<< /Type /Outlines /First 6 0 R /Count 1 >>",
        ),
    ],
    ids=["open-action", "bookmark"],
)
def test_script_hidden_from_the_byte_scan_is_found_in_the_document_structure(catalog, extra):
    bookmark = b"<< /Title (Results) /Parent 5 0 R /A << /S /Launch /F (calc.exe) >> >>"
    data = pdf_from_objects(catalog, PAGES, PAGE, b"<< /Title (stream\n) >>", extra, bookmark)
    assert refusal("plan.pdf", data).code == "active_content"


# The byte scan reads 1 MB at a time and holds back the last 64 bytes of each read.
@pytest.mark.parametrize("offset", [-68, -66, -65, -64, -63, -62, -3, -2, -1, 0, 1])
def test_script_name_across_two_chunks_of_the_byte_scan_is_found(offset):
    # Nothing points to object 4, so only the byte scan can see its script.
    base = pdf_from_objects(CATALOG, PAGES, PAGE, b"<< /JS (x) >>")
    padding = MB + offset - base.index(b"/JS") - 2
    data = pdf_from_objects(CATALOG, PAGES, PAGE, b"%" + b"x" * padding + b"\n<< /JS (x) >>")
    assert data.index(b"/JS") == MB + offset
    assert refusal("plan.pdf", data).code == "active_content"


def test_pdf_with_an_attached_file_is_refused():
    error = refusal("plan.pdf", pdf_bytes(embedded_file=True))
    assert error.code == "embedded_file"
    assert error.message.startswith("“plan.pdf” has other files attached inside it")


# Refused: pictures


def test_truncated_photo_is_refused():
    data = jpeg_bytes(800, 600)
    error = refusal("photo.jpg", data[: len(data) // 2])
    assert error.code == "damaged"
    assert error.message.startswith("“photo.jpg” seems to be damaged or incomplete.")


def test_picture_of_twenty_thousand_pixels_square_is_refused_before_decoding():
    data = big_png_bytes(20_000, 20_000)
    assert len(data) < MB
    error = refusal("bomb.png", data)
    assert error.code == "too_many_pixels"
    assert "more than 50,000,000 pixels" in error.message


def test_picture_below_pillows_bomb_limit_but_above_ours_is_refused(settings):
    settings.DOCUMENT_IMAGE_MAX_PIXELS = 10_000
    error = refusal("scan.png", png_bytes(320, 240))
    assert error.code == "too_many_pixels"
    assert error.message == (
        "“scan.png” is too large a picture for us to open safely (more than 10,000 pixels). "
        "Please send a smaller copy, for example a photo taken at a lower resolution."
    )


def test_pillows_own_bomb_limit_holds_even_if_ours_is_set_higher(settings):
    settings.DOCUMENT_IMAGE_MAX_PIXELS = 10**12
    error = refusal("bomb.png", big_png_bytes(10_000, 10_000))
    assert error.code == "too_many_pixels"


def test_refused_pictures_leave_nothing_in_the_uploads_folder(uploads_dir, monkeypatch):
    # conftest points FILE_UPLOAD_TEMP_DIR at this test's own tmp_path folder.
    files_before = open_file_count()
    data = jpeg_bytes(exif_gps=True)
    assert refusal("photo.jpg", data[:-200]).code == "damaged"
    assert refusal("bomb.png", big_png_bytes(20_000, 20_000)).code == "too_many_pixels"

    # A failure while the cleaned copy is being written, after its file was made.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    assert refusal("photo.jpg", data).code == "damaged"
    assert list(uploads_dir.iterdir()) == []
    assert open_file_count() == files_before


# Refused: DICOM


@pytest.mark.parametrize(
    "data",
    [
        bytes(128) + b"DICM" + b"not a scan " * 40,
        bytes(128) + b"DICM",
        dicom_bytes()[:-20],
        dicom_bytes()[:300],
    ],
    ids=["garbage-after-marker", "marker-only", "image-cut-short", "cut-in-header"],
)
# pydicom warns about what it cannot make sense of, then carries on.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dicom_that_does_not_parse_is_refused(data):
    error = refusal("CT0001.dcm", data)
    assert error.code == "damaged"
    assert error.message.startswith("“CT0001.dcm” seems to be damaged or incomplete.")


@pytest.mark.parametrize(
    "start",
    [b"MZ\x90\x00", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"#!/bin/sh\n", b"PK\x03\x04", b"%PDF-1.7"],
    ids=["windows", "linux", "macos", "script", "zip", "pdf"],
)
def test_dicom_whose_preamble_holds_something_else_is_refused(start):
    data = dicom_bytes(preamble=start + bytes(128 - len(start)))
    error = refusal("CT0001.dcm", data)
    assert error.code == "executable_preamble"
    assert error.message.startswith("“CT0001.dcm” carries something other than a scan")


# Names


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\x\\scan.pdf", "scan.pdf"),
        ("/home/ada/Blood count.pdf", "Blood count.pdf"),
        ("scan\x00\x07\n.pdf", "scan.pdf"),
        ("\u202egpj.exe", "gpj.exe"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("zero\u200bwidth\ufeff.pdf", "zerowidth.pdf"),
        ("Ame\u0301lie.pdf", "Am\u00e9lie.pdf"),
        ("  lots   of\u00a0 space .pdf", "lots of space.pdf"),
        (".hidden.pdf", "hidden.pdf"),
        (". .. report.pdf", "report.pdf"),
        ("..pdf", "document.pdf"),
        ("\u202e.pdf", "document.pdf"),
        ("", "document"),
        ("reports/", "document"),
        ("report.pdf.exe", "report.pdf.exe"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
        ("x" * 300, "x" * 120),
    ],
)
def test_file_names_are_made_safe_to_show(given, shown):
    assert sanitise_filename(given) == shown
    assert len(sanitise_filename(given)) <= 120


def test_document_keeps_the_name_made_safe():
    document = check_document(uploaded("C:\\Users\\Sam\\..\\Blood\u200b count.PDF", pdf_bytes()))
    assert document.original_name == "Blood count.PDF"


def test_refusal_is_logged_with_its_reason_but_not_the_name(caplog):
    caplog.set_level(logging.INFO, logger="inquiries.files")
    refusal("Ada Example leukemia plan.pdf", pdf_bytes(javascript=True))
    assert [record.getMessage() for record in caplog.records] == [
        "Document refused (active_content), a .pdf file"
    ]


# Files built to wear the checker out are refused quickly, in little memory


def annotated_pdf(pages: int, references: int) -> bytes:
    """Every page shares one /Annots array that names the same annotation many times."""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = b" ".join(b"%d 0 R" % (10 + n) for n in range(pages))
    objects[2] = b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages
    objects[4] = b"[" + b"5 0 R " * references + b"]"
    objects[5] = b"<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] >>"
    for n in range(pages):
        objects[10 + n] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Annots 4 0 R >>"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n")
    size = max(objects) + 1
    xref = out.tell()
    out.write(b"xref\n0 %d\n" % size)
    for number in range(size):
        out.write(
            b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
        )
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()


def test_a_pdf_whose_pages_share_a_huge_annotation_list_is_refused_quickly():
    started = time.monotonic()
    error = refusal("report.pdf", annotated_pdf(pages=200, references=99_999))
    assert error.code == "damaged"
    assert time.monotonic() - started < 10


def test_a_pdf_with_thousands_of_pages_is_refused():
    error = refusal("archive.pdf", annotated_pdf(pages=2_001, references=1))
    assert error.code == "too_many_pages"
    assert "more than 2,000 pages" in error.messages[0]


def test_a_dicom_file_of_millions_of_empty_items_is_refused_without_parsing_it():
    item = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    data = dicom_bytes() + b"\x40\x00\x75\x02SQ\x00\x00\xff\xff\xff\xff" + item * 500_000
    tracemalloc.start()
    try:
        error = refusal("scan.dcm", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.code == "too_complex"
    assert peak < 10 * MB
