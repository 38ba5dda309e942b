"""Every sentence a family reads about a file, in one place: what went wrong, and what they
can do about it from a phone. Never a developer's word, never the file's contents."""

from django.conf import settings

MB = 1024 * 1024

REFUSALS = {
    "type": "“{name}” is not a type of file we can accept. Please send PDF files, photos "
    "(JPEG, PNG or HEIC), scans (TIFF or DICOM), or a ZIP file of a scan disc.",
    "looks_like": "“{name}” looks like {looks_like}, which we cannot accept. {advice}",
    "empty": "“{name}” is empty. Please choose it again, or another copy of it.",
    "too_large": "“{name}” is larger than {file_limit}. Please send a smaller copy, for "
    "example a PDF saved at a lower quality.",
    "too_large_archive": "“{name}” is larger than {archive_limit}, more than a scan disc holds. "
    "Please send the most recent scans first; we can ask for the rest later.",
    "too_large_member": "“{name}” is larger than {member_limit_size}, more than we take out of a "
    "ZIP file. Please ask the hospital for a copy of this scan on its own.",
    "too_large_total": "Together your files are larger than {total_limit}, so “{name}” was not "
    "received. Please send fewer files now; we can ask for the rest later.",
    "mismatch": "“{name}” does not look like {label}, although its name says so. Please send "
    "the original file, or a photo of each page.",
    "encrypted": "“{name}” asks for a password before it opens. Please send a copy that opens "
    "without one, or a photo of each page.",
    "damaged": "“{name}” seems to be damaged or incomplete. Please save it again and choose it "
    "again, or send a photo of each page.",
    "too_many_pixels": "“{name}” is too large a picture for us to open safely (more than "
    "{pixel_limit:,} pixels). Please send a smaller copy, for example a photo taken at a lower "
    "resolution.",
    "too_many_pages": "“{name}” has more than {page_limit:,} pages. Please send the parts that "
    "matter most, or split it into smaller files.",
    "too_complex": "“{name}” is built in a way that would take too long or too much memory to "
    "open safely. Please send a photo of each page instead, or ask for a new copy of it.",
    "executable_preamble": "“{name}” carries something other than a scan at its start, which "
    "we do not accept for safety. Please copy the scan again from the hospital’s disc, or ask "
    "the hospital for a new copy.",
    "archive_damaged": "“{name}” seems to be a damaged or incomplete ZIP file. Please make the "
    "ZIP file again and choose it again.",
    "archive_encrypted": "“{name}” is locked with a password. Please make a new ZIP file "
    "without a password.",
    "archive_too_many": "“{name}” holds more than {member_limit:,} files. Please send the scans "
    "in several smaller ZIP files, or the most recent ones first.",
    "archive_too_large": "Unpacked, “{name}” would be larger than {unpacked_limit} (with the "
    "other ZIP files of this inquiry). Please send the most recent scans first; we can ask "
    "for the rest later.",
    "archive_bomb": "“{name}” would unpack to far more than its own size, as no real disc does, "
    "so we did not open it. Please make the ZIP file again from the disc.",
    "archive_unsafe": "“{name}” holds files named in a way that could write outside the "
    "folder it is unpacked in (or links to other files), which we do not accept for safety. "
    "Please make the ZIP file again from the disc’s folder.",
    "archive_duplicates": "“{name}” holds two files of the same name, so we cannot tell which "
    "one is meant. Please make the ZIP file again from the disc’s folder.",
    "archive_nested": "“{name}” is a ZIP file inside another one; we do not open those. Please "
    "send it on its own, with the same form.",
    "archive_nothing": "We found no scan, PDF or photo in “{name}”. If it is a copy of a scan "
    "disc, please make the ZIP file from the whole disc.",
    "attachment_type": "A file attached to your PDF, “{name}”, is of a kind we cannot accept, "
    "so we left it out; the PDF itself was received. If that file matters, please send it on "
    "its own, as a PDF or a photo.",
    "check_failed": "We could not finish checking “{name}”. Please send it again, or another "
    "copy of it.",
}

# What a file we do not accept looks like, and what the family can do instead.
LOOKS_LIKE = {
    "word": ("a Word or text document", "Please save it as a PDF (“Save as” or “Export”, then "
             "PDF) and send the PDF, or send a photo of each page."),
    "spreadsheet": ("a spreadsheet", "Please save it as a PDF and send the PDF, or send a "
                    "photo of each page."),
    "presentation": ("a presentation", "Please save it as a PDF and send the PDF."),
    "office": ("an office document", "Please save it as a PDF and send the PDF, or send a "
               "photo of each page."),
    "web_page": ("a web page", "Please download the report from the hospital’s website as a "
                 "PDF, or send a screenshot of it."),
    "program": ("a program", "We never accept programs. If it came on a scan disc, you do not "
                "need it: please send the disc’s folder as a ZIP file, or its scans."),
    "archive": ("an archive that is not a ZIP file", "Please unpack it and send what is "
                "inside, or make a ZIP file of it."),
    "video": ("a video", "Please send a photo or a screenshot instead."),
    "sound": ("a sound recording", "Please write what matters in your question instead, or "
              "send the report it is about."),
    "picture": ("a kind of picture we cannot open", "Please send a screenshot of it, or save "
                "it as JPEG or PNG."),
    "email": ("a saved email", "Please send the report it came with instead, or a "
              "screenshot of the email."),
    "dicomdir": ("the index of a scan disc (DICOMDIR), not a scan itself", "Please send the "
                 "whole folder of the disc, as a ZIP file or by choosing the folder."),
}  # fmt: skip

LABELS = {
    "pdf": "a PDF",
    "jpeg": "a JPEG photo",
    "png": "a PNG image",
    "heic": "a HEIC photo",
    "dicom": "a DICOM scan",
    "tiff": "a TIFF scan",
    "zip": "a ZIP file",
}


def refusal(code: str, name: str, label: str = "", looks_like: str = "") -> str:
    if code == "type" and looks_like in LOOKS_LIKE:
        code = "looks_like"
    looks, advice = LOOKS_LIKE.get(looks_like, ("", ""))
    # A code recorded by an older version, say: the family still reads a sentence.
    return REFUSALS.get(code, REFUSALS["damaged"]).format(
        name=name,
        label=label,
        looks_like=looks,
        advice=advice,
        member_limit=settings.DOCUMENT_ARCHIVE_MAX_MEMBERS,
        unpacked_limit=f"{settings.DOCUMENT_ARCHIVE_MAX_UNPACKED_BYTES / MB / 1024:g} GB",
        file_limit=f"{settings.DOCUMENT_MAX_BYTES / MB:g} MB",
        total_limit=f"{settings.DOCUMENTS_MAX_TOTAL_BYTES / MB:g} MB",
        archive_limit=f"{settings.DOCUMENT_ARCHIVE_MAX_BYTES / MB:g} MB",
        member_limit_size=f"{settings.DOCUMENT_ARCHIVE_MEMBER_MAX_BYTES / MB:g} MB",
        pixel_limit=settings.DOCUMENT_IMAGE_MAX_PIXELS,
        page_limit=settings.DOCUMENT_PDF_MAX_PAGES,
    )


# What was in a ZIP file that is no record, left out and never stored.
LEFT_OUT = {
    "index": ("the disc’s index (DICOMDIR)", "copies of the disc’s index (DICOMDIR)"),
    "program": ("program file (the disc’s viewer, say)", "program files (the disc’s viewer, say)"),
    "system": ("system file", "system files"),
    "empty": ("empty file", "empty files"),
    "other": ("other file that is no record", "other files that are no records"),
}


def _count(number: int, one: str, many: str) -> str:
    return f"1 {one}" if number == 1 else f"{number:,} {many}"


def archive_summary(images: int, series: int, others: int, left_out: dict[str, int]) -> str:
    """What became of a ZIP file, for the family: "312 images in 3 series received
    safely. Left out, as no records: the disc’s index (DICOMDIR), 14 program files…"."""
    kept = []
    if images:
        kept.append(f"{_count(images, 'image', 'images')} in {_count(series, 'series', 'series')}")
    if others:
        kept.append(_count(others, "other file", "other files"))
    sentence = f"{' and '.join(kept)} taken out of it." if kept else "Nothing in it was kept."
    gone = []
    for why, (one, many) in LEFT_OUT.items():
        number = left_out.get(why, 0)
        if number:
            gone.append(one if why == "index" and number == 1 else _count(number, one, many))
    if gone:
        sentence += f" Left out, as they are not medical records: {', '.join(gone)}."
    return sentence
