"""ZIP files, a scan disc's above all: opened in the sandbox, every member taken out by the
archive's own directory, never by a path on disk.

A disc is a folder: DICOMDIR (its index), hundreds of scans named like IM000001 with no
extension, and often a viewer program. The archive is refused whole, before a member is
read, if it could only be an attack or cannot be read: too many members, more unpacked
bytes than allowed or than any real disc unpacks to for its size, a password, names that
climb out of a folder or are absolute, links, devices, two members of the same name.
Then each member is sent back to the worker as one frame (in parts, so that neither side
holds more than a part at a time):

- a scan, checked and rewritten here exactly as a DICOM file sent alone is (one sandbox for
  hundreds of scans: a child per scan would take minutes), with its series;
- a PDF, photo or TIFF, as it is, to be checked in a sandbox of its own;
- a member that is no record (the index, the viewer, system files), named, never stored;
- a member refused, with its reason.

Should this child fail outright (a scan that crashes its decoder), the worker unpacks the
archive again without checking any scan here, and each is then checked alone.
"""

import re
import stat
import zipfile

from . import dicom, types
from .sandbox import Refused

# Members sent back in parts of at most this many bytes.
PART_BYTES = 4 * 1024 * 1024
# A Windows drive ("C:") or a UNC path.
ABSOLUTE = re.compile(r"^([a-zA-Z]:|[/\\])")
# What discs and computers put beside the records: left out without a word of warning.
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "autorun.inf"}
PROGRAM_EXTENSIONS = {
    "exe", "dll", "com", "bat", "cmd", "msi", "inf", "sys", "ocx", "cpl", "scr", "vbs", "js",
    "jar", "ps1", "sh", "app", "dylib", "so", "reg", "lnk", "hta", "wsf", "pif",
}  # fmt: skip
NESTED = {"zip", "archive"}


def prepare() -> None:
    import codecs

    import puremagic  # noqa: F401

    # Member names not marked as UTF-8 are in the old DOS code page, whose codec Python
    # loads on first use.
    codecs.lookup("cp437")
    dicom.prepare()


def child(kind: str, source, options: dict, out) -> dict:
    try:
        archive = zipfile.ZipFile(source)
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise Refused("archive_damaged") from None
    _check_whole(members, source.seek(0, 2), options)
    sent = {"members": len(members), "unpacked": sum(info.file_size for info in members)}
    for index, info in enumerate(members):
        _send_member(archive, index, info, options, out)
    return sent


def _check_whole(members: list, size: int, options: dict) -> None:
    if len(members) > options["max_members"]:
        raise Refused("archive_too_many")
    if any(info.flag_bits & 0x1 for info in members):
        raise Refused("archive_encrypted")
    seen = set()
    for info in members:
        name = info.filename
        mode = info.external_attr >> 16
        parts = re.split(r"[/\\]", name)
        file_type = stat.S_IFMT(mode)
        if ABSOLUTE.match(name) or ".." in parts or "\0" in name:
            raise Refused("archive_unsafe")
        # Made on Unix (create_system 3), the type is in the upper bits: only plain files.
        if info.create_system == 3 and file_type and file_type != stat.S_IFREG:
            raise Refused("archive_unsafe")
        folded = "/".join(part for part in parts if part not in ("", ".")).casefold()
        if folded in seen:
            raise Refused("archive_duplicates")
        seen.add(folded)
    unpacked = sum(info.file_size for info in members)
    if unpacked > options["max_unpacked"]:
        raise Refused("archive_too_large")
    # No real disc unpacks to a hundred times its size; a zip bomb unpacks to thousands.
    if unpacked > 16 * 1024 * 1024 and unpacked > options["max_ratio"] * max(size, 1):
        raise Refused("archive_bomb")


def _shown_name(info) -> str:
    return types.sanitise_filename(info.filename)


def _left_out_because(info) -> str:
    parts = [part for part in re.split(r"[/\\]", info.filename) if part]
    name = parts[-1].casefold() if parts else ""
    if "__macosx" in (part.casefold() for part in parts) or name.startswith("._"):
        return "system"
    if name in SYSTEM_FILES:
        return "program" if name == "autorun.inf" else "system"
    if name.rpartition(".")[2] in PROGRAM_EXTENSIONS and "." in name:
        return "program"
    return ""


def _send_member(archive, index: int, info, options: dict, out) -> None:
    name = _shown_name(info)
    frame = {"member": index, "name": name}
    why = _left_out_because(info)
    if why:
        out.send(frame | {"left_out": why})
        return
    if info.file_size > options["max_member_bytes"]:
        out.send(frame | {"refused": "too_large_member"})
        return
    try:
        data = _read(archive, info)
    except Refused as refused:
        out.send(frame | {"refused": refused.code})
        return
    if not data:
        out.send(frame | {"left_out": "empty"})
        return
    # Most members of a disc are scans, which say so at byte 128 (a disc's index is one too,
    # and is told apart by its class).
    head = data[: types.HEAD_BYTES]
    if head[128:132] == b"DICM" and not types.DICOMDIR_CLASS.search(head, 128):
        detected = types.Detected("dicom")
    else:
        detected = types.detect(name, head)
    if detected.kind is None:
        why = {"dicomdir": "index", "program": "program"}.get(detected.looks_like, "other")
        if detected.looks_like in NESTED:
            out.send(frame | {"refused": "archive_nested"})
        else:
            out.send(frame | {"left_out": why})
        return
    if detected.kind == "zip":
        out.send(frame | {"refused": "archive_nested"})
        return
    if detected.kind != "dicom" or not options["check_scans"]:
        send_parts(out, frame | {"kind": detected.kind, "raw": True}, data)
        return
    try:
        header, rebuilt = dicom.rebuilt(data, options)
    except Refused as refused:
        out.send(frame | {"kind": "dicom", "refused": refused.code})
        return
    except MemoryError:
        out.send(frame | {"kind": "dicom", "refused": "too_complex"})
        return
    except Exception:  # whatever a decoder raises on a broken scan means the same
        out.send(frame | {"kind": "dicom", "refused": "damaged"})
        return
    if header.get("pdf_inside"):
        # A PDF wrapped in a scan: checked as the PDF it is, in a sandbox of its own.
        send_parts(out, frame | {"kind": "pdf", "raw": True}, rebuilt)
        return
    send_parts(out, frame | {"kind": "dicom", "dicom": header}, rebuilt)


def _read(archive, info) -> bytes:
    """The member's bytes, never more than its directory entry declares."""
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise Refused("damaged") from None
    except RuntimeError:  # a member locked with a password that the flags did not show
        raise Refused("archive_encrypted") from None
    if len(data) != info.file_size:
        raise Refused("damaged")
    return data


def send_parts(out, header: dict, data: bytes) -> None:
    size = len(data)
    for start in range(0, max(size, 1), PART_BYTES):
        last = start + PART_BYTES >= size
        out.send(header | {"size": size, "last": last}, data[start : start + PART_BYTES])
