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

from inquiries.documents.types import named_type, sniffed_types

from .conftest import ROOT, rebuild_bytes, refusal_code

pytestmark = pytest.mark.corpus

CORPORA = ROOT / ".cache" / "corpora"
EXTRACTED = CORPORA / "extracted"
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
# Every so many files of a corpus, plus every file named below: the whole sweep takes two
# minutes, a sixth of it about thirty seconds.
EVERY = 6

# What we refuse, and why. The files a family could not send at all ("at once") are for a
# later change: DICOM written without its 128-byte preamble by older scanners.
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
    "over-the-pixel-limit": (
        "too_many_pixels",
        ["pillow_heif-1.8.1/tests/images/heif_special/200MP.heic"],
    ),
    "at-once": (
        "at_once",
        [
            "pillow_heif-1.8.1/tests/images/heif_corrupted/empty.heic",
            "pydicom/ExplVR_BigEndNoMeta.dcm",
            "pydicom/ExplVR_LitEndNoMeta.dcm",
            "pydicom/no_meta.dcm",
            "pydicom/rtstruct.dcm",
        ],
    ),
}
EXPECTED = {name: code for code, names in REFUSED.values() for name in names}
KINDS = (".pdf", ".jpg", ".jpeg", ".png", ".heic", ".heif", ".dcm")


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
    return [item for n, item in enumerate(files) if n % EVERY == 0 or item[0] in EXPECTED]


if not CORPORA.is_dir():
    pytest.skip(
        "the corpora are downloaded by `make test` (make test-deps)", allow_module_level=True
    )


@pytest.mark.parametrize(("name", "path"), real_files(), ids=lambda value: str(value)[-70:])
def test_a_real_file_is_accepted_unless_it_cannot_be_a_record(name, path):
    data = path.read_bytes()
    stem = name.rsplit("/", 1)[-1]
    kind = named_type(stem if "." in stem else f"{stem}.dcm")
    at_once = kind is None or kind not in sniffed_types(data[:4096])
    expected = EXPECTED.get(name, "accepted")
    if at_once or expected == "at_once":
        assert (expected, at_once) == ("at_once", True)
    elif expected == "accepted":
        rebuilt = rebuild_bytes(kind, data)
        rebuilt.content.close()
    else:
        assert refusal_code(kind, data) == expected
