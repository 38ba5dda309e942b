"""Every sentence a family reads about a file, in one place: what went wrong, and what they
can do about it from a phone. Never a developer's word, never the file's contents."""

from django.conf import settings

MB = 1024 * 1024

REFUSALS = {
    "type": "“{name}” is not a type we can accept. Please send PDF, JPEG, PNG, HEIC or DICOM "
    "files.",
    "empty": "“{name}” is empty. Please choose it again, or another copy of it.",
    "too_large": "“{name}” is larger than {file_limit}. Please send a smaller copy, for "
    "example a PDF saved at a lower quality.",
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
    "check_failed": "We could not finish checking “{name}”. Please send it again, or another "
    "copy of it.",
}

LABELS = {
    "pdf": "a PDF",
    "jpeg": "a JPEG photo",
    "png": "a PNG image",
    "heic": "a HEIC photo",
    "dicom": "a DICOM scan",
}


def refusal(code: str, name: str, label: str = "") -> str:
    # A code recorded by an older version, say: the family still reads a sentence.
    return REFUSALS.get(code, REFUSALS["damaged"]).format(
        name=name,
        label=label,
        file_limit=f"{settings.DOCUMENT_MAX_BYTES / MB:g} MB",
        total_limit=f"{settings.DOCUMENTS_MAX_TOTAL_BYTES / MB:g} MB",
        pixel_limit=settings.DOCUMENT_IMAGE_MAX_PIXELS,
        page_limit=settings.DOCUMENT_PDF_MAX_PAGES,
    )
