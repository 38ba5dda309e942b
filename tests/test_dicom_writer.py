"""The rewritten scan's own writer (dicom._written) against pydicom's, on every real scan
pydicom ships for its tests: byte for byte the same file, so that the faster writer
changes nothing a viewer reads."""

import io
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from inquiries.documents import dicom

CORPUS = Path(pydicom.data.__file__).parent / "test_files"
FILES = sorted(path for path in CORPUS.rglob("*") if path.is_file())


def pydicom_written(copy) -> bytes:
    output = io.BytesIO()
    copy.save_as(output, enforce_file_format=True)
    return output.getvalue()


@pytest.mark.corpus
def test_the_copy_is_the_file_pydicom_writes(monkeypatch):
    dicom.prepare()
    compared = 0
    for path in FILES:
        data = path.read_bytes()
        try:
            header, ours = dicom.rebuilt(data, {"max_inflated": 1 << 28})
        except Exception:  # noqa: S112 - refused or unreadable: nothing written to compare
            continue
        if header.get("pdf_inside"):
            continue
        with monkeypatch.context() as patch:
            patch.setattr(dicom, "_written", pydicom_written)
            _, theirs = dicom.rebuilt(data, {"max_inflated": 1 << 28})
        assert ours == theirs, path.name
        compared += 1
    # Most of pydicom's test files are real scans the rewrite accepts.
    assert compared > 100
