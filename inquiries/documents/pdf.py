"""PDFs: rendered to pictures in the sandbox, then made into a new PDF of those pictures.

Nothing of the original survives but how its pages look: no script, action, link, form,
attachment, annotation, layer or hidden object can, whatever name or path it hides behind,
because the new file is built from pixels alone (as Dangerzone does). Filled-in form fields
and stamps are drawn, as a viewer shows them. The page count is kept, and a line under each
page says that this is a rebuilt copy.
"""

import io
import math
from datetime import date

from .sandbox import Refused

# A file cut short loses its trailer; bytes after the end (zero padding, a scanner's
# trailer) are harmless and ignored by every reader.
TRAILER_KEYWORDS = (b"startxref", b"%%EOF")


def prepare() -> None:
    import pypdfium2  # noqa: F401  (loads the PDFium library before the filesystem goes)
    from PIL import Image

    Image.init()


def child(kind: str, data: bytes, options: dict, out) -> dict:
    """Renders every page at `dpi` (less for pages too large for `max_page_pixels`)."""
    import pypdfium2 as pdfium

    if data.rfind(TRAILER_KEYWORDS[0]) == -1 or data.rfind(TRAILER_KEYWORDS[1]) < data.rfind(
        TRAILER_KEYWORDS[0]
    ):
        raise Refused("damaged")
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
        raise Refused("too_many_pages", limit=options["max_pages"])
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
        bitmap = page.render(scale=scale, rev_byteorder=True, may_draw_forms=True)
        picture = bitmap.to_pil().convert("RGB")
        header = {"page": index + 1, "pages": pages, "scale": scale}
        out.send(header | {"width": picture.width, "height": picture.height}, picture.tobytes())
        page.close()
    return {"pages": pages}


class Assembler:
    """Builds the new PDF in the worker from the pages' pixels, one JPEG a page."""

    def __init__(self, *, max_page_pixels: int, quality: int = 85, made_on: date | None = None):
        self.max_page_pixels = max_page_pixels
        self.quality = quality
        self.made_on = made_on or date.today()
        self.pages: list[tuple[bytes, float, float]] = []

    def add(self, header: dict, payload: bytes) -> None:
        from PIL import Image

        width, height = int(header["width"]), int(header["height"])
        scale, number, total = float(header["scale"]), int(header["page"]), int(header["pages"])
        if not (0 < width * height <= self.max_page_pixels and 0 < scale <= 10):
            raise ValueError("a page out of bounds")
        if number != len(self.pages) + 1 or len(payload) != width * height * 3:
            raise ValueError("a page out of order or of the wrong size")
        picture = self._with_note(Image.frombytes("RGB", (width, height), payload), number, total)
        jpeg = io.BytesIO()
        picture.save(jpeg, "JPEG", quality=self.quality, optimize=True)
        self.pages.append((jpeg.getvalue(), picture.width / scale, picture.height / scale))

    def _with_note(self, page, number: int, total: int):
        from PIL import Image, ImageDraw, ImageFont

        band = max(12, round(page.width / 40))
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
        import pypdfium2 as pdfium

        if not self.pages:
            raise ValueError("no pages")
        document = pdfium.PdfDocument.new()
        for jpeg, width, height in self.pages:
            page = document.new_page(width, height)
            picture = pdfium.PdfImage.new(document)
            picture.load_jpeg(io.BytesIO(jpeg), inline=True)
            picture.set_matrix(pdfium.PdfMatrix().scale(width, height))
            page.insert_obj(picture)
            page.gen_content()
            page.close()
        document.save(out)
        document.close()
        return len(self.pages)
