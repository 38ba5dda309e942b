"""What reaches a coordinator is a copy rebuilt in the sandbox: a PDF of page pictures, a
photo written anew, a scan with only its standard elements. These tests run the real
sandbox on the files families send."""

import io
import logging

import pydicom
import pypdfium2 as pdfium
import pytest
from PIL import ExifTags, Image, ImageCms
from pypdf import PdfReader

from inquiries.documents.types import detect

from .conftest import rebuild_bytes, rebuilt_bytes, refusal_code
from .sample_files import (
    CATALOG,
    PAGE,
    PYDICOM_FILES,
    big_png_bytes,
    dicom_bytes,
    heic_bytes,
    jpeg_bytes,
    pdf_bytes,
    pdf_from_objects,
    png_bytes,
)

# The sandbox alone, no database: run once (`pytest -m sandbox`).
pytestmark = pytest.mark.sandbox

MB = 1024 * 1024


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def page_text(data: bytes, page: int = 0) -> str:
    return pdfium.PdfDocument(data)[page].get_textpage().get_text_range()


# PDFs


def test_a_pdf_becomes_a_pdf_of_its_page_pictures_with_as_many_pages():
    rebuilt = rebuild_bytes("pdf", pdf_bytes(pages=3))
    assert (rebuilt.content_type, rebuilt.extension, rebuilt.pages) == ("application/pdf", "pdf", 3)
    rebuilt.content.seek(0)
    reader = PdfReader(rebuilt.content)
    assert len(reader.pages) == 3
    for page in reader.pages:
        assert len(page.images) == 1
    rebuilt.content.close()


def test_a_typed_page_is_kept_sharp_and_a_photographed_one_as_a_jpeg():
    from PIL import Image

    photo = Image.effect_noise((400, 560), 60).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, "PDF", resolution=72)
    reader = PdfReader(io.BytesIO(rebuilt_bytes("pdf", buffer.getvalue())))
    scanned = reader.pages[0]["/Resources"]["/XObject"]["/Page"]
    assert scanned["/Filter"] == "/DCTDecode" and scanned["/ColorSpace"] == "/DeviceGray"
    typed = PdfReader(io.BytesIO(rebuilt_bytes("pdf", pdf_bytes())))
    page = typed.pages[0]["/Resources"]["/XObject"]["/Page"]
    assert page["/Filter"] == "/FlateDecode" and page["/ColorSpace"] == "/DeviceGray"


def test_the_words_of_a_page_are_still_there_to_read(settings):
    from inquiries.management.commands.load_demo import demo_pdf

    data = rebuilt_bytes("pdf", demo_pdf("Fictional pathology report: Ada Example"))
    page = pdfium.PdfDocument(data)[0]
    # The page is a picture: no text layer, but the words can be read on it.
    assert page.get_textpage().get_text_range() == ""
    width, height = page.get_size()
    assert round(width) == 612 and 800 < round(height) < 815  # US Letter, and a line for the note
    top = page.render(scale=2).to_pil().convert("L").crop((100, 100, 900, 260))
    assert top.getextrema()[0] < 80, "the title is drawn in dark ink"


def test_each_page_says_it_is_a_rebuilt_copy():
    data = rebuilt_bytes("pdf", pdf_bytes(pages=2))
    document = pdfium.PdfDocument(data)
    note_band = document[1].render(scale=150 / 72).to_pil().convert("L")
    band = note_band.crop((0, note_band.height - 30, note_band.width, note_band.height))
    assert band.getextrema()[0] < 160, "a grey line of text under the page"
    blank = note_band.crop((0, 0, note_band.width, note_band.height - 40))
    assert blank.getextrema() == (255, 255)


def test_a_pdf_that_only_restricts_printing_opens_without_a_password():
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("", "the-owner-password", algorithm="RC4-128", permissions_flag=0)
    buffer = io.BytesIO()
    writer.write(buffer)
    assert rebuild_bytes("pdf", buffer.getvalue()).pages == 1


def test_bytes_after_the_end_of_a_pdf_are_not_damage():
    assert rebuild_bytes("pdf", pdf_bytes() + b"\0" * 4096).pages == 1


def test_a_pdf_that_asks_for_a_password_is_refused():
    assert refusal_code("pdf", pdf_bytes(encrypted=True)) == "encrypted"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 40,
        pdf_bytes(pages=2)[: len(pdf_bytes(pages=2)) // 2],
        b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\nstartxref\n0\n%%EOF\n",
        pdf_from_objects(CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"),
        pdf_from_objects(b"<< /Type /Catalog >>"),
    ],
    ids=["random-bytes", "cut-in-half", "random-bytes-with-trailer", "loop", "no-pages"],
)
def test_a_damaged_or_truncated_pdf_is_refused(data):
    assert refusal_code("pdf", data) == "damaged"


def test_a_pdf_over_the_page_limit_is_refused(settings):
    settings.DOCUMENT_PDF_MAX_PAGES = 5
    assert refusal_code("pdf", pdf_bytes(pages=6)) == "too_many_pages"
    assert rebuild_bytes("pdf", pdf_bytes(pages=5)).pages == 5


def test_a_huge_page_is_drawn_at_a_lower_resolution_within_the_pixel_limit(settings):
    settings.DOCUMENT_PDF_MAX_PAGE_PIXELS = 2_000_000
    huge = pdf_from_objects(
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        PAGE.replace(b"595 842", b"14400 14400"),
    )
    data = rebuilt_bytes("pdf", huge)
    image = PdfReader(io.BytesIO(data)).pages[0].images[0].image
    assert image.width * image.height <= 2_100_000
    assert image.width > 1000


# Photos and images


def test_a_photo_is_written_anew_upright_without_camera_details_location_or_comment():
    # Orientation 6: the phone was turned; the black top half must end up on the right.
    data = jpeg_bytes(640, 480, exif_gps=True, orientation=6)
    with picture(data) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    rebuilt = rebuild_bytes("jpeg", data)
    assert (rebuilt.content_type, rebuilt.extension) == ("image/jpeg", "jpg")
    rebuilt.content.seek(0)
    stored = rebuilt.content.read()
    with picture(stored) as image:
        assert image.format == "JPEG"
        assert len(image.getexif()) == 0
        assert "comment" not in image.info and "exif" not in image.info
        assert image.size == (480, 640)
        assert sum(image.getpixel((470, 320))) < 60
        assert sum(image.getpixel((10, 320))) > 700
    assert b"Ada Example" not in stored and b"Example Phone" not in stored


def test_a_png_is_written_anew_without_its_text_chunks_or_exif():
    data = png_bytes()
    assert b"Ada Example" in data
    stored = rebuilt_bytes("png", data)
    with picture(stored) as image:
        assert image.format == "PNG"
        assert image.text == {}
        assert len(image.getexif()) == 0
    assert b"tEXt" not in stored and b"iTXt" not in stored and b"eXIf" not in stored


def test_an_iphone_heic_photo_becomes_a_jpeg_without_its_location():
    rebuilt = rebuild_bytes("heic", heic_bytes(exif_gps=True))
    assert (rebuilt.content_type, rebuilt.extension) == ("image/jpeg", "jpg")
    rebuilt.content.seek(0)
    with picture(rebuilt.content.read()) as image:
        assert image.format == "JPEG"
        assert image.size == (320, 240)
        assert len(image.getexif()) == 0


def test_a_photo_for_print_in_cmyk_becomes_an_ordinary_rgb_jpeg():
    with picture(rebuilt_bytes("jpeg", jpeg_bytes(mode="CMYK"))) as image:
        assert image.mode == "RGB"


def test_see_through_parts_of_a_heic_photo_become_white_not_black():
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 48), (255, 0, 0, 0)).save(buffer, "HEIF")
    with picture(rebuilt_bytes("heic", buffer.getvalue())) as image:
        assert image.mode == "RGB"
        assert sum(image.getpixel((10, 10))) > 700


def test_a_colour_profile_is_applied_then_dropped():
    # The copy's colours are in sRGB, converted with the photo's own profile, and the profile
    # itself, which viewers would parse, travels no further.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, "JPEG", icc_profile=srgb, quality=95)
    with picture(rebuilt_bytes("jpeg", buffer.getvalue())) as image:
        assert "icc_profile" not in image.info
        red, green, blue = image.getpixel((16, 16))
        assert red > 150 and green < 80 and blue < 80


def test_only_the_first_picture_of_a_multi_picture_jpeg_is_kept():
    first, second = Image.new("RGB", (64, 48), "black"), Image.new("RGB", (64, 48), "white")
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    stored = rebuilt_bytes("jpeg", buffer.getvalue())
    with picture(stored) as image:
        assert getattr(image, "n_frames", 1) == 1
        assert sum(image.getpixel((10, 10))) < 60
    assert stored.count(b"\xff\xd8") == 1


def test_a_truncated_photo_is_refused():
    data = jpeg_bytes(800, 600)
    assert refusal_code("jpeg", data[: len(data) // 2]) == "damaged"


def test_a_picture_of_twenty_thousand_pixels_square_is_refused_before_decoding():
    data = big_png_bytes(20_000, 20_000)
    assert len(data) < MB
    assert refusal_code("png", data) == "too_many_pixels"


def test_a_picture_above_our_pixel_limit_is_refused(settings):
    settings.DOCUMENT_IMAGE_MAX_PIXELS = 10_000
    assert refusal_code("png", png_bytes(320, 240)) == "too_many_pixels"


# DICOM


def test_a_scan_is_rewritten_with_its_standard_elements_and_an_empty_preamble():
    data = dicom_bytes(preamble=b"II*\0" + bytes(124))
    rebuilt = rebuild_bytes("dicom", data)
    assert (rebuilt.content_type, rebuilt.extension) == ("application/dicom", "dcm")
    rebuilt.content.seek(0)
    stored = rebuilt.content.read()
    assert stored[:128] == bytes(128) and stored[128:132] == b"DICM"
    dataset = pydicom.dcmread(io.BytesIO(stored))
    assert dataset.PatientName == "Example^Ada"
    assert dataset.PixelData == bytes(range(64))
    assert dataset.Rows == dataset.Columns == 8


@pytest.mark.parametrize(
    "start",
    [b"MZ\x90\x00", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"#!/bin/sh\n", b"PK\x03\x04", b"%PDF-1.7"],
    ids=["windows", "linux", "macos", "script", "zip", "pdf"],
)
def test_a_scan_whose_preamble_holds_something_else_is_refused(start):
    data = dicom_bytes(preamble=start + bytes(128 - len(start)))
    assert refusal_code("dicom", data) == "executable_preamble"


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
def test_a_scan_that_does_not_parse_is_refused(data):
    assert refusal_code("dicom", data) == "damaged"


# What the worker logs


def test_a_refusal_is_logged_with_its_reason_but_never_the_file_or_its_name(caplog):
    caplog.set_level(logging.INFO)
    refusal_code("pdf", pdf_bytes(encrypted=True) + b"Ada Example")
    text = " ".join(record.getMessage() for record in caplog.records)
    assert "Ada Example" not in text


def test_nothing_hides_in_the_colour_of_see_through_pixels():
    hidden = Image.new("RGBA", (16, 16), (0x41, 0x44, 0x41, 0))  # "ADA", invisible
    hidden.putpixel((0, 0), (255, 0, 0, 255))
    buffer = io.BytesIO()
    hidden.save(buffer, "PNG")
    with picture(rebuilt_bytes("png", buffer.getvalue())) as image:
        assert image.getpixel((5, 5)) == (0, 0, 0, 0)
        assert image.getpixel((0, 0)) == (255, 0, 0, 255)


def test_a_png_with_megabytes_of_editing_history_is_accepted_without_it():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(
        "XML:com.adobe.xmp", "<x:xmpmeta>" + "history " * 400_000 + "</x:xmpmeta>", zip=True
    )
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buffer, "PNG", pnginfo=info)
    stored = rebuilt_bytes("png", buffer.getvalue())
    assert b"xmpmeta" not in stored and b"iTXt" not in stored


def test_a_reason_no_longer_known_still_reads_as_a_sentence():
    from inquiries.documents.messages import refusal

    assert refusal("no-such-reason", "scan.pdf").startswith("“scan.pdf” seems to be damaged")


# Real scans as scanners and archives write them, from pydicom's own test files


def same_image(copy, original) -> bool:
    """Whether the copy holds the original's image: the same bytes, each frame cut after its
    end marker at most (there is no NumPy here to decode them)."""
    from pydicom.encaps import generate_frames

    frames = int(original.get("NumberOfFrames") or 1)
    if not original.file_meta.TransferSyntaxUID.is_compressed:
        return original.PixelData.startswith(copy.PixelData) and len(copy.PixelData) > 0
    kept = list(generate_frames(copy.PixelData, number_of_frames=frames))
    sent = list(generate_frames(original.PixelData, number_of_frames=frames))

    def image_of(frame: bytes) -> bytes:
        end = frame.rfind(b"\xff\xd9")  # JPEG and JPEG 2000 end there; RLE has no marker
        return frame[: end + 2] if frame.startswith((b"\xff\xd8", b"\xff\x4f")) else frame

    return len(kept) == len(sent) == frames and all(
        image_of(whole).startswith(image_of(part)) and len(part) > len(whole) - 16
        for part, whole in zip(kept, sent, strict=True)
    )


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000.dcm",  # JPEG 2000
        "MR_small_RLE.dcm",  # RLE
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
        "JPEG-lossy.dcm",  # JPEG
        "SC_rgb_rle_2frame.dcm",  # RLE, two frames
    ],
)
def test_a_real_compressed_scan_with_padding_and_a_signature_after_its_image_is_accepted(name):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    original = pydicom.dcmread(PYDICOM_FILES / name)
    dataset = pydicom.dcmread(PYDICOM_FILES / name)
    signature = Dataset()
    signature.MACIDNumber = 1
    signature.DigitalSignatureUID = "1.2.3.4"
    signature.Signature = b"\x01" * 64
    dataset.DigitalSignaturesSequence = Sequence([signature])
    dataset.add_new(0xFFFCFFFC, "OB", bytes(512))  # trailing padding, as archives add
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    copy = pydicom.dcmread(io.BytesIO(rebuilt_bytes("dicom", out.getvalue())))
    assert "DigitalSignaturesSequence" not in copy and 0xFFFCFFFC not in copy
    assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert same_image(copy, original)


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("liver_1frame.dcm", "a segmentation"),
        ("test-SR.dcm", "a structured report, sequences nested many levels deep"),
        ("image_dfl.dcm", "the deflated transfer syntax"),
        ("MR_small_bigendian.dcm", "big-endian"),
        ("ExplVR_BigEndNoMeta.dcm", "big-endian with no preamble nor file meta group"),
        ("rtstruct.dcm", "implicit VR with no preamble nor file meta group"),
        ("MR_small_padded.dcm", "trailing padding after its image"),
    ],
)
def test_a_real_scan_as_written_by_scanners_and_archives_is_accepted(name, what):
    original = pydicom.dcmread(PYDICOM_FILES / name, force=True)
    copy = pydicom.dcmread(io.BytesIO(rebuilt_bytes("dicom", (PYDICOM_FILES / name).read_bytes())))
    assert copy.preamble == bytes(128)
    assert copy.SOPInstanceUID == original.SOPInstanceUID
    assert 0xFFFCFFFC not in copy
    if "PixelData" in original:
        assert same_image(copy, original)
    # The sequences before the image are kept, item by item.
    for element in original:
        if element.VR == "SQ" and not element.tag.is_private:
            assert len(copy[element.tag].value) == len(element.value)


def test_a_real_file_that_is_no_scan_at_all_is_still_refused():
    # pydicom's saved JSON of a data set, and its ICC profile, renamed as scans.
    for name in ("test1.json", "crayons.icc"):
        data = (PYDICOM_FILES / name).read_bytes()
        assert detect("scan.dcm", data[:4096]).kind is None


def test_a_fax_of_unequal_resolution_keeps_the_shape_of_its_paper():
    # A fax machine's "normal" resolution: 204 dots an inch across, 98 down; a US Letter page
    # of 8.5 by 11 inches is 1,728 by 1,078 dots.
    from .sample_files import tiff_bytes

    fax = tiff_bytes(pages=2, width=1728, height=1078, dpi=(204, 98))
    rebuilt = rebuild_bytes("tiff", fax)
    with rebuilt.content:
        rebuilt.content.seek(0)
        pages = PdfReader(rebuilt.content).pages
        sizes = [(float(p.mediabox.width) / 72, float(p.mediabox.height) / 72) for p in pages]
    assert rebuilt.pages == len(sizes) == 2
    for width, height in sizes:
        assert width == pytest.approx(8.47, abs=0.05)
        # The page, and the line under it that says it is a copy.
        assert 11.0 <= height <= 11.4
