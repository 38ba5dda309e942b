"""One worker's check of one ZIP file, for bench/archives.py: run as a process of its own
(the site's settings, from the environment it is given) so that its peak memory is its own.

Usage: archive_worker.py <zip file>. Puts the file in quarantine as a family's inquiry
would, resets the process's peak memory, checks it as a worker does (the sandbox, the
store, the rows), and prints JSON: seconds, peak growth in MB, images accepted.
"""

import json
import os
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cancerfax.settings")

import django  # noqa: E402

django.setup()

from django.core.files import File  # noqa: E402
from django.utils import timezone  # noqa: E402

from inquiries.documents.pipeline import check  # noqa: E402
from inquiries.models import Document, Inquiry, quarantine_path, quarantine_storage  # noqa: E402


def peak_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))


def main(path: str) -> None:
    inquiry = Inquiry.objects.create(
        submission_id=__import__("uuid").uuid4(),
        writer="patient",
        patient_name="Bench Example",
        birth_year=1970,
        country="GB",
        email="bench@example.org",
        diagnosis="other",
        treatment_so_far="None yet.",
        question="Bench.",
        language="en",
        consent_version="bench",
        consent_text="bench",
        consent_given_at=timezone.now(),
    )
    with open(path, "rb") as source:
        name = quarantine_storage.save(quarantine_path(), File(source))
    document = Document.objects.create(
        inquiry=inquiry,
        original_name="disc.zip",
        detected_type="zip",
        received_size=os.path.getsize(path),
        quarantine_name=name,
    )
    # Everything a check loads, loaded once, as in a worker that has been running.
    Document.objects.filter(pk=document.pk).exists()
    Path("/proc/self/clear_refs").write_text("5")
    before = peak_kib()
    started = time.perf_counter()
    check(document.pk)
    seconds = time.perf_counter() - started
    growth = (peak_kib() - before) / 1024
    document.refresh_from_db()
    accepted = document.members.filter(state="accepted").count()
    # The sandbox that unpacked it, bounded by its own limit: its peak, for the record.
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": seconds, "growth_mb": growth, "accepted": accepted, "child_mb": child_mb}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
