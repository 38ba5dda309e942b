"""A hospital's scan disc, sent as a ZIP file or as a folder: pydicom's own copy of a disc
(DICOMDIR, scans with no extension in folders by patient, study and series), with the
viewer program and autorun file that real discs carry, through the form, the sandbox and
the admin, and every way a ZIP file can be an attack."""

import io
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inquiries.models import Document, DocumentDownload, Inquiry, Series

from .conftest import files_in
from .sample_files import PYDICOM_FILES, WINDOWS_EXE, pdf_bytes
from .support import send

pytestmark = pytest.mark.django_db

DISC = PYDICOM_FILES / "dicomdirtests"
SCANS = sorted(
    path
    for path in DISC.rglob("*")
    if path.is_file() and "DICOMDIR" not in path.name and not path.name.startswith("README")
)


def zip_of(members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def disc_members() -> list[tuple[str, bytes]]:
    """The disc as its folder holds it, plus what real discs add beside the scans."""
    members = [
        (f"DISC/{path.relative_to(DISC)}", path.read_bytes())
        for path in sorted(DISC.rglob("*"))
        if path.is_file()
    ]
    members += [
        ("DISC/VIEWER/viewer.exe", WINDOWS_EXE),
        ("DISC/autorun.inf", b"[autorun]\r\nopen=VIEWER\\viewer.exe\r\n"),
        ("DISC/REPORT/discharge-letter.pdf", pdf_bytes(pages=2)),
        ("__MACOSX/DISC/._DICOMDIR", b"\0\x05\x16\x07" + bytes(60)),
    ]
    return members


def disc_zip(name: str = "hospital-disc.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, zip_of(disc_members()), content_type="application/zip")


@pytest.fixture
def sent_disc(client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[disc_zip()])
    assert response.status_code == 302
    return response


def test_a_scan_disc_sent_as_a_zip_file_arrives_as_studies_and_series(
    client, sent_disc, documents_dir, quarantine_dir, uploads_dir
):
    inquiry = Inquiry.objects.get()
    archive = inquiry.documents.get(parent=None, detected_type="zip")
    assert archive.state == "accepted"
    images = inquiry.documents.filter(parent=archive, detected_type="dicom")
    # Every scan of the disc, each checked and rewritten, under a generated name.
    assert images.filter(state="accepted").count() == len(SCANS)
    assert not images.exclude(state="accepted").exists()
    assert {Path(d.file.name).suffix for d in images} == {".dcm"}
    assert not any(d.original_name in d.file.name for d in images)
    # Grouped by series, from their headers: the disc's three patients' studies.
    series = Series.objects.filter(inquiry=inquiry)
    assert series.count() == images.values("series").distinct().count() >= 4
    assert sum(s.images.count() for s in series) == len(SCANS)
    labels = {s.label(s.images.count()) for s in series}
    assert any(label.startswith("MR ") for label in labels)
    assert any(label.startswith("CT ") for label in labels)
    # The PDF inside is checked on its own, like a file sent alone.
    letter = inquiry.documents.get(original_name="discharge-letter.pdf")
    assert (letter.parent, letter.state, letter.content_type) == (
        archive,
        "accepted",
        "application/pdf",
    )
    # The index, the viewer and the autorun file are named, never stored.
    # (pydicom's disc holds seven variants of its index, and two READMEs.)
    assert archive.left_out["counts"] == {"index": 8, "program": 2, "system": 1, "other": 2}
    assert archive.left_out["program"] == ["viewer.exe", "autorun.inf"]
    stored = files_in(documents_dir)
    assert len(stored) == len(SCANS) + 1
    assert not any(WINDOWS_EXE in path.read_bytes() for path in stored)
    # Nothing of the original archive stays.
    assert files_in(quarantine_dir) == files_in(uploads_dir) == []

    html = client.get(sent_disc.url).content.decode()
    assert "hospital-disc.zip" in html
    assert f"{len(SCANS)} images in {series.count()} series and 1 other file taken out of it" in (
        html
    )
    assert "Left out, as they are not medical records: 8 copies of the disc’s index" in html
    assert "2 program files (the disc’s viewer, say)" in html
    assert "discharge-letter.pdf" in html


def test_coordinators_see_series_not_hundreds_of_rows_and_download_one_or_all(
    sent_disc, coordinator_client, coordinator
):
    inquiry = Inquiry.objects.get()
    # The list counts what came out of the disc, not the disc itself.
    listing = coordinator_client.get("/admin/inquiries/inquiry/?cases=all").content.decode()
    assert f'<td class="field-documents">{len(SCANS) + 1}</td>' in listing
    page = coordinator_client.get(inquiry.get_admin_url()).content.decode()
    series = Series.objects.filter(inquiry=inquiry).order_by("pk")
    for one in series:
        assert one.label(one.images.count()) in page
    assert "Download the series (ZIP)" in page
    assert "discharge-letter.pdf (from hospital-disc.zip)" in page
    assert "viewer.exe" in page

    # One image.
    image = series[0].images.first()
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{image.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[128:132] == b"DICM"

    # The whole series, as a ZIP file made on the fly; every image in it, as stored.
    biggest = max(series, key=lambda s: s.images.count())
    response = coordinator_client.get(f"/admin/inquiries/inquiry/series/{biggest.pk}/download/")
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "application/zip"
    assert "no-store" in response["Cache-Control"].split(", ")
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        contents = sorted(archive.read(name) for name in archive.namelist())
    expected = sorted(d.file.read() for d in biggest.images.all())
    assert contents == expected and len(contents) == biggest.images.count()
    downloads = DocumentDownload.objects.filter(inquiry=inquiry, user=coordinator)
    assert downloads.filter(series=biggest, document_name__startswith="Series: ").exists()
    assert downloads.filter(document=image).exists()


def test_a_series_download_needs_the_download_permission(
    sent_disc, coordinator_client, coordinator
):
    coordinator.groups.set([])
    coordinator.user_permissions.clear()
    series = Series.objects.first()
    response = coordinator_client.get(f"/admin/inquiries/inquiry/series/{series.pk}/download/")
    assert response.status_code == 403
    assert not DocumentDownload.objects.exists()


def test_a_folder_chosen_with_the_folder_picker_is_sent_as_one_zip_file(
    client, documents_dir, quarantine_dir, uploads_dir, django_capture_on_commit_callbacks
):
    # What a browser sends for <input webkitdirectory>: every file of the folder, under the
    # field's name, each named by its path (which Django keeps only the last part of).
    # The discharge letter comes first: the folder is still a ZIP file of a disc.
    folder = [SimpleUploadedFile("DISC/A-LETTER.pdf", pdf_bytes(pages=1))] + [
        SimpleUploadedFile(f"DISC/{path.relative_to(DISC)}", path.read_bytes())
        for path in sorted(DISC.rglob("*"))
        if path.is_file()
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[], folder=folder)
    assert response.status_code == 302, response.content.decode()[:3000]
    inquiry = Inquiry.objects.get()
    archive = inquiry.documents.get(parent=None)
    assert archive.detected_type == "zip"
    assert archive.original_name == f"Folder of {len(folder)} files"
    accepted = inquiry.documents.filter(parent=archive, state="accepted")
    assert accepted.count() == len(SCANS) + 1
    assert files_in(quarantine_dir) == files_in(uploads_dir) == []


def test_a_zip_file_is_never_opened_by_the_web_process_only_received(
    client, documents_dir, quarantine_dir, monkeypatch
):
    # The form takes it on its first bytes; it stays in quarantine until a worker opens it.
    from inquiries.documents import pipeline

    monkeypatch.setattr(pipeline, "queue_checks", lambda inquiry: None)
    monkeypatch.setattr("inquiries.views.queue_checks", lambda inquiry: None)
    opened = []
    real = zipfile.ZipFile.__init__

    def watched(self, file, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(file)
        real(self, file, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", watched)
    response = send(client, documents=[disc_zip()])
    assert response.status_code == 302
    assert opened == []
    document = Document.objects.get()
    assert (document.state, document.detected_type) == ("received", "zip")
    assert len(files_in(quarantine_dir)) == 1


# Archives that are attacks, or broken: refused whole, with a sentence, nothing kept.


def _bomb() -> bytes:
    # 64 MB of zeros in 64 KB: a thousand times its size (a real bomb's ratio, if not its
    # size, which the total limit stops anyway).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("IM000001", "w", force_zip64=True) as member:
            block = bytes(16 * 1024 * 1024)
            for _ in range(4):
                member.write(block)
    return buffer.getvalue()


def _with_member(info: zipfile.ZipInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DISC/IM000001", SCANS[0].read_bytes())
        archive.writestr(info, data)
    return buffer.getvalue()


def _symlink() -> bytes:
    info = zipfile.ZipInfo("DISC/IM000002")
    info.create_system = 3
    info.external_attr = (0o120777) << 16
    return _with_member(info, b"/etc/passwd")


def _device() -> bytes:
    info = zipfile.ZipInfo("DISC/IM000002")
    info.create_system = 3
    info.external_attr = (0o020666) << 16
    return _with_member(info)


def _encrypted() -> bytes:
    data = bytearray(zip_of([("IM000001", SCANS[0].read_bytes())], zipfile.ZIP_STORED))
    # The "encrypted" flag, in the local header and in the central directory.
    for marker in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(marker)
        offset = at + (6 if marker == b"PK\x03\x04" else 8)
        data[offset] |= 0x01
    return bytes(data)


def _duplicates() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DISC/IM000001", SCANS[0].read_bytes())
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("DISC/IM000001", SCANS[1].read_bytes())
    return buffer.getvalue()


def _many(settings) -> bytes:
    settings.DOCUMENT_ARCHIVE_MAX_MEMBERS = 20
    return zip_of([(f"IM{n:06d}", SCANS[0].read_bytes()) for n in range(21)])


HOSTILE = {
    "bomb-by-ratio": (lambda settings: _bomb(), "archive_bomb", "would unpack to far more"),
    "bomb-by-total": (
        lambda settings: (
            setattr(settings, "DOCUMENT_ARCHIVE_MAX_UNPACKED_BYTES", 100_000)
            or zip_of([(p.name, p.read_bytes()) for p in SCANS[:60]])
        ),
        "archive_too_large",
        "Unpacked, “disc.zip” would be larger than",
    ),
    "bomb-by-count": (_many, "archive_too_many", "holds more than 20 files"),
    "absolute-path": (
        lambda settings: _with_member(zipfile.ZipInfo("/etc/cron.d/evil")),
        "archive_unsafe",
        "could write outside the folder",
    ),
    "windows-absolute-path": (
        lambda settings: _with_member(zipfile.ZipInfo("C:\\Windows\\evil.dll")),
        "archive_unsafe",
        "could write outside the folder",
    ),
    "climbs-out": (
        lambda settings: _with_member(zipfile.ZipInfo("DISC/../../evil")),
        "archive_unsafe",
        "could write outside the folder",
    ),
    "symlink": (lambda settings: _symlink(), "archive_unsafe", "(or links to other files)"),
    "device": (lambda settings: _device(), "archive_unsafe", "could write outside"),
    "duplicate-names": (lambda settings: _duplicates(), "archive_duplicates", "two files of"),
    "encrypted": (lambda settings: _encrypted(), "archive_encrypted", "locked with a password"),
    "damaged": (
        lambda settings: zip_of(disc_members())[:-300],
        "archive_damaged",
        "a damaged or incomplete ZIP file",
    ),
    "nothing-in-it": (
        lambda settings: zip_of([("readme.txt", b"Thank you for choosing our hospital.")]),
        "",
        "",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=str)
def test_a_hostile_or_broken_archive_is_refused_whole_and_leaves_nothing(
    case,
    client,
    settings,
    documents_dir,
    quarantine_dir,
    uploads_dir,
    django_capture_on_commit_callbacks,
):
    build, code, sentence = HOSTILE[case]
    data = build(settings)
    upload = SimpleUploadedFile("disc.zip", data, content_type="application/zip")
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[upload])
    assert response.status_code == 302
    archive = Document.objects.get(parent=None)
    if case == "nothing-in-it":
        code, sentence = "archive_nothing", "We found no scan, PDF or photo in “disc.zip”."
    assert (archive.state, archive.refusal) == ("refused", code)
    assert not Document.objects.filter(parent=archive).exists()
    assert not Series.objects.exists()
    html = client.get(response.url).content.decode()
    assert sentence in html.replace("&#x27;", "'")
    assert files_in(documents_dir) == files_in(quarantine_dir) == files_in(uploads_dir) == []


def test_an_archive_inside_an_archive_is_refused_with_a_sentence_the_rest_kept(
    client, documents_dir, django_capture_on_commit_callbacks
):
    inner = zip_of([("IM000001", SCANS[0].read_bytes())])
    data = zip_of([("DISC/IM000001", SCANS[0].read_bytes()), ("DISC/more-scans.zip", inner)])
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[SimpleUploadedFile("disc.zip", data)])
    members = Document.objects.filter(parent__isnull=False)
    states = dict(members.values_list("original_name", "state"))
    assert states == {"IM000001": "accepted", "more-scans.zip": "refused"}
    html = client.get(response.url).content.decode()
    # Counted as the family counts files: the two in the disc.
    assert "We could not accept 1 of your 2 files" in html
    assert "“more-scans.zip” is a ZIP file inside another one" in html
    assert "Please send it on its own" in html
    assert len(files_in(documents_dir)) == 1


def test_a_scan_that_brings_the_unpacking_down_costs_only_that_scan(
    client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks, monkeypatch
):
    # The unpacking child checks the disc's scans itself; should it die (a decoder
    # crashing on one scan), the disc is unpacked again and each scan checked alone.
    from inquiries.documents import unpacking

    real = unpacking._unpack
    first = []

    def crashing_once(document, source, *, check_scans):
        if check_scans and not first:
            first.append(True)
            from inquiries.documents.sandbox import SandboxFailed

            raise SandboxFailed("crash")
        return real(document, source, check_scans=check_scans)

    monkeypatch.setattr(unpacking, "_unpack", crashing_once)
    scans = [(f"DISC/{p.name}", p.read_bytes()) for p in SCANS[:3]]
    with django_capture_on_commit_callbacks(execute=True):
        send(client, documents=[SimpleUploadedFile("disc.zip", zip_of(scans))])
    members = Document.objects.filter(parent__isnull=False)
    assert first == [True]
    assert sorted(members.values_list("state", flat=True)) == ["accepted"] * 3
    assert Series.objects.exists()
    assert len(files_in(documents_dir)) == 3
    assert files_in(quarantine_dir) == []


# Files attached to a PDF: taken out, and checked as documents of their own


def _pdf_with_attachments(*attachments: tuple[str, bytes]) -> bytes:
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages=1))))
    for name, data in attachments:
        writer.add_attachment(name, data)
    # Compressed, as PDF writers store attachments.
    for number in range(len(writer._objects)):
        stream = writer._objects[number]
        if getattr(stream, "get", None) and stream.get("/Type") == "/EmbeddedFile":
            writer._objects[number] = stream.flate_encode()
            writer._objects[number][NameObject("/Type")] = NameObject("/EmbeddedFile")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_file_attached_to_a_pdf_is_taken_out_and_checked_on_its_own(
    client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks
):
    from .sample_files import jpeg_bytes

    letter = _pdf_with_attachments(
        ("scan-of-the-referral.jpg", jpeg_bytes(400, 300)), ("setup.exe", WINDOWS_EXE)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[SimpleUploadedFile("referral.pdf", letter)])
    referral = Document.objects.get(parent=None)
    assert (referral.state, referral.content_type) == ("accepted", "application/pdf")
    taken_out = {d.original_name: d for d in Document.objects.filter(parent=referral)}
    assert taken_out["scan-of-the-referral.jpg"].state == "accepted"
    assert taken_out["scan-of-the-referral.jpg"].content_type == "image/jpeg"
    refused = taken_out["setup.exe"]
    assert (refused.state, refused.refusal) == ("refused", "attachment_type")
    # The rebuilt PDF carries no attachment; the program is nowhere.
    stored = files_in(documents_dir)
    assert len(stored) == 2 and not any(b"MZ\x90" in path.read_bytes() for path in stored)
    assert b"/EmbeddedFile" not in referral.file.read()
    assert files_in(quarantine_dir) == []
    html = client.get(response.url).content.decode()
    assert "Files attached to it, each checked on its own:" in html
    assert "scan-of-the-referral.jpg" in html
    assert "A file attached to your PDF, “setup.exe”, is of a kind we cannot accept" in html


def test_a_member_larger_than_allowed_is_refused_alone(
    client, settings, documents_dir, django_capture_on_commit_callbacks
):
    settings.DOCUMENT_ARCHIVE_MEMBER_MAX_BYTES = 3_000
    big, small = (
        max(SCANS, key=lambda p: p.stat().st_size),
        min(SCANS, key=lambda p: p.stat().st_size),
    )
    assert big.stat().st_size > 3_000 > small.stat().st_size
    data = zip_of([("DISC/IM000001", small.read_bytes()), ("DISC/IM000002", big.read_bytes())])
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[SimpleUploadedFile("disc.zip", data)])
    members = Document.objects.filter(parent__isnull=False)
    assert dict(members.values_list("original_name", "refusal")) == {
        "IM000001": "",
        "IM000002": "too_large_member",
    }
    html = client.get(response.url).content.decode()
    assert "“IM000002” is larger than 0.00286102 MB, more than we take out of a ZIP file" in html
    assert len(files_in(documents_dir)) == 1


def test_attachments_past_their_total_are_refused_and_a_pdf_from_a_disc_keeps_its_own(
    client, settings, documents_dir, quarantine_dir, django_capture_on_commit_callbacks
):
    settings.DOCUMENT_MAX_BYTES = 200_000
    # Three attachments of 90 KB each, which compress to little: the third would pass the
    # 200 KB that all of them together may come to, though the letter is far smaller.
    parts = [(f"scan-{n}.pdf", pdf_bytes(pages=1) + bytes(90_000)) for n in range(3)]
    letter = _pdf_with_attachments(*parts)
    assert len(letter) < 100_000
    with django_capture_on_commit_callbacks(execute=True):
        send(client, documents=[SimpleUploadedFile("referral.pdf", letter)])
    referral = Document.objects.get(parent=None)
    refusals = dict(referral.members.values_list("original_name", "refusal"))
    assert refusals == {"scan-0.pdf": "", "scan-1.pdf": "", "scan-2.pdf": "too_large"}
    Document.objects.all().delete()

    disc = zip_of([("DISC/REPORT/referral.pdf", _pdf_with_attachments(parts[0]))])
    with django_capture_on_commit_callbacks(execute=True):
        send(client, documents=[SimpleUploadedFile("disc.zip", disc)])
    letter = Document.objects.get(original_name="referral.pdf", state="accepted")
    assert not letter.members.exists()
