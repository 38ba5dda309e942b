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
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cancerfax.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

import pypdfium2 as pdfium  # noqa: E402
from django.conf import settings  # noqa: E402
from PIL import Image  # noqa: E402

from inquiries.documents.pipeline import rebuild  # noqa: E402
from tests.sample_files import (  # noqa: E402
    big_png_bytes,
    deflated_dicom_bomb,
    progressive_jpeg_with_scans,
)
from tests.servers import Family, PostgresServer, make_serve, manage, start_gunicorn  # noqa: E402

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


def wrk_p99(url: str, seconds: int = 5) -> float:
    result = subprocess.run(
        ["wrk", "-t2", "-c4", f"-d{seconds}s", "--latency", "-H", "Accept-Encoding: gzip", url],
        capture_output=True,
        text=True,
        check=True,
    )
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", result.stdout).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def web_memory_mb(marker: str) -> float:
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            command = (status.parent / "cmdline").read_bytes()
            text = status.read_text()
        except OSError:
            continue
        if b"gunicorn" in command or (b"nginx" in command and marker.encode() in command):
            total += int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
    return total / 1024


BOMBS = [
    ("twenty-thousand-square.png", big_png_bytes(20_000, 20_000)),
    ("forty-thousand-square.png", big_png_bytes(40_000, 40_000)),
    ("twenty-thousand-square-again.png", big_png_bytes(20_000, 20_000)),
    ("thousands-of-scans.jpg", progressive_jpeg_with_scans(6000)),
    ("thousands-of-scans-again.jpg", progressive_jpeg_with_scans(6000, size=2200)),
    ("thousands-of-scans-wide.jpg", progressive_jpeg_with_scans(6000, size=2400)),
    ("inflates-to-a-gigabyte.dcm", deflated_dicom_bomb()),
    ("inflates-to-two-gigabytes.dcm", deflated_dicom_bomb(2048)),
    ("inflates-to-a-gigabyte-again.dcm", deflated_dicom_bomb()),
    ("forty-thousand-square-again.png", big_png_bytes(40_000, 40_000)),
]


def slowest_answer_with_slow_clients(url: str) -> float:
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    stop = threading.Event()

    def trickle() -> None:
        try:
            with socket.create_connection((host, port)) as connection:
                connection.sendall(
                    b"POST /inquiries/new/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=cut\r\n"
                    b"Content-Length: 1000000\r\n\r\n--cut\r\n"
                )
                while not stop.wait(0.5):
                    connection.sendall(b"x")
        except OSError:
            pass

    clients = [threading.Thread(target=trickle, daemon=True) for _ in range(20)]
    for client in clients:
        client.start()
    time.sleep(2)
    slowest = 0.0
    try:
        for _ in range(10):
            started = time.perf_counter()
            try:
                with socket.create_connection((host, port), timeout=10) as connection:
                    connection.sendall(
                        b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % GUIDE.encode()
                    )
                    while connection.recv(65536):
                        pass
            except OSError:
                pass
            slowest = max(slowest, time.perf_counter() - started)
    finally:
        stop.set()
    return slowest


def under_load() -> dict:
    postgres = PostgresServer()
    folder = Path(tempfile.mkdtemp(prefix="cancerfax-bench-documents-"))
    with ExitStack() as stack:
        stack.callback(postgres.remove)
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE cancerfax")
        env = {
            "PATH": "/usr/sbin:/usr/bin:/bin",
            "DJANGO_SECRET_KEY": "bench-only-key-not-secret",
            "DATABASE_URL": postgres.url("cancerfax"),
            "DATA_DIR": str(folder / "data"),
            "INQUIRY_RATE_LIMIT": "1000000/h",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "4",
        }
        for command in (["migrate", "-v0"], ["loaddata", "fixtures/guides.json", "-v0"]):
            result = manage({**env, "DJANGO_DEBUG": "0"}, *command)
            if result.returncode:
                raise RuntimeError(result.stderr)
        site = make_serve(stack, env, folder / "serve.log")
        wrk_p99(site + GUIDE, 2)  # every worker has the page
        idle = [wrk_p99(site + GUIDE) for _ in range(ROUNDS)]
        memory_before = web_memory_mb(str(folder))
        for start in range(0, len(BOMBS), 5):
            if Family(site).send(BOMBS[start : start + 5]).status != 302:
                raise RuntimeError("the bombs were not taken")
        sent = time.monotonic()
        time.sleep(1)
        loaded = [wrk_p99(site + GUIDE) for _ in range(ROUNDS)]
        memory_after = web_memory_mb(str(folder))
        with psycopg.connect(postgres.url("cancerfax")) as connection:
            while connection.execute(
                "SELECT count(*) FROM inquiries_document WHERE state IN ('received', 'checking')"
            ).fetchone()[0]:
                time.sleep(0.5)
            refusals = connection.execute(
                "SELECT state, refusal, count(*) FROM inquiries_document GROUP BY 1, 2"
            ).fetchall()
        all_refused = time.monotonic() - sent
        with_nginx = slowest_answer_with_slow_clients(site)
        with ExitStack() as bare:
            gunicorn, _ = start_gunicorn(bare, {**env, "DJANGO_DEBUG": "0"}, folder / "bare.log")
            gunicorn_alone = slowest_answer_with_slow_clients(gunicorn)
    return {
        "idle_p99_ms": statistics.median(idle),
        "bombs_p99_ms": statistics.median(loaded),
        "web_memory_before_mb": memory_before,
        "web_memory_after_mb": memory_after,
        "bombs_all_ended_s": all_refused,
        "bomb_outcomes": [list(row) for row in refusals],
        "slow_clients_slowest_s_nginx": with_nginx,
        "slow_clients_slowest_s_gunicorn_alone": gunicorn_alone,
    }


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

    growth = load["web_memory_after_mb"] - load["web_memory_before_mb"]
    ratio = load["bombs_p99_ms"] / load["idle_p99_ms"]
    return [
        ("Typed report rebuilt in the sandbox vs rendered in-process", *speed(typed), "", ""),
        ("Scanned report rebuilt in the sandbox vs rendered in-process", *speed(scanned), "", ""),
        ("Typed report, rebuilt PDF vs original", *size(typed), "", ""),
        ("Scanned report, rebuilt PDF vs original", *size(scanned), "", ""),
        ("Guide p99 with ten bombs being checked vs idle",
         f"{load['bombs_p99_ms']:.1f} vs {load['idle_p99_ms']:.1f} ms", f"{ratio:.2f}",
         "≤ 2", verdict(ratio <= 2)),
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
    header = ("Measure", "Measured", "Ratio", "Target", "")
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(5)]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    out = ROOT / "bench" / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["documents"] = {
        "figures": figures,
        "table": [
            dict(zip(("measure", "measured", "ratio", "target", "verdict"), row, strict=True))
            for row in table
        ],
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(row[-1] != "FAIL" for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
