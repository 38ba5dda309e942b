"""Real files nobody here made, from the test corpora of maintained packages (pypdf,
pikepdf, Pillow and pillow-heif ship theirs in their source distributions, which `make
test` downloads into .cache/corpora; pydicom installs its own), through the very checks a
family's file meets: the look at its first bytes, then the sandbox. A real record we refuse
is as much a defect as a hostile file we keep, so every file here must be accepted but the
ones below, each refused for the reason given.

Run once (`pytest -m corpus`), as it does not touch the database.
"""

import tarfile
from pathlib import Path

import pydicom.data
import pytest

from inquiries.documents.types import detect

from .conftest import ROOT, rebuild_bytes, refusal_code

pytestmark = pytest.mark.corpus

CORPORA = ROOT / ".cache" / "corpora"
EXTRACTED = CORPORA / "extracted"
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
# Every so many files of a corpus, plus every file named below: the whole sweep takes
# several minutes, an eighth of it, with the files named, about a minute.
EVERY = 8

# What we refuse, and why.
REFUSED = {
    "pdf-needs-a-password": (
        "encrypted",
        [
            "pikepdf-10.18.0/tests/resources/graph-encrypted.pdf",
            "pypdf-7.1.1/resources/crazyones-encrypted-256.pdf",
            "pypdf-7.1.1/resources/encrypted-file.pdf",
            "pypdf-7.1.1/resources/encryption/r2-user-password.pdf",
            "pypdf-7.1.1/resources/encryption/r3-user-password.pdf",
            "pypdf-7.1.1/resources/encryption/r4-aes-user-password.pdf",
            "pypdf-7.1.1/resources/encryption/r4-user-password.pdf",
            "pypdf-7.1.1/resources/encryption/r5-user-password.pdf",
            "pypdf-7.1.1/resources/encryption/r6-both-passwords.pdf",
            "pypdf-7.1.1/resources/encryption/r6-cleartext-metadata.pdf",
            "pypdf-7.1.1/resources/encryption/r6-user-password.pdf",
            "pypdf-7.1.1/resources/libreoffice-writer-password.pdf",
        ],
    ),
    # Cut short, corrupted or fuzzed on purpose by the corpora's authors; or a DICOMDIR
    # (the index of a CD, not a scan); or a test fragment with no SOP class.
    "broken-on-purpose": (
        "damaged",
        [
            "pikepdf-10.18.0/tests/resources/fuzz/378014596.pdf",
            "pikepdf-10.18.0/tests/resources/newline-buffer-test.pdf",
            "pillow-13.0.0/Tests/images/apng/chunk_no_fctl.png",
            "pillow-13.0.0/Tests/images/apng/syntax_num_frames_zero.png",
            "pillow-13.0.0/Tests/images/broken.png",
            "pillow-13.0.0/Tests/images/broken_data_stream.png",
            "pillow-13.0.0/Tests/images/truncated_end_chunk.png",
            "pillow-13.0.0/Tests/images/truncated_image.png",
            "pillow-13.0.0/Tests/images/truncated_jpeg.jpg",
            "pillow-13.0.0/Tests/images/ultrahdr.jpg",
            "pillow-13.0.0/Tests/images/unknown_compression_method.png",
            "pillow_heif-1.8.1/tests/images/heif_corrupted/corrupted.heic",
            "pydicom/MR_truncated.dcm",
            "pydicom/UN_sequence.dcm",
            "pydicom/badVR.dcm",
            "pydicom/empty_charset_LEI.dcm",
            "pydicom/meta_missing_tsyntax.dcm",
            "pydicom/nested_priv_SQ.dcm",
            "pydicom/no_meta_group_length.dcm",
            "pydicom/priv_SQ.dcm",
            "pillow_heif-1.8.1/tests/images/heif_corrupted/corrupted.hif",
            "pillow-13.0.0/Tests/images/hopper_unknown_pixel_mode.tif",
            "pillow-13.0.0/Tests/images/libtiff_segfault.tif",
            "pillow-13.0.0/Tests/images/oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif",
            "pillow-13.0.0/Tests/images/seek_too_large.tif",
            "pillow-13.0.0/Tests/images/tiff_overflow_rows_per_strip.tif",
            "pillow-13.0.0/Tests/images/tiff_tiled_jpeg_oob_read.tif",
            # A real kind of TIFF (WebP inside) that the TIFF library Pillow ships without
            # WebP support cannot open: the family is asked for a photo of each page.
            "pillow-13.0.0/Tests/images/hopper_webp.tif",
        ],
    ),
    # What the family is told at once, in the form: an empty file; a scan whose first byte
    # is stray, so that no reader finds its elements; a scan disc's index.
    "at-once": (
        "at_once",
        [
            "pillow_heif-1.8.1/tests/images/heif_corrupted/empty.heic",
            "pydicom/no_meta.dcm",
            "pydicom/dicomdirtests/DICOMDIR",
            "pydicom/dicomdirtests/DICOMDIR-bigEnd",
            "pydicom/dicomdirtests/DICOMDIR-empty.dcm",
            "pydicom/dicomdirtests/DICOMDIR-implicit",
            "pydicom/dicomdirtests/DICOMDIR-nooffset",
            "pydicom/dicomdirtests/DICOMDIR-nopatient",
            "pydicom/dicomdirtests/DICOMDIR-reordered",
            "pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR",
        ],
    ),
}
EXPECTED = {name: code for code, names in REFUSED.values() for name in names}
# Accepted, and always tried: what older scanners and archives write (no preamble, a disc's
# files with no extension), a phone's 200-megapixel photo, a fax, a camera's multi-picture
# JPEG, a scan that is both a TIFF and a DICOM file.
ALWAYS = {
    "pydicom/ExplVR_BigEndNoMeta.dcm",
    "pydicom/ExplVR_LitEndNoMeta.dcm",
    "pydicom/rtstruct.dcm",
    "pydicom/dicomdirtests/98892003/MR700/4648",
    "pydicom/dicomdirtests/77654033/CT2/17136",
    "pillow_heif-1.8.1/tests/images/heif_special/200MP.heic",
    "pillow-13.0.0/Tests/images/g4-multi.tiff",
    "pillow-13.0.0/Tests/images/multipage.tiff",
    "pillow-13.0.0/Tests/images/sugarshack.mpo",
    "pydicom/JPEG2000.dcm",
    "pydicom/MR_small_RLE.dcm",
    "pydicom/MR_small_jpeg_ls_lossless.dcm",
    "pydicom/JPEG-lossy.dcm",
    "pydicom/MR_small_padded.dcm",
    "pydicom/JPEGLSNearLossless_16.dcm",
    "pydicom/image_dfl.dcm",
    "pydicom/MR_small_bigendian.dcm",
    "pydicom/test-SR.dcm",
}
# What each kind is kept as: a TIFF becomes a PDF, a HEIC photo a JPEG.
STORED_AS = {
    "pdf": "application/pdf",
    "tiff": "application/pdf",
    "jpeg": "image/jpeg",
    "heic": "image/jpeg",
    "png": "image/png",
    "dicom": "application/dicom",
}
KINDS = (".pdf", ".jpg", ".jpeg", ".jfif", ".jpe", ".mpo", ".png", ".heic", ".heif", ".hif")
KINDS += (".tif", ".tiff", ".dcm")


def real_files() -> list[tuple[str, Path]]:
    """(name, path) of every file to try, the archives' members extracted once."""
    files = []
    for archive in sorted(CORPORA.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile() and m.name.lower().endswith(KINDS) and "/docs/" not in m.name
            ]
            if not all((EXTRACTED / m.name).exists() for m in members):
                tar.extractall(EXTRACTED, members=members, filter="data")
        files += [(m.name, EXTRACTED / m.name) for m in sorted(members, key=lambda m: m.name)]
    for path in sorted(PYDICOM_FILES.rglob("*")):
        name = "pydicom/" + str(path.relative_to(PYDICOM_FILES))
        # Scans, and the files of a CD, which have no extension; not the READMEs beside them.
        is_scan = path.suffix == ".dcm" or ("dicomdirtests" in name and not path.suffix)
        if path.is_file() and is_scan and not path.name.startswith("README"):
            files.append((name, path))
    named = EXPECTED.keys() | ALWAYS
    return [item for n, item in enumerate(files) if n % EVERY == 0 or item[0] in named]


if not CORPORA.is_dir():
    pytest.skip(
        "the corpora are downloaded by `make test` (make test-deps)", allow_module_level=True
    )


def test_the_files_always_tried_are_in_the_corpora():
    names = {name for name, _ in real_files()}
    assert ALWAYS <= names and set(EXPECTED) <= names


@pytest.mark.parametrize(("name", "path"), real_files(), ids=lambda value: str(value)[-70:])
def test_a_real_file_is_accepted_unless_it_cannot_be_a_record(name, path):
    data = path.read_bytes()
    kind = detect(path.name, data[:4096]).kind
    at_once = kind is None
    expected = EXPECTED.get(name, "accepted")
    if at_once or expected == "at_once":
        assert (expected, at_once) == ("at_once", True)
    elif expected == "accepted":
        rebuilt = rebuild_bytes(kind, data)
        rebuilt.content.close()
        # A scan that wraps a PDF is kept as that PDF.
        kept_as = {STORED_AS[kind], "application/pdf"} if kind == "dicom" else {STORED_AS[kind]}
        assert rebuilt.content_type in kept_as
    else:
        assert refusal_code(kind, data) == expected
