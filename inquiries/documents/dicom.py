"""DICOM scans: read in the sandbox and written anew from their standard elements only.

The new file has an empty preamble, fresh file meta information, and only the elements the
DICOM standard defines: no private element (where programs, PDFs and archives hide), none
the dictionary does not know, no raw binary element but the image data and the look-up
tables that colour it, each checked against what declares its size. The image data must
be as long as its rows, columns, frames, samples and bits say, and is cut to exactly that
(compressed, it must hold as many frames as declared, each of the declared size), or the
file is refused. A DICOM that wraps a PDF is handed back as that PDF, to be rebuilt like
any other.
"""

import codecs
import functools
import io
import struct
import zlib

from .sandbox import Refused

# The first 128 bytes are skipped by readers; scanners write zeros there, a TIFF header
# (files that are both TIFF and DICOM), or a stray byte. A program, a script, an archive or
# a document there, which runs or opens when the file is opened the wrong way, is refused,
# though the rebuilt file would not carry it.
NOT_A_SCAN = (
    b"MZ",  # Windows
    b"\x7fELF",  # Linux
    b"\xfe\xed\xfa",  # macOS, and its fat binaries below
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"#!",  # a script
    b"PK\x03\x04",  # an archive
    b"%PDF",
    b"{\\rtf",
)
# A web page, an SVG drawing or any XML, after whitespace or a byte-order mark.
MARKUP_START = b"<"
# Raw binary elements (OB, OW, OF, OD, OL, OV, UN) could carry anything, standard or not.
# Only the image data itself is kept, at the top of the scan, checked against its size;
# and the look-up tables that colour or window it, each exactly as long as its descriptor
# says. Overlays, icons, floating-point images and the rest are dropped.
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
PIXEL_DATA = 0x7FE00010
# Red, green and blue palette colour look-up table data, by their descriptors.
PALETTE_TABLES = {0x00281201: 0x00281101, 0x00281202: 0x00281102, 0x00281203: 0x00281103}
LUT_DATA, LUT_DESCRIPTOR = 0x00283006, 0x00283002
# The file meta group (written anew), signatures and encrypted attributes (0400), and the
# digital signatures sequence (FFFA), which may hold anything. Addresses (the UR kind, such
# as a pixel data provider's URL) are dropped too: a viewer could fetch them.
DROPPED_GROUPS = {0x0002, 0x0400, 0xFFFA}
# A ZIP reader looks for the archive's end record in the last 64 KB and 22 bytes of a file.
TRAILING_PADDING = 0xFFFCFFFC
ZIP_END, ZIP_REACH = b"PK\x05\x06", 65_557
DEFLATED = "1.2.840.10008.1.2.1.99"


def prepare() -> None:
    import pydicom
    import pydicom.encaps
    import pydicom.pixels.utils
    from pydicom import charset

    # Text in other character sets is decoded with codecs Python loads on first use.
    for encoding in set(charset.python_encoding.values()):
        codecs.lookup(encoding)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


def child(kind: str, data: bytes, options: dict, out) -> dict:
    header, payload = rebuilt(data, options)
    out.send(header, payload)
    return {"inside": "pdf"} if header.get("pdf_inside") else {}


def rebuilt(data: bytes, options: dict) -> tuple[dict, bytes]:
    """(header, the new file), or, for a PDF wrapped in DICOM, ({"pdf_inside": True}, the
    PDF); raises Refused. The header describes the scan's series."""
    import pydicom
    from pydicom.uid import EncapsulatedPDFStorage

    preamble = data[:128]
    if preamble.startswith(NOT_A_SCAN) or preamble.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(
        MARKUP_START
    ):
        raise Refused("executable_preamble")
    _check_inflated_size(data, options["max_inflated"])
    if data[128:132] == b"DICM":
        dataset = pydicom.dcmread(io.BytesIO(data))
    else:
        # Older scanners wrote no preamble and no file meta group: the data set alone, its
        # encoding found by reading it.
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        dataset.file_meta = _meta_for(dataset)
    meta = dataset.file_meta
    uids = [
        meta.get("TransferSyntaxUID"),
        dataset.get("SOPClassUID"),
        dataset.get("SOPInstanceUID"),
    ]
    if not all(uids):
        raise Refused("damaged")
    if dataset.SOPClassUID == EncapsulatedPDFStorage:
        document = bytes(dataset.EncapsulatedDocument)
        # An odd-length PDF is padded with one zero byte to an even length.
        return {"pdf_inside": True}, document.rstrip(b"\0")
    if "EncapsulatedDocument" in dataset:
        raise Refused("type")
    _check_image(dataset)
    copy = _rebuilt(dataset)
    written = _written(copy)
    if ZIP_END in written[-ZIP_REACH:]:
        # Image data that happens to end like a ZIP archive would make the file one: padding
        # takes its end out of a ZIP reader's reach.
        copy.add_new(TRAILING_PADDING, "OB", bytes(ZIP_REACH))
        written = _written(copy)
    return {"dicom": True, **describe(dataset)}, written


# What the series of a scan is told by, for coordinators: (header key, DICOM keyword).
DESCRIBED = [
    ("study_uid", "StudyInstanceUID"),
    ("series_uid", "SeriesInstanceUID"),
    ("modality", "Modality"),
    ("study_date", "StudyDate"),
    ("study_description", "StudyDescription"),
    ("series_description", "SeriesDescription"),
    ("body_part", "BodyPartExamined"),
]


def describe(dataset) -> dict:
    """The scan's series, as text of bounded length with no control characters."""
    described = {}
    for key, keyword in DESCRIBED:
        try:
            value = dataset.get(keyword) or ""
            # A value of several parts ("CHEST\ABDOMEN") reads as its parts.
            several = hasattr(value, "__iter__") and not isinstance(value, str | bytes)
            value = " ".join(map(str, value)) if several else str(value)
        except Exception:  # a value pydicom cannot decode: the series is told without it
            value = ""
        described[key] = "".join(c for c in value if c.isprintable())[:64].strip()
    # A scan with no series UID still belongs to one: its own.
    described["series_uid"] = described["series_uid"] or str(dataset.SOPInstanceUID)[:64]
    return described


def _meta_for(dataset):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = dataset.original_encoding
    if implicit is None:
        raise Refused("damaged")
    meta = FileMetaDataset()
    if implicit and little:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    elif not implicit:
        meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        raise Refused("damaged")  # implicit big-endian exists in no standard
    return meta


def _check_inflated_size(data: bytes, limit: int) -> None:
    """pydicom inflates a deflated scan whole, in memory, with no limit: a few kilobytes can
    ask for gigabytes. Inflated first a megabyte at a time and thrown away, it is refused
    the moment it passes `limit`, having taken little memory."""
    if data[132:138] != b"\x02\x00\x00\x00UL":
        return  # no file meta group length: pydicom finds its way, within the sandbox
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    if DEFLATED.encode() not in data[144:meta_end]:
        return
    inflater, pending, inflated = zlib.decompressobj(-zlib.MAX_WBITS), data[meta_end:], 0
    while pending and not inflater.eof:
        inflated += len(inflater.decompress(pending, 1024 * 1024))
        if inflated > limit:
            raise Refused("too_complex")
        pending = inflater.unconsumed_tail


@functools.cache
def _standard_kind(tag: int, vr: str | None) -> bool:
    """Whether the standard defines `tag` with the value representation `vr`: the same few
    hundred answers for every scan of a disc, worked out once each."""
    from pydicom.datadict import dictionary_has_tag, dictionary_VR, repeater_has_tag
    from pydicom.tag import Tag

    tag = Tag(tag)
    if tag.is_private or tag.group in DROPPED_GROUPS or vr == "UR":
        return False
    if not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
        return False
    # Only with the value representation the standard gives the tag: a reader that takes
    # it from the dictionary (an implicit-VR file, or one that knows better) would read
    # text written as anything else as the elements of a sequence, or the other way round,
    # and an unknown kind is read with another length by each reader.
    return vr in dictionary_VR(tag).split(" or ")


def _standard(element, dataset, top: bool) -> bool:
    tag = int(element.tag)
    if not _standard_kind(tag, element.VR):
        return False
    # Nothing but a sequence or the image data may run to an end marker.
    undefined = getattr(element, "is_undefined_length", False) or (
        getattr(element, "length", 0) == 0xFFFFFFFF
    )
    if undefined and element.VR != "SQ" and tag != PIXEL_DATA:
        return False
    if element.VR not in BINARY_VRS:
        return True
    if tag == PIXEL_DATA:
        return top  # checked by _check_image, and cut to its size
    if tag in PALETTE_TABLES:
        return _table_fits(element, dataset.get(PALETTE_TABLES[tag]))
    if tag == LUT_DATA:
        return _table_fits(element, dataset.get(LUT_DESCRIPTOR))
    return False


def _table_fits(table, descriptor) -> bool:
    """Whether a look-up table holds exactly the entries its descriptor declares (a count
    of 0 means 65,536), of the declared number of bits."""
    try:
        entries, _, bits = (int(value) for value in descriptor.value)
    except (AttributeError, TypeError, ValueError):
        return False
    entries = entries or 65536
    return len(table.value) in {entries * (2 if bits > 8 else 1), entries * 2}


def _rebuilt(dataset):
    import pydicom
    from pydicom.dataset import FileMetaDataset

    rebuilt = _copy(dataset)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = _syntax_as_read(dataset)
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    rebuilt.file_meta = meta
    rebuilt.preamble = bytes(128)
    return rebuilt


def _syntax_as_read(dataset):
    """The transfer syntax the copy is written in: the one declared, unless the data set was
    written otherwise (some writers declare implicit VR and write explicit, or the other
    way round), in which case the one it was read in, so that every reader reads the copy
    as it was checked."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    declared = dataset.file_meta.TransferSyntaxUID
    read = dataset.original_encoding
    if None in read or (declared.is_implicit_VR, declared.is_little_endian) == read:
        return declared
    if declared.is_compressed or declared.is_deflated:
        raise Refused("damaged")  # compressed image data in a data set written otherwise
    implicit, little = read
    if implicit and not little:
        raise Refused("damaged")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _copy(dataset, top: bool = True):
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    kept = {}
    for tag, element in dataset.items():
        if isinstance(element, RawDataElement) and element.VR not in (None, "SQ"):
            # Kept as read, bytes and all: decoding every value only to encode it again
            # took most of the time a disc of hundreds of scans takes. Sequences are
            # opened (their items are filtered too), and elements written without their
            # value representation are decoded, which finds it.
            if _standard(element, dataset, top):
                kept[tag] = element
            continue
        element = dataset[tag]
        if not _standard(element, dataset, top):
            continue
        if element.VR == "SQ":
            value = Sequence([_copy(item, top=False) for item in element.value])
        else:
            value = element.value
        kept[tag] = DataElement(element.tag, element.VR, value)
    # The elements in the order of their tags, as a file holds them.
    copy = Dataset(dict(sorted(kept.items())))
    # Written as it was read, so that the bytes kept as read are written as they are.
    implicit, little = dataset.original_encoding
    if implicit is not None:
        copy.set_original_encoding(implicit, little, dataset.original_character_set)
    return copy


def _written(copy) -> bytes:
    """The copy as a file. Elements kept as read are written as they were read (as pydicom
    writes them too, with their header made here, which is four times faster for a scan
    of a few hundred elements); the rest, and a deflated file, are written by pydicom."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element, write_file_meta_info
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    syntax = copy.file_meta.TransferSyntaxUID
    if syntax.is_deflated:
        output = io.BytesIO()
        copy.save_as(output, enforce_file_format=True)
        return output.getvalue()
    fp = DicomBytesIO()
    fp.write(copy.preamble + b"DICM")
    write_file_meta_info(fp, copy.file_meta, enforce_standard=True)
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    order = "<" if little else ">"
    if "PixelData" in copy:
        # PS3.5 A.4: encapsulated (compressed) image data has an undefined length.
        copy["PixelData"].is_undefined_length = syntax.is_compressed
    encodings = copy.get("SpecificCharacterSet") or "iso8859"
    for tag in copy.keys():
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths (PS3.5 7.2), which pydicom leaves out too
        element = copy.get_item(tag)
        if not element.is_raw or element.length == 0xFFFFFFFF:
            write_data_element(fp, copy[tag], encodings)
            continue
        value, group, number = element.value or b"", tag >> 16, tag & 0xFFFF
        if implicit:
            fp.write(struct.pack(order + "HHI", group, number, len(value)))
        elif element.VR in EXPLICIT_VR_LENGTH_32:
            fp.write(struct.pack(order + "HH2s2xI", group, number, element.VR.encode(), len(value)))
        else:
            fp.write(struct.pack(order + "HH2sH", group, number, element.VR.encode(), len(value)))
        fp.write(value)
    return fp.getvalue()


def _to_end_marker(frame: bytes) -> bytes:
    end = frame.rfind(b"\xff\xd9")
    if frame.startswith((b"\xff\xd8", b"\xff\x4f\xff\x51")) and end != -1:
        return frame[: end + 2]
    return frame


def _check_image(dataset) -> None:
    from pydicom.encaps import encapsulate, generate_frames

    if "PixelData" not in dataset:
        return  # a report or a measurement, with no image
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        samples, bits = int(dataset.SamplesPerPixel), int(dataset.BitsAllocated)
        frames = int(dataset.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        raise Refused("damaged") from None
    if min(rows, columns, samples, bits, frames) < 1:
        raise Refused("damaged")
    pixels = dataset.PixelData
    syntax = dataset.file_meta.TransferSyntaxUID
    if not syntax.is_compressed:
        if dataset.get("PhotometricInterpretation") == "YBR_FULL_422":
            samples = 2  # two of every three colour values are shared by pairs of pixels
        expected = (rows * columns * frames * samples * bits + 7) // 8
        if len(pixels) < expected:
            raise Refused("damaged")
        # What follows the image (padding, or anything else) is not copied.
        dataset.PixelData = pixels[: expected + expected % 2]
        return
    try:
        found = list(generate_frames(pixels, number_of_frames=frames))
    except (ValueError, KeyError):
        raise Refused("damaged") from None
    if len(found) != frames or not all(found):
        raise Refused("damaged")
    for frame in found:
        declared = _frame_size(frame)
        if declared is not None and declared != (rows, columns):
            raise Refused("damaged")
    # Each frame again, as a frame of its own, cut after its end marker where it has one
    # (JPEG and JPEG 2000 end with FF D9): whatever followed it inside the fragments is not
    # copied.
    dataset.PixelData = encapsulate([_to_end_marker(frame) for frame in found])


def _frame_size(frame: bytes) -> tuple[int, int] | None:
    """The rows and columns a compressed frame's own header declares where pydicom reads
    them (JPEG and JPEG-LS); None for the others (JPEG 2000, RLE)."""
    from pydicom.pixels import utils

    if not frame.startswith(b"\xff\xd8"):
        return None
    try:
        parameters = utils._get_jpg_parameters(frame)
    except Exception:
        raise Refused("damaged") from None
    if "height" not in parameters:
        raise Refused("damaged")
    if not parameters["height"]:
        return None  # given later in the frame (a DNL marker)
    return int(parameters["height"]), int(parameters["width"])


def check_rebuilt(payload: bytes, received_size: int) -> None:
    """What the worker checks of the child's file before storing it."""
    if payload[:128] != bytes(128) or payload[128:132] != b"DICM":
        raise ValueError("not a rewritten DICOM file")
    if len(payload) > received_size + 128 * 1024:
        raise ValueError("larger than what was received")
