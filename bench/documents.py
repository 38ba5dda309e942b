"""`make bench`, its second half: what checking and rebuilding families' files costs.

- PDF pages rebuilt a second by the sandbox (a child with its limits, PDFium, JPEG pages,
  a new PDF), beside the same pages rendered by PDFium in this very process at the same
  resolution, which is the limit of the renderer itself;
- the size of a rebuilt PDF against its original, for a typed report and a scanned one;
- on `make serve` (nginx, 4 gunicorn workers, 2 background workers): the guide's p99
  latency while the workers chew on ten pixel and decompression bombs, beside its p99 just
  before, with nginx's and gunicorn's memory before and after;
- the guide's slowest answer while twenty clients trickle their bodies, through `make
  serve`'s nginx, beside gunicorn alone as it was before nginx.

Side by side in one run; prints a table and adds it to bench/results.json.
"""

import io
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cancerfax.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

import pypdfium2 as pdfium  # noqa: E402
from django.conf import settings  # noqa: E402
from PIL import Image  # noqa: E402
from tables import as_records, print_table  # noqa: E402

from inquiries.documents.pipeline import rebuild  # noqa: E402
from tests.sample_files import ten_bombs  # noqa: E402
from tests.servers import (  # noqa: E402
    GUIDES,
    Family,
    beside_the_sandboxes,
    make_serve,
    postgres_for_the_site,
    prepare,
    sandbox_children,
    slow_clients,
    start_gunicorn,
    web_memory,
    wrk,
)

GUIDE = "/guides/gene-therapy-for-leukemia/"
PAGES = 20
ROUNDS = 3

WORDS = (
    "bone marrow aspirate shows hypercellular marrow with blasts flow cytometry CD19 CD10 "
    "CD34 positive minimal residual disease negative cytogenetics normal karyotype"
).split()


def typed_report(pages: int) -> bytes:
    """A report as a hospital system writes it: pages of small print in a standard font."""
    rng = random.Random(3)  # noqa: S311 - the same report every run
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * n} 0 R" for n in range(pages)).encode()
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages))
    font = 3 + 2 * pages
    for n in range(pages):
        lines = [" ".join(rng.choice(WORDS) for _ in range(14)) for _ in range(60)]
        text = (
            b"BT /F1 9 Tf 50 800 Td 11 TL "
            + b" ".join(b"(%s) '" % line.encode() for line in lines)
            + b" ET"
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * n, font)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return assemble(objects)


def assemble(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def scanned_report(pages: int) -> bytes:
    """A report as a scanner or a phone app writes it: a grey photo of each page."""
    rng = random.Random(5)  # noqa: S311 - the same report every run
    pictures = []
    for _ in range(pages):
        page = Image.new("L", (1240, 1754), 235)
        noise = Image.frombytes("L", (1240, 1754), rng.randbytes(1240 * 1754)).point(
            lambda value: 200 + value // 8
        )
        pictures.append(Image.blend(page, noise, 0.3).convert("RGB"))
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, "PDF", save_all=True, append_images=pictures[1:], resolution=150, quality=75
    )
    return buffer.getvalue()


def in_process_render(data: bytes) -> None:
    document = pdfium.PdfDocument(data)
    for page in document:
        page.render(scale=settings.DOCUMENT_PDF_DPI / 72).to_pil()
    document.close()


def sandbox_rebuild(data: bytes) -> int:
    with tempfile.TemporaryFile() as source:
        source.write(data)
        rebuilt = rebuild("pdf", source)
    with rebuilt.content:
        return rebuilt.content.seek(0, 2)


def timed(work, data: bytes) -> float:
    started = time.perf_counter()
    work(data)
    return time.perf_counter() - started


def rebuilding() -> dict:
    figures = {}
    for name, data in (("typed", typed_report(PAGES)), ("scanned", scanned_report(PAGES))):
        sandboxed, in_process = [], []
        for _ in range(ROUNDS):
            in_process.append(timed(in_process_render, data))
            sandboxed.append(timed(sandbox_rebuild, data))
        figures[name] = {
            "pages": PAGES,
            "sandbox_pages_per_s": PAGES / statistics.median(sandboxed),
            "in_process_pages_per_s": PAGES / statistics.median(in_process),
            "original_kb": len(data) / 1024,
            "rebuilt_kb": sandbox_rebuild(data) / 1024,
        }
    return figures


def slowest_answer_with_slow_clients(url: str) -> float:
    slowest = 0.0
    with slow_clients(url, 20):
        for _ in range(10):
            started = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 10) as c:
                    c.sendall(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % GUIDE.encode())
                    while c.recv(65536):
                        pass
            except OSError:
                pass  # counted as the time it took to fail
            slowest = max(slowest, time.perf_counter() - started)
    return slowest


def under_load() -> dict:
    folder = Path(tempfile.mkdtemp(prefix="cancerfax-bench-documents-"))
    with ExitStack() as stack:
        postgres = postgres_for_the_site(stack)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/bin",
            "DJANGO_SECRET_KEY": "bench-only-key-not-secret",
            "DATABASE_URL": postgres.url("cancerfax"),
            "DATA_DIR": str(folder / "data"),
            "INQUIRY_RATE_LIMIT": "1000000/h",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "4",
        }
        prepare({**env, "DJANGO_DEBUG": "0"}, ["migrate", "-v0"], GUIDES)
        site = make_serve(stack, env, folder / "serve.log", workers=2)
        guide = site + GUIDE
        run_dir = folder / "data" / "run"
        wrk(guide)  # every worker has the page
        memory_before = web_memory(run_dir)
        bombs = ten_bombs()
        for start in range(0, len(bombs), 5):
            if Family(site).send(bombs[start : start + 5]).status != 302:
                raise RuntimeError("the bombs were not taken")
        sent = time.monotonic()
        while not sandbox_children():
            time.sleep(0.05)
        # Readers in turns with the bombs' sandboxes paused and going: four at once (wrk),
        # and one after the other.
        idle, busy = beside_the_sandboxes(lambda: [wrk(guide, seconds=1)[1]], rounds=10)
        one_idle, one_busy = beside_the_sandboxes(lambda: [one_reader_p99(guide)], rounds=10)
        memory_after = web_memory(run_dir)
        with psycopg.connect(postgres.url("cancerfax")) as connection:
            while connection.execute(
                "SELECT count(*) FROM inquiries_document WHERE state IN ('received', 'checking')"
            ).fetchone()[0]:
                time.sleep(0.5)
            outcomes = connection.execute(
                "SELECT state, refusal, count(*) FROM inquiries_document GROUP BY 1, 2"
            ).fetchall()
        all_ended = time.monotonic() - sent
        with_nginx = slowest_answer_with_slow_clients(site)
        with ExitStack() as bare:
            gunicorn, _ = start_gunicorn(bare, {**env, "DJANGO_DEBUG": "0"}, folder / "bare.log")
            gunicorn_alone = slowest_answer_with_slow_clients(gunicorn)
    return {
        "idle_p99_ms": statistics.median(idle),
        "bombs_p99_ms": statistics.median(busy),
        "turns": [len(idle), len(busy)],
        "one_reader_idle_p99_ms": statistics.median(one_idle) if one_idle else None,
        "one_reader_bombs_p99_ms": statistics.median(one_busy) if one_busy else None,
        "web_memory_before_mb": memory_before / 2**20,
        "web_memory_after_mb": memory_after / 2**20,
        "bombs_all_ended_s": all_ended,
        "bomb_outcomes": [list(row) for row in outcomes],
        "slow_clients_slowest_s_nginx": with_nginx,
        "slow_clients_slowest_s_gunicorn_alone": gunicorn_alone,
    }


def one_reader_p99(url: str, count: int = 200) -> float:
    """p99 in ms of `count` requests one after the other."""
    import urllib3

    http = urllib3.PoolManager(retries=False, timeout=10)
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        http.request("GET", url, headers={"Accept-Encoding": "gzip"})
        seconds.append(time.perf_counter() - started)
    return statistics.quantiles(seconds, n=100)[98] * 1000


def rows(figures: dict) -> list[tuple[str, str, str, str, str]]:
    typed, scanned, load = figures["typed"], figures["scanned"], figures["load"]

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    def speed(kind: dict) -> tuple[str, str]:
        return (
            f"{kind['sandbox_pages_per_s']:.1f} vs {kind['in_process_pages_per_s']:.1f} pages/s",
            f"{kind['sandbox_pages_per_s'] / kind['in_process_pages_per_s']:.2f}",
        )

    def size(kind: dict) -> tuple[str, str]:
        return (
            f"{kind['rebuilt_kb']:.0f} vs {kind['original_kb']:.0f} KB",
            f"{kind['rebuilt_kb'] / kind['original_kb']:.2f}",
        )

    def one_reader(load: dict) -> tuple[str, str]:
        idle, busy = load["one_reader_idle_p99_ms"], load["one_reader_bombs_p99_ms"]
        if not (idle and busy):
            return ("the bombs ended first", "")
        return (f"{busy:.1f} vs {idle:.1f} ms", f"{busy / idle:.2f}")

    growth = load["web_memory_after_mb"] - load["web_memory_before_mb"]
    ratio = load["bombs_p99_ms"] / load["idle_p99_ms"]
    return [
        ("Typed report rebuilt in the sandbox vs rendered in-process", *speed(typed), "", ""),
        ("Scanned report rebuilt in the sandbox vs rendered in-process", *speed(scanned), "", ""),
        ("Typed report, rebuilt PDF vs original", *size(typed), "", ""),
        ("Scanned report, rebuilt PDF vs original", *size(scanned), "", ""),
        ("Guide p99, four readers at once, bombs being checked vs paused",
         f"{load['bombs_p99_ms']:.1f} vs {load['idle_p99_ms']:.1f} ms", f"{ratio:.2f}",
         "≤ 2", verdict(ratio <= 2)),
        ("Guide p99, one reader at a time, bombs being checked vs paused",
         *one_reader(load), "", ""),
        ("nginx and gunicorn memory, after the bombs vs before",
         f"{load['web_memory_after_mb']:.0f} vs {load['web_memory_before_mb']:.0f} MB",
         f"+{growth:.1f} MB", "< +50 MB", verdict(growth < 50)),
        ("Ten bombs, all refused after", f"{load['bombs_all_ended_s']:.0f} s", "", "", ""),
        ("Slowest guide answer, 20 slow clients: make serve vs gunicorn alone",
         f"{load['slow_clients_slowest_s_nginx']:.2f} vs "
         f"{load['slow_clients_slowest_s_gunicorn_alone']:.2f} s", "", "< 1 s",
         verdict(load["slow_clients_slowest_s_nginx"] < 1)),
    ]  # fmt: skip


def main() -> int:
    figures = {**rebuilding(), "load": under_load()}
    table = rows(figures)
    print_table(table)
    out = ROOT / "bench" / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["documents"] = {"figures": figures, "table": as_records(table)}
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(row[-1] != "FAIL" for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
