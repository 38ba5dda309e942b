"""PDFs: rendered to pictures in the sandbox, then made into a new PDF of those pictures.

Nothing of the original survives but how its pages look: no script, action, link, form,
attachment, annotation, layer or hidden object can, whatever name or path it hides behind,
because the new file is built from pixels alone (as Dangerzone does). Filled-in form fields
and stamps are drawn, as a viewer shows them. The page count is kept, and a line under each
page says that this is a rebuilt copy.
"""

import io
import math
import zlib
from datetime import date

from . import images
from .sandbox import Refused

# The longest side a JPEG, hence a rebuilt page, can have.
MAX_SIDE = 65_500


def prepare() -> None:
    import codecs

    import pypdfium2  # noqa: F401  (loads the PDFium library before the filesystem goes)
    from PIL import Image

    # What attachments are sent back with, and what names what they are.
    from . import archives, types  # noqa: F401

    Image.init()
    codecs.lookup("utf-16-le")


def child(kind: str, data: bytes, options: dict, out) -> dict:
    """Renders every page at `dpi` (less for pages too large for `max_page_pixels`)."""
    import pypdfium2 as pdfium

    try:
        # No password: a file that only restricts printing or copying opens without one,
        # as in every viewer; one that asks for a password to open does not.
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        code = getattr(error, "err_code", None)
        raise Refused(
            "encrypted"
            if code in (pdfium.raw.FPDF_ERR_PASSWORD, pdfium.raw.FPDF_ERR_SECURITY)
            else "damaged"
        ) from None
    pages = len(document)
    if pages == 0:
        raise Refused("damaged")
    if pages > options["max_pages"]:
        raise Refused("too_many_pages")
    # Form fields show their values as a viewer draws them; PDFium here runs no scripts.
    document.init_forms()
    for index in range(pages):
        page = document[index]
        width, height = page.get_size()
        if not (width > 0 and height > 0):
            raise Refused("damaged")
        # A little under the limit, as the renderer rounds the page's size up.
        fit = math.sqrt(options["max_page_pixels"] / (width * height)) * 0.99
        scale = min(options["dpi"] / 72, fit)
        if max(width, height) * scale > MAX_SIDE:
            raise Refused("too_complex")  # a strip of a page, longer than any picture can be
        bitmap = page.render(scale=scale, rev_byteorder=True, may_draw_forms=True)
        picture = bitmap.to_pil().convert("RGB")
        header = {"page": index + 1, "pages": pages, "scale": scale}
        out.send(header | {"width": picture.width, "height": picture.height}, picture.tobytes())
        page.close()
    if options.get("attachments"):
        _send_attachments(document, options, out)
    return {"pages": pages}


def _send_attachments(document, options: dict, out) -> None:
    """Files attached to the PDF (a scan attached to a referral letter, say), sent back as
    they are, to be checked as documents of their own, in the frames a ZIP file's members
    travel in (archives.py)."""
    from .archives import send_parts
    from .types import HEAD_BYTES, detect, sanitise_filename

    total = 0
    for index, (name, data) in enumerate(_attachments(document, options)):
        frame = {"member": index, "name": sanitise_filename(name or "attachment")}
        if data is not None:
            total += len(data)
        if data is None or total > options["max_attachments_bytes"]:
            out.send(frame | {"refused": "too_large"})
            continue
        if not data:
            out.send(frame | {"left_out": "empty"})
            continue
        kind = detect(frame["name"], data[:HEAD_BYTES]).kind
        if kind in (None, "zip"):
            out.send(frame | {"refused": "attachment_type"})
            continue
        send_parts(out, frame | {"kind": kind, "raw": True}, data)


def _attachments(document, options: dict):
    """(name, bytes, or None if too large) of each attachment: those of the document's list
    of embedded files, then those attached to a page, at most `max_attachments`."""
    import ctypes

    import pypdfium2.raw as raw

    found = 0

    def read(attachment):
        size = ctypes.c_ulong(0)
        if not raw.FPDFAttachment_GetFile(attachment, None, 0, ctypes.byref(size)):
            return None, b""
        length = raw.FPDFAttachment_GetName(attachment, None, 0)
        name_buffer = (ctypes.c_ushort * max(1, length // 2))()
        raw.FPDFAttachment_GetName(attachment, name_buffer, length)
        name = bytes(name_buffer)[: max(0, length - 2)].decode("utf-16-le", "replace")
        if size.value > options["max_attachment_bytes"]:
            return name, None
        data = (ctypes.c_char * size.value)()
        raw.FPDFAttachment_GetFile(attachment, data, size, ctypes.byref(size))
        return name, bytes(data)

    for index in range(raw.FPDFDoc_GetAttachmentCount(document)):
        if found >= options["max_attachments"]:
            return
        attachment = raw.FPDFDoc_GetAttachment(document, index)
        if attachment:
            found += 1
            yield read(attachment)
    for number in range(len(document)):
        page = raw.FPDF_LoadPage(document, number)
        try:
            for index in range(raw.FPDFPage_GetAnnotCount(page)):
                annotation = raw.FPDFPage_GetAnnot(page, index)
                try:
                    if raw.FPDFAnnot_GetSubtype(annotation) != raw.FPDF_ANNOT_FILEATTACHMENT:
                        continue
                    attachment = raw.FPDFAnnot_GetFileAttachment(annotation)
                    if attachment:
                        if found >= options["max_attachments"]:
                            return
                        found += 1
                        yield read(attachment)
                finally:
                    raw.FPDFPage_CloseAnnot(annotation)
        finally:
            raw.FPDF_ClosePage(page)


class Assembler:
    """Builds the new PDF in the worker from the pages' pixels: each page a picture, kept
    without loss where that is about as small (typed pages, whose small print stays sharp),
    else as a JPEG (photos and scans); a page in shades of grey is stored in grey."""

    def __init__(
        self,
        *,
        max_page_pixels: int,
        max_bytes: int,
        quality: int = 85,
        made_on: date | None = None,
    ):
        self.max_page_pixels = max_page_pixels
        # The pages are kept in memory until the file is written: a copy that would grow past
        # this is refused rather than allowed to take the worker's memory.
        self.max_bytes = max_bytes
        self.size = 0
        self.quality = quality
        self.made_on = made_on or date.today()
        # (image dictionary, its encoded bytes, width and height in points) for each page.
        self.pages: list[tuple[dict, bytes, float, float]] = []
        self.preview: bytes | None = None

    def add(self, header: dict, payload: bytes) -> None:
        from PIL import Image

        width, height = int(header["width"]), int(header["height"])
        scale, number, total = float(header["scale"]), int(header["page"]), int(header["pages"])
        if not (0 < width * height <= self.max_page_pixels and 0 < scale <= 10):
            raise ValueError("a page out of bounds")
        if max(width, height) > MAX_SIDE:
            raise ValueError("a page out of bounds")
        if number != len(self.pages) + 1 or len(payload) != width * height * 3:
            raise ValueError("a page out of order or of the wrong size")
        picture = self._with_note(Image.frombytes("RGB", (width, height), payload), number, total)
        if number == 1:
            self.preview = images.preview(picture)
        image, data = self._encoded(picture)
        self.size += len(data)
        if self.size > self.max_bytes:
            raise Refused("too_complex")
        self.pages.append((image, data, picture.width / scale, picture.height / scale))

    def _encoded(self, picture) -> tuple[dict, bytes]:
        from PIL import ImageChops

        red, green, blue = picture.split()
        grey = ImageChops.difference(red, green).getbbox() is None and (
            ImageChops.difference(green, blue).getbbox() is None
        )
        if grey:
            picture = red
        image = {
            "/Width": picture.width,
            "/Height": picture.height,
            "/ColorSpace": "/DeviceGray" if grey else "/DeviceRGB",
            "/BitsPerComponent": 8,
        }
        jpeg = io.BytesIO()
        picture.save(jpeg, "JPEG", quality=self.quality)
        # Typed text compresses well without loss and blurs as a JPEG; a photo or a scan is
        # many times smaller as a JPEG. Whichever suits the page, sharp if it costs little;
        # a quick try on a strip of the page spares compressing a whole photo in vain.
        pixels = picture.tobytes()
        strip = pixels[len(pixels) * 7 // 16 : len(pixels) * 9 // 16]
        if len(zlib.compress(strip, 1)) * 8 <= 2 * jpeg.tell():
            lossless = zlib.compress(pixels, 6)
            if len(lossless) <= 1.5 * jpeg.tell():
                return image | {"/Filter": "/FlateDecode"}, lossless
        return image | {"/Filter": "/DCTDecode"}, jpeg.getvalue()

    def _with_note(self, page, number: int, total: int):
        from PIL import Image, ImageDraw, ImageFont

        # A line of small print, whatever the page's shape: about a fifth of an inch.
        band = max(12, min(60, round(min(page.width, page.height * 0.7) / 40)))
        framed = Image.new("RGB", (page.width, page.height + band), "white")
        framed.paste(page, (0, 0))
        draw = ImageDraw.Draw(framed)
        draw.line([(0, page.height), (page.width, page.height)], fill=(170, 170, 170))
        note = (
            f"Safe copy made by CancerFax on {self.made_on:%-d %B %Y}, page {number} of {total}: "
            "links, scripts, forms and attachments of the original were removed."
        )
        size = max(8, round(band * 0.55))
        font = ImageFont.load_default(size=size)
        while size > 6 and draw.textlength(note, font=font) > page.width - band:
            size -= 1
            font = ImageFont.load_default(size=size)
        position = (band // 2, page.height + band // 2)
        draw.text(position, note, fill=(90, 90, 90), font=font, anchor="lm")
        return framed

    def save(self, out) -> int:
        """Writes the PDF to the file `out`; returns its page count."""
        from pypdf import PdfWriter
        from pypdf.generic import (
            DecodedStreamObject,
            DictionaryObject,
            EncodedStreamObject,
            NameObject,
            NumberObject,
        )

        if not self.pages:
            raise ValueError("no pages")
        writer = PdfWriter()
        for image, data, width, height in self.pages:
            page = writer.add_blank_page(width, height)
            picture = EncodedStreamObject()
            picture.update(
                {
                    NameObject("/Type"): NameObject("/XObject"),
                    NameObject("/Subtype"): NameObject("/Image"),
                }
            )
            for key, value in image.items():
                value = NameObject(value) if isinstance(value, str) else NumberObject(value)
                picture[NameObject(key)] = value
            picture._data = data
            drawing = DecodedStreamObject()
            drawing.set_data(b"q %.2f 0 0 %.2f 0 0 cm /Page Do Q" % (width, height))
            page[NameObject("/Resources")] = DictionaryObject(
                {
                    NameObject("/XObject"): DictionaryObject(
                        {NameObject("/Page"): writer._add_object(picture)}
                    )
                }
            )
            page[NameObject("/Contents")] = writer._add_object(drawing)
        writer.write(out)
        return len(self.pages)
