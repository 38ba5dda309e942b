"""find_orphans reports files that no row names and rows whose file is gone."""

import io
import os
import time

import pytest
from django.core.management import CommandError, call_command

from inquiries.models import Document, Inquiry

from .conftest import TEST_BUCKET, files_in
from .support import pdf, photo, send

pytestmark = pytest.mark.django_db

AN_HOUR_AND_A_BIT = 2 * 60 * 60


def find_orphans(*options: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("find_orphans", *options, stdout=out)
    except CommandError as error:
        return 1, out.getvalue() + str(error)
    return 0, out.getvalue()


@pytest.fixture
def sent(client, django_capture_on_commit_callbacks):
    """Sends an inquiry, its checks committed (the originals deleted), as in production."""

    def send_checked(documents):
        with django_capture_on_commit_callbacks(execute=True):
            send(client, documents=documents)

    return send_checked


def test_nothing_to_report_when_files_and_rows_match(sent):
    sent([pdf(), photo()])
    status, output = find_orphans()
    assert status == 0
    assert "0 file(s) with no row, 0 row(s) with no file." in output


def test_finds_a_file_with_no_row_and_a_row_with_no_file(sent, documents_dir):
    sent([pdf(), photo()])
    first, second = Document.objects.order_by("pk")
    # A file a crashed worker left behind, long ago, and one still being saved now.
    folder = (documents_dir / first.file.name).parent
    old_stray = folder / ("a" * 32 + ".pdf")
    old_stray.write_bytes(b"%PDF-1.7 left by a crash")
    os.utime(old_stray, (time.time() - AN_HOUR_AND_A_BIT,) * 2)
    in_flight = folder / ("b" * 32 + ".pdf")
    in_flight.write_bytes(b"%PDF-1.7 being saved")
    # A row whose file has gone.
    (documents_dir / second.file.name).unlink()

    status, output = find_orphans()
    assert status == 1
    assert f"File with no row: documents/{old_stray.relative_to(documents_dir)}" in output
    assert "b" * 32 not in output
    reference = Inquiry.objects.get().reference
    assert f"Row with no file: document {second.pk} of inquiry {reference}" in output
    assert f"document {first.pk} " not in output
    assert "1 file(s) with no row, 1 row(s) with no file." in output
    assert old_stray.exists()  # reporting removes nothing


def test_stray_files_can_be_removed_rows_never_are(sent, documents_dir):
    sent([pdf()])
    stray = documents_dir / ("c" * 32 + ".jpg")
    stray.write_bytes(b"\xff\xd8 left by a crash")
    os.utime(stray, (time.time() - AN_HOUR_AND_A_BIT,) * 2)
    status, output = find_orphans("--remove-stray-files")
    assert status == 1 and "(removed)" in output
    assert not stray.exists()
    assert Document.objects.count() == 1
    assert find_orphans()[0] == 0


def test_finds_both_in_the_s3_bucket_too(s3, sent):
    sent([pdf(), photo()])
    s3.put_object(Bucket=TEST_BUCKET, Key="documents/2026/11/stray.pdf", Body=b"x")
    s3.put_object(Bucket=TEST_BUCKET, Key="quarantine/2026/11/stray", Body=b"x")
    gone = Document.objects.order_by("pk").last()
    s3.delete_object(Bucket=TEST_BUCKET, Key=f"documents/{gone.file.name}")
    status, output = find_orphans("--grace-minutes", "0")
    assert status == 1
    assert "File with no row: documents/2026/11/stray.pdf" in output
    assert "File with no row: quarantine/2026/11/stray" in output
    assert f"Row with no file: document {gone.pk} " in output


def test_a_file_waiting_in_quarantine_is_known_and_a_lost_one_is_reported(
    client, quarantine_dir, monkeypatch
):
    # Sent while no worker runs: the originals wait in quarantine, named by their rows.
    monkeypatch.setattr("inquiries.views.queue_checks", lambda inquiry: None)
    send(client, documents=[pdf(), photo()])
    assert len(files_in(quarantine_dir)) == 2
    assert find_orphans("--grace-minutes", "0")[0] == 0
    lost = Document.objects.order_by("pk").first()
    (quarantine_dir / lost.quarantine_name).unlink()
    stray = quarantine_dir / "2026" / "11" / ("e" * 32)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"left by a crash")
    status, output = find_orphans("--grace-minutes", "0")
    assert status == 1
    assert f"Row with no file: document {lost.pk} " in output
    assert f"File with no row: quarantine/2026/11/{'e' * 32}" in output


def test_removing_strays_needs_a_safe_grace_period(client, documents_dir):
    status, output = find_orphans("--remove-stray-files", "--grace-minutes", "0")
    assert status == 1 and "needs --grace-minutes of 10 or more" in output


def test_a_write_that_stops_midway_leaves_no_partial_file(tmp_path):
    import errno

    from django.core.files.base import ContentFile

    from inquiries.storage import WholeFileSystemStorage

    class DiskFillsUp(ContentFile):
        def chunks(self, chunk_size=None):
            yield b"%PDF-1.7 the first part of a report"
            raise OSError(errno.ENOSPC, "No space left on device")

    storage = WholeFileSystemStorage(location=tmp_path)
    (tmp_path / "other.pdf").write_bytes(b"another document")
    with pytest.raises(OSError, match="No space left"):
        storage.save("2026/11/" + "d" * 32 + ".pdf", DiskFillsUp(b"x" * 100))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["other.pdf"]
