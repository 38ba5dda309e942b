"""Photos and scans of paper: decoded in the sandbox, written anew by the worker.

The child decodes the first picture only (a camera's multi-picture JPEG or an animated PNG
keeps its first), turns it upright as the camera asked, converts its colours to sRGB with
its own colour profile, and hands back the pixels. The worker writes a new JPEG (or PNG,
for a PNG) from them: nothing of the original file travels on, neither the camera's
details, nor the place a phone photo was taken, nor comments, nor a profile.
"""

import io
import warnings

from .sandbox import Refused

PILLOW_FORMATS = {"jpeg": ["JPEG", "MPO"], "png": ["PNG"], "heic": ["HEIF"], "tiff": ["TIFF"]}
# What the worker writes: HEIC becomes JPEG, so that coordinators can open it anywhere.
STORED_AS = {
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "heic": ("JPEG", "image/jpeg", "jpg"),
}
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
# A progressive JPEG is decoded once a scan, over the whole picture: thousands of scans take
# minutes of CPU for a few kilobytes of file. Encoders write ten or twenty; a scan starts
# with the marker FF DA, which the compressed data can never hold (an FF there is followed
# by 00 or a restart marker), so counting markers counts scans.
MAX_JPEG_SCANS = 500
# JPEG has no transparency: see-through parts become white, as on paper.
MODES = {"jpeg": {"L", "RGB"}, "heic": {"L", "RGB"}, "png": set(CHANNELS)}


def prepare() -> None:
    import pillow_heif
    from PIL import Image, ImageCms

    pillow_heif.register_heif_opener()
    # Decoding in one thread: the sandbox allows only a few.
    pillow_heif.options.DECODE_THREADS = 1
    # Photo editors write megabytes of history into a PNG's text chunks; Pillow refuses the
    # file past 1 MB of them. The sandbox's memory limit is the bound here, and the text is
    # not copied anyway.
    from PIL import PngImagePlugin

    PngImagePlugin.MAX_TEXT_CHUNK = 64 * 1024 * 1024
    PngImagePlugin.MAX_TEXT_MEMORY = 256 * 1024 * 1024
    Image.init()
    ImageCms.createProfile("sRGB")


def child(kind: str, data: bytes, options: dict, out) -> dict:
    from PIL import Image, ImageOps

    if kind == "jpeg" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise Refused("too_complex")
    limit = options["max_pixels"]
    # Checked from the header, before a pixel is decoded.
    Image.MAX_IMAGE_PIXELS = limit
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused("too_many_pixels") from None
    if image.width * image.height > limit:
        raise Refused("too_many_pixels")
    if kind == "tiff":
        return _tiff_pages(image, options, out)
    if kind != "png" and max(image.size) > 65_500:
        raise Refused("too_complex")  # longer than a JPEG, which it becomes, can be
    image.seek(0)
    image.load()
    profile = image.info.get("icc_profile")
    # A phone's 200-megapixel photo is opened whole, and kept at a size coordinators can
    # open (and the worker can hold): no report needs more.
    stored = options.get("max_stored_pixels") or limit
    if image.width * image.height > stored:
        fit = (stored / (image.width * image.height)) ** 0.5 * 0.99
        image = image.resize((max(1, int(image.width * fit)), max(1, int(image.height * fit))))
    image = ImageOps.exif_transpose(image)
    image = _flat(_in_srgb(image, profile), keep_alpha=kind == "png")
    out.send({"width": image.width, "height": image.height, "mode": image.mode}, image.tobytes())
    return {}


def _tiff_pages(image, options: dict, out) -> dict:
    """A scanner's or a fax's TIFF: every page, as the pixels of a page of a new PDF, made
    smaller where a page has more than `max_page_pixels` (a scan at 600 dots an inch)."""
    pages = getattr(image, "n_frames", 1)
    if pages > options["max_pages"]:
        raise Refused("too_many_pages")
    for index in range(pages):
        image.seek(index)
        if image.width * image.height > options["max_pixels"]:
            raise Refused("too_many_pixels")
        image.load()
        page = image if image.mode != "1" else image.convert("L")
        page = _flat(_in_srgb(page, image.info.get("icc_profile")), keep_alpha=False)
        page = page.convert("RGB")
        # Pixels per point (a point is 1/72 inch), from the scan's resolution. A fax's
        # differs across and down (204 by 98 dots an inch): its lines are stretched to
        # square pixels, or the page would come out half as tall as the paper.
        try:
            across, down = (float(value) for value in image.info.get("dpi") or (150, 150))
        except (TypeError, ValueError):
            across = down = 150.0
        if not (36 <= across <= 720 and 36 <= down <= 720):
            across = down = 150.0
        if abs(across - down) > 1:
            height = max(1, round(page.height * across / down))
            if page.width * height > options["max_pixels"]:
                raise Refused("too_many_pixels")
            page = page.resize((page.width, height))
        scale = across / 72
        fit = (options["max_page_pixels"] / (page.width * page.height)) ** 0.5 * 0.99
        if fit < 1:
            page = page.resize((max(1, int(page.width * fit)), max(1, int(page.height * fit))))
            scale *= fit
        header = {"page": index + 1, "pages": pages, "scale": scale}
        out.send(header | {"width": page.width, "height": page.height}, page.tobytes())
    return {"pages": pages}


def _in_srgb(image, profile: bytes | None):
    from PIL import ImageCms

    if image.mode == "CMYK" or (profile and image.mode in {"RGB", "RGBA"}):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile)) if profile else None
            if source is not None:
                mode = "RGBA" if image.mode == "RGBA" else "RGB"
                return ImageCms.profileToProfile(
                    image, source, ImageCms.createProfile("sRGB"), outputMode=mode
                )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the colours as they are, without it
    return image


def _flat(image, keep_alpha: bool):
    from PIL import Image

    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        # Keep the top 8 bits; a plain conversion would clip nearly everything to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    see_through = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if see_through and keep_alpha:
        image = image.convert("LA" if image.mode in {"L", "LA", "La"} else "RGBA")
        # A fully see-through pixel shows nothing, whatever its colour: the colour goes, so
        # that nothing can be hidden in it.
        hidden = image.getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
        image.paste((0,) * len(image.mode), mask=hidden)
        return image
    if see_through:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", image.size, "white")
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image if image.mode in {"L", "RGB"} else image.convert("RGB")


def encode(
    kind: str, header: dict, payload: bytes, out, *, max_pixels: int
) -> tuple[str, str, bytes]:
    """Writes the picture from the child's pixels to the file `out`; returns its content
    type, its extension and a preview of it."""
    from PIL import Image

    width, height, mode = int(header["width"]), int(header["height"]), header["mode"]
    if mode not in MODES[kind] or not 0 < width * height <= max_pixels:
        raise ValueError("a picture out of bounds")
    if len(payload) != width * height * CHANNELS[mode]:
        raise ValueError("a picture of the wrong size")
    image = Image.frombytes(mode, (width, height), payload)
    output_format, content_type, extension = STORED_AS[kind]
    options = {"quality": 90} if output_format == "JPEG" else {}
    image.save(out, output_format, **options)
    return content_type, extension, preview(image)


# Large enough to tell a report from a scan and read a heading, small enough for a list.
PREVIEW_SIDE = 480


def preview(image) -> bytes:
    """A small JPEG of a picture the worker holds (pixels the sandbox handed back, already
    within bounds)."""
    from PIL import Image

    small = image.copy()
    if small.mode not in ("L", "RGB"):
        small = small.convert("RGBA")
        flat = Image.new("RGB", small.size, "white")
        flat.paste(small, mask=small.getchannel("A"))
        small = flat
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()
