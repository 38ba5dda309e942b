"""Builds the files that families send, good and bad, for upload tests.

Everything is made here, in memory or in a test's temporary folder, and every person in
them is fictional ("Test Patient", "Ada Example").
"""

import io
import random
import zlib
from pathlib import Path

import pydicom
import pydicom.data
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from PIL import ExifTags, Image, PngImagePlugin
from pillow_heif import register_heif_opener
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pypdf import PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    TextStringObject,
)

register_heif_opener()

MB = 1024 * 1024
# The real scans pydicom ships for its own tests, a scan disc's folder among them.
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"

# What a Windows program, a web page and an SVG drawing start with.
WINDOWS_EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\0" * 400
HTML_PAGE = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
SVG_DRAWING = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def uploaded(name: str, data: bytes, content_type: str = "application/octet-stream"):
    """The file as a form receives it: in memory, the way Django keeps small uploads."""
    return SimpleUploadedFile(name, data, content_type=content_type)


def uploaded_from_disk(name: str, path: Path) -> TemporaryUploadedFile:
    """The file as a form receives it when it is large: written to the uploads folder."""
    upload = TemporaryUploadedFile(name, "application/octet-stream", path.stat().st_size, None)
    with path.open("rb") as source:
        while chunk := source.read(MB):
            upload.write(chunk)
    upload.seek(0)
    return upload


# PDF


def pdf_bytes(
    pages: int = 1,
    javascript: bool = False,
    open_action_javascript: bool = False,
    launch: bool = False,
    encrypted: bool = False,
    embedded_file: bool = False,
    web_link: bool = False,
) -> bytes:
    """A PDF of blank A4 pages, optionally with one kind of active content or a password.

    javascript: a document-level script (the /Names /JavaScript tree) that runs on opening.
    open_action_javascript: a script in the catalog's /OpenAction.
    launch: a link on the first page whose action starts a program (/Launch).
    embedded_file: a text file attached to the document (/Names /EmbeddedFiles).
    web_link: a link to a web page on the first page (/URI), which is harmless.
    encrypted: opens only with the password "secret".
    """
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": "Blood count for Test Patient"})
    if javascript:
        writer.add_open_action(JavaScript("app.alert('Hello Ada Example');"))
    if open_action_javascript:
        action = DictionaryObject(
            {
                NameObject("/S"): NameObject("/JavaScript"),
                NameObject("/JS"): TextStringObject("app.alert('Hello');"),
            }
        )
        writer.root_object[NameObject("/OpenAction")] = writer._add_object(action)
    if launch:
        _add_link(writer, {"/S": NameObject("/Launch"), "/F": TextStringObject("calc.exe")})
    if web_link:
        _add_link(
            writer, {"/S": NameObject("/URI"), "/URI": TextStringObject("https://example.org")}
        )
    if embedded_file:
        writer.add_attachment("notes.txt", b"Notes about Test Patient")
    if encrypted:
        # pypdf without the cryptography package can only write RC4.
        writer.encrypt("secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _add_link(writer: PdfWriter, action: dict) -> None:
    """A link over part of the first page that does `action` when clicked."""
    link = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject([FloatObject(n) for n in (50, 50, 200, 100)]),
            NameObject("/A"): DictionaryObject(
                {NameObject("/Type"): NameObject("/Action")}
                | {NameObject(key): value for key, value in action.items()}
            ),
        }
    )
    writer.pages[0][NameObject("/Annots")] = ArrayObject([writer._add_object(link)])


# The three objects of a one-page PDF, for PDFs written by hand.
CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def pdf_from_objects(*objects: bytes) -> bytes:
    """A PDF written by hand from its objects, numbered from 1 (object 1 is the catalog).

    For what pypdf's writer would never produce: hex-escaped names, broken page trees,
    objects that nothing points to.
    """
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    out += _xref_and_trailer(offsets, len(out))
    return bytes(out)


def _xref_and_trailer(offsets: list[int], xref_at: int) -> bytes:
    count = len(offsets) + 1
    rows = b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    xref = b"xref\n0 %d\n0000000000 65535 f \n%s" % (count, rows)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref_at)
    return xref + trailer


def large_pdf(
    path: Path, size_mb: int = 20, hidden_token: bytes = b"", seed: int = 20260416
) -> Path:
    """Writes a one-page PDF of just under `size_mb` MB to `path`, a megabyte at a time.

    The bulk is a stream of random bytes, like the compressed image of a scanned page.
    `hidden_token` (e.g. b"/JS ") is written inside that stream: binary image data can
    hold any bytes, and a check must not mistake them for a script. Another `seed` makes
    another file of the same size.
    """
    rng = random.Random(seed)  # noqa: S311 - the same test file every run, not a secret
    length = size_mb * MB - 2048  # what the objects around the stream take
    offsets = []
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        page = PAGE[:-2] + b"/Resources << /XObject << /Scan 4 0 R >> >> >>"
        for number, body in enumerate([CATALOG, PAGES, page], start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
        offsets.append(out.tell())
        out.write(
            b"4 0 obj\n<< /Type /XObject /Subtype /Image /Width 1 /Height 1 "
            b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Length %d >>\nstream\n" % length
        )
        written = 0
        while written < length:
            chunk = rng.randbytes(min(MB, length - written))
            if written == 0 and hidden_token:
                chunk = hidden_token + chunk[len(hidden_token) :]
            out.write(chunk)
            written += len(chunk)
        out.write(b"\nendstream\nendobj\n")
        out.write(_xref_and_trailer(offsets, out.tell()))
    return path


# Images


def _photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture with a black top half, so that a rotation can be seen."""
    image = Image.new("RGB", (width, height), "white")
    image.paste("black", (0, 0, width, height // 2))
    return image.convert(mode)


def _exif(gps: bool, orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Example Phone"
    exif[ExifTags.Base.Artist] = "Ada Example"
    if orientation != 1:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (51.0, 30.0, 26.0),
            ExifTags.GPS.GPSLongitudeRef: "W",
            ExifTags.GPS.GPSLongitude: (0.0, 7.0, 39.0),
        }
    return exif


def jpeg_bytes(
    width: int = 640,
    height: int = 480,
    exif_gps: bool = False,
    orientation: int = 1,
    mode: str = "RGB",
) -> bytes:
    """A JPEG photo with camera EXIF, optionally the GPS location where it was taken and an
    EXIF orientation (6: the camera was turned, the picture must be rotated to be upright),
    and a comment naming the patient."""
    buffer = io.BytesIO()
    _photo(width, height, mode).save(
        buffer,
        "JPEG",
        exif=_exif(exif_gps, orientation),
        comment=b"Test Patient",
    )
    return buffer.getvalue()


def png_bytes(width: int = 320, height: int = 240, mode: str = "RGB", text: bool = True) -> bytes:
    """A PNG image, by default with text chunks naming the patient and an eXIf chunk."""
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Author", "Ada Example")
        info.add_itxt("Description", "Scan of Test Patient", zip=True)
    buffer = io.BytesIO()
    _photo(width, height, mode).save(buffer, "PNG", pnginfo=info, exif=_exif(gps=True))
    return buffer.getvalue()


def big_png_bytes(width: int, height: int) -> bytes:
    """A PNG of one colour that says it is width × height pixels: a few kilobytes on disk
    whatever its size, the shape of a decompression bomb. Built in strips, so that making
    it never needs the whole picture in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    # One bit a pixel, every row "filter 0" then zeros: the same row again and again.
    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = bytearray()
    rows_at_once = max(1, 4 * MB // len(row))
    for start in range(0, height, rows_at_once):
        data += compressor.compress(row * min(rows_at_once, height - start))
    data += compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", bytes(data))
        + chunk(b"IEND", b"")
    )


def heic_bytes(width: int = 320, height: int = 240, exif_gps: bool = True) -> bytes:
    """An iPhone-style HEIC photo, by default with the GPS location in its EXIF."""
    buffer = io.BytesIO()
    _photo(width, height).save(buffer, "HEIF", quality=80, exif=_exif(exif_gps).tobytes())
    return buffer.getvalue()


# DICOM


def dicom_bytes(preamble: bytes = b"\0" * 128) -> bytes:
    """A minimal valid DICOM file (a tiny secondary-capture image) for patient
    "Example^Ada", with the given 128-byte preamble."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.preamble = preamble
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = "Example^Ada"
    dataset.PatientID = "TEST-0001"
    dataset.Modality = "OT"
    dataset.Rows = dataset.Columns = 8
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(range(64))
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def stream(body: bytes, dictionary: bytes = b"", compress: bool = False) -> bytes:
    """A stream object's body, optionally Flate-compressed."""
    if compress:
        body = zlib.compress(body)
        dictionary += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(body), dictionary, body)


def with_update(pdf: bytes, objects: dict[int, bytes], root: int = 1) -> bytes:
    """`pdf` with an incremental update appended that adds or replaces `objects`, as an
    editor saving a change would: the original bytes stay as they were."""
    previous = int(pdf[pdf.rindex(b"startxref") + 9 :].split()[0])
    out = bytearray(pdf)
    offsets = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n"
    for number, offset in sorted(offsets.items()):
        out += b"%d 1\n%010d 00000 n \n" % (number, offset)
    size = max([*objects, int(pdf.split(b"/Size ")[-1].split()[0]) - 1]) + 1
    out += b"trailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        previous,
        xref_at,
    )
    return bytes(out)


def zip_bytes(name: str = "payload.exe", content: bytes = WINDOWS_EXE) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def progressive_jpeg_with_scans(scans: int, size: int = 2048) -> bytes:
    """A small progressive JPEG whose last scan is repeated `scans` times: decoders warn
    about the bogus progression and decode every scan anyway, each over the whole picture,
    the shape of a CPU bomb."""
    image = Image.new("RGB", (size, size), (128, 128, 128))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    scan = data[last_scan:-2]  # up to the end-of-image marker
    return data[:-2] + scan * scans + b"\xff\xd9"


def dicom_dataset(**elements) -> Dataset:
    """The dataset of dicom_bytes(), to change before writing it with dicom_from()."""
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    return dataset


def dicom_from(dataset: Dataset, preamble: bytes = bytes(128)) -> bytes:
    dataset.preamble = preamble
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def billion_laughs() -> bytes:
    # Ten arrays, each naming the next one ten times: 10^10 references from 10 objects.
    objects = [CATALOG, PAGES, PAGE[:-2] + b"/Annots 4 0 R >>"]
    for level in range(10):
        objects.append(b"[" + b"%d 0 R " % (5 + level) * 10 + b"]")
    objects.append(b"<< /Type /Annot /Subtype /Square /Rect [0 0 1 1] >>")
    return pdf_from_objects(*objects)


def gigabyte_content_stream() -> bytes:
    compressor, parts = zlib.compressobj(9), []
    zeros = b"0 0 m " * (MB // 6)
    for _ in range(1024):
        parts.append(compressor.compress(zeros))
    body = b"".join(parts) + compressor.flush()
    page = PAGE[:-2] + b"/Contents 4 0 R >>"
    return pdf_from_objects(
        CATALOG,
        PAGES,
        page,
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream",
    )


def millions_of_cross_references() -> bytes:
    head = b"%PDF-1.7\n"
    body = head + b"1 0 obj\n" + CATALOG + b"\nendobj\n2 0 obj\n" + PAGES + b"\nendobj\n3 0 obj\n"
    body += PAGE + b"\nendobj\n"
    rows = zlib.compress(bytes(7) * 3)
    xref_at = len(body)
    xref = (
        b"4 0 obj\n<< /Type /XRef /Size 50000000 /W [1 4 2] /Root 1 0 R /Length %d "
        b"/Filter /FlateDecode >>\nstream\n" % len(rows) + rows + b"\nendstream\nendobj\n"
    )
    return body + xref + b"startxref\n%d\n%%%%EOF\n" % xref_at


def deflated_dicom_bomb(megabytes: int = 1024) -> bytes:
    """A scan in the deflated transfer syntax that inflates to `megabytes` more than it is."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = dicom_dataset()
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = dicom_from(dataset)
    # The deflated body starts after the file meta group, whose length is its first value.
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    # One private element of that many zero bytes, after the dataset's own elements.
    length = megabytes * MB
    header = b"\x11\x00\x10\x10OB\x00\x00" + length.to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    inflated_start = zlib.decompress(data[meta_end:], -15)
    body = bytearray(compressor.compress(inflated_start + header))
    chunk = bytes(16 * MB)
    for _ in range(megabytes // 16):
        body += compressor.compress(chunk)
    body += compressor.flush()
    return data[:meta_end] + bytes(body)


def ten_bombs() -> list[tuple[str, bytes]]:
    """Pixel and decompression bombs, a few kilobytes to a few megabytes each, each to be
    refused: what a hostile visitor would send the workers to chew on."""
    return [
        ("twenty-thousand-square.png", big_png_bytes(20_000, 20_000)),
        ("forty-thousand-square.png", big_png_bytes(40_000, 40_000)),
        ("twenty-thousand-square-again.png", big_png_bytes(20_000, 20_000)),
        ("thousands-of-scans.jpg", progressive_jpeg_with_scans(6000)),
        ("thousands-of-scans-again.jpg", progressive_jpeg_with_scans(6000, size=2200)),
        ("thousands-of-scans-wide.jpg", progressive_jpeg_with_scans(6000, size=2400)),
        ("inflates-to-a-gigabyte.dcm", deflated_dicom_bomb()),
        ("inflates-to-two-gigabytes.dcm", deflated_dicom_bomb(2048)),
        ("inflates-to-a-gigabyte-again.dcm", deflated_dicom_bomb()),
        ("forty-thousand-square-again.png", big_png_bytes(40_000, 40_000)),
    ]


def dicomdir_bytes() -> bytes:
    """The index of pydicom's copy of a scan disc."""
    return (PYDICOM_FILES / "dicomdirtests" / "DICOMDIR").read_bytes()


def tiff_bytes(
    pages: int = 2, width: int = 850, height: int = 1100, dpi: tuple[int, int] = (100, 100)
) -> bytes:
    """A fax as a scanner writes it: black and white pages, CCITT group 4, 100 dots an inch
    (or a fax machine's 204 across by 98 down)."""
    frames = []
    for page in range(pages):
        image = Image.new("1", (width, height), 1)
        for row in range(100, height - 100, 40):
            image.paste(0, (80, row + page * 3, width - 80 - page * 20, row + 8))
        frames.append(image)
    out = io.BytesIO()
    frames[0].save(
        out, "TIFF", compression="group4", dpi=dpi, save_all=True, append_images=frames[1:]
    )
    return out.getvalue()
