"""`make bench`: the site's speed and memory, measured side by side on this machine.

Starts a PostgreSQL server of its own and gunicorn as `make serve` runs it, then measures:
- guide page throughput and p99 latency (wrk, 16 connections) against the same bytes served
  as a static file by the same server, with the page cache on and off;
- a cold render taken apart: the page's bytes answered unrendered through Django, after the
  page's queries (the ceiling of a cold render) and after none;
- SQL queries per guide page, for the guide as shipped and with ten times its content;
- the first load of the guide, compressed as served (HTML and stylesheets);
- peak server memory growth while a 20 MB PDF is received (bench/upload_memory.py);
- inquiry submissions per second with a 1 MB PDF, 16 clients against 1.

Every speed figure is a ratio of two measurements taken in the same run, alternated, so that
a busy machine slows both alike. Prints a table and writes bench/results.json.
"""

import gzip
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import upload_memory  # noqa: E402  (bench/ is on the path when run as a script)
from tables import as_records, print_table  # noqa: E402

from tests.sample_files import large_pdf  # noqa: E402
from tests.servers import GUIDES, Family, PostgresServer, prepare, start_gunicorn  # noqa: E402

GUIDE = "/guides/gene-therapy-for-leukemia/"
STATIC_COPY = ROOT / "staticfiles" / "bench" / "guide.html"
# As browsers ask: both sides then send the same compressed bytes, made once in advance.
GZIP = "Accept-Encoding: gzip"
ROUNDS = 3
SECONDS = 5
CLIENTS = 16


def wrk(url: str) -> tuple[float, float]:
    """Requests a second and p99 latency in ms, over SECONDS with CLIENTS connections."""
    result = subprocess.run(
        ["wrk", "-t2", f"-c{CLIENTS}", f"-d{SECONDS}s", "--latency", "-H", GZIP, url],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", result.stdout).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise RuntimeError(f"{url} answered {errors.group(1)} errors:\n{result.stdout}")
    return rate, p99


def side_by_side(page: str, static: str) -> dict:
    """The page and the static copy, alternated ROUNDS times; medians of each."""
    pages, statics = [], []
    for _ in range(ROUNDS):
        statics.append(wrk(static))
        pages.append(wrk(page))
    page_rate = statistics.median(r for r, _ in pages)
    static_rate = statistics.median(r for r, _ in statics)
    return {
        "page_rps": page_rate,
        "page_p99_ms": statistics.median(p for _, p in pages),
        "static_rps": static_rate,
        "static_p99_ms": statistics.median(p for _, p in statics),
        "ratio": page_rate / static_rate,
    }


def fetch(url: str, **headers: str) -> tuple[int, dict, bytes]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def first_load_kb(site: str) -> dict:
    """What a first visit to the guide transfers, compressed as a browser asks for it."""
    asks = {"Accept-Encoding": "br, gzip"}
    _, _, html = fetch(site + GUIDE, **asks)
    sizes = {"html": len(html)}
    page = gzip.decompress(html).decode() if html[:2] == b"\x1f\x8b" else html.decode()
    for href in re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', page):
        sizes[href.rsplit("/", 1)[1]] = len(fetch(site + href, **asks)[2])
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    for src in scripts:
        sizes[src.rsplit("/", 1)[1]] = len(fetch(site + src, **asks)[2])
    return {"kb": sum(sizes.values()) / 1024, "parts": sizes}


def queries_per_page(env: dict) -> dict:
    """SQL queries for one render of the guide, as shipped and with ten times the content."""
    script = """
import json, django
django.setup()
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from tests.conftest import build_guide

def count(url, fresh=True):
    if fresh:
        cache.clear()
    with CaptureQueriesContext(connection) as queries:
        assert Client().get(url).status_code == 200
    return len(queries)

shipped = count("/guides/gene-therapy-for-leukemia/")
cached = count("/guides/gene-therapy-for-leukemia/", fresh=False)
big = build_guide(slug="bench-ten-times", items=20)
print(json.dumps({"shipped": shipped, "ten_times": count(big.get_absolute_url()),
                  "cached": cached}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "cancerfax.settings",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "PYTHONPATH": str(ROOT),
        },  # fmt: skip
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def per_second(send, reports: list[bytes], clients: int) -> float:
    """How many of `reports` `send` takes a second, from `clients` at once; each must be
    answered with a redirect (stored)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(send, reports))
    elapsed = time.perf_counter() - started
    if set(statuses) != {302}:
        raise RuntimeError(f"uploads failed: {sorted(set(statuses))}")
    return len(reports) / elapsed


def submissions_per_second(site: str, reports: list[bytes], clients: int) -> float:
    def send(report: bytes) -> int:
        return Family(site).send([("scan.pdf", report)]).status

    return per_second(send, reports, clients)


def plain_submissions_per_second(site: str, reports: list[bytes], clients: int) -> float:
    """The same uploads through a plain Django FileField form that checks nothing
    (bench/urls.py), as the price of safety's other side."""

    def send(report: bytes) -> int:
        family = Family(site)
        family.get("/bench/plain-upload/")
        document = ("document", ("scan.pdf", report, "application/pdf"))
        return family.post("/bench/plain-upload/", [document]).status

    return per_second(send, reports, clients)


def machine() -> dict:
    cpu = re.search(r"model name\s+:\s+(.+)", Path("/proc/cpuinfo").read_text())
    return {
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def main() -> int:
    figures: dict = {}
    postgres = PostgresServer()
    folder = postgres.folder.parent / f"cancerfax-bench-{os.getpid()}"
    folder.mkdir()
    with ExitStack() as stack:
        stack.callback(postgres.remove)
        stack.callback(lambda: shutil.rmtree(STATIC_COPY.parent, ignore_errors=True))
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE cancerfax")
        env = {
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": "bench-only-key-not-secret",
            "DJANGO_DEBUG": "0",
            "DATABASE_URL": postgres.url("cancerfax"),
            "DATA_DIR": str(folder),
            "INQUIRY_RATE_LIMIT": "1000000/h",
            "EMAIL_URL": "console:",
            "LOG_LEVEL": "WARNING",
            # The site as deployed, plus the page that measures a cold render's ceiling.
            "DJANGO_SETTINGS_MODULE": "bench.settings",
        }
        prepare(env, ["migrate", "-v0"], GUIDES, ["collectstatic", "--noinput", "-v0"])

        # The static copy: the very bytes the page answers, plain and compressed, served by
        # whitenoise (which serves guide.html.gz to a browser that takes gzip).
        with ExitStack() as first:
            site, _ = start_gunicorn(first, env, folder / "gunicorn-copy.log")
            html = fetch(site + GUIDE)[2]
            packed = fetch(site + GUIDE, **{"Accept-Encoding": "gzip"})[2]
        STATIC_COPY.parent.mkdir(parents=True, exist_ok=True)
        STATIC_COPY.write_bytes(html)
        STATIC_COPY.with_suffix(".html.gz").write_bytes(packed)
        for mode, extra in (("cached", {}), ("cold", {"GUIDE_CACHE_SECONDS": "0"})):
            # Each mode starts with an empty cache (files in DATA_DIR/cache).
            shutil.rmtree(folder / "cache", ignore_errors=True)
            with ExitStack() as server:
                site, _ = start_gunicorn(server, {**env, **extra}, folder / f"gunicorn-{mode}.log")
                copy = site + "/static/bench/guide.html"
                gz = {"Accept-Encoding": "gzip"}
                if fetch(copy, **gz)[2] != packed or fetch(site + GUIDE, **gz)[2] != packed:
                    raise RuntimeError("the page and its static copy must be the same bytes")
                figures[f"guide_{mode}"] = side_by_side(site + GUIDE, copy)
                if mode == "cold":
                    # A cold render taken apart (bench/urls.py): the page's bytes answered
                    # unrendered, after the page's queries (the fastest a cold render could
                    # ever be), and after no query at all.
                    parts = {
                        "guide_queries_only": GUIDE.replace("/guides/", "/bench/guide-queries/"),
                        "no_queries": "/bench/no-queries/",
                    }
                    for name, path in parts.items():
                        status, _, body = fetch(site + path, **gz)
                        if status != 200 or body != packed:
                            raise RuntimeError(f"{path} must answer the page's bytes")
                        figures[name] = side_by_side(site + path, copy)
                if mode == "cached":
                    figures["first_load"] = first_load_kb(site)
                    reports = [
                        large_pdf(folder / f"scan-{n}.pdf", size_mb=1, seed=n).read_bytes()
                        for n in range(CLIENTS * 8)
                    ]
                    one = submissions_per_second(site, reports[:16], clients=1)
                    many = submissions_per_second(site, reports, clients=CLIENTS)
                    # The price of safety: the same uploads, alternated in halves with the
                    # form, through a plain Django form that checks and records nothing.
                    ours, plain = [], []
                    for half in (reports[: len(reports) // 2], reports[len(reports) // 2 :]):
                        plain.append(plain_submissions_per_second(site, half, CLIENTS))
                        ours.append(submissions_per_second(site, half, clients=CLIENTS))
                    figures["submissions"] = {
                        "one_client_per_s": one,
                        "sixteen_clients_per_s": many,
                        "ratio": many / one,
                        "ours_per_s": statistics.median(ours),
                        "plain_per_s": statistics.median(plain),
                        "price_of_safety": statistics.median(ours) / statistics.median(plain),
                    }
        figures["queries"] = queries_per_page(env)
    figures["upload_memory"] = upload_memory.measure()
    report(figures)
    return 0 if all(row[-1] != "FAIL" for row in rows(figures)) else 1


def rows(f: dict) -> list[tuple[str, str, str, str]]:
    cached, cold = f["guide_cached"], f["guide_cold"]
    ceiling, bare = f["guide_queries_only"], f["no_queries"]
    memory, queries, sub = f["upload_memory"], f["queries"], f["submissions"]

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    def throughput(measured: dict) -> tuple[str, str]:
        return (
            f"{measured['page_rps']:.0f} vs {measured['static_rps']:.0f} req/s",
            f"{measured['ratio']:.2f}",
        )

    def p99(measured: dict) -> tuple[str, str]:
        return (
            f"{measured['page_p99_ms']:.1f} vs {measured['static_p99_ms']:.1f} ms",
            f"{measured['page_p99_ms'] / measured['static_p99_ms']:.2f}",
        )

    return [
        ("Guide page, cached: throughput vs static copy", *throughput(cached),
         "≥ 0.85", verdict(cached["ratio"] >= 0.85)),
        ("Guide page, cached: p99 latency vs static copy", *p99(cached), "", ""),
        ("Guide page, cold render: throughput vs static copy", *throughput(cold),
         "≥ 0.25", verdict(cold["ratio"] >= 0.25)),
        ("Guide page, cold render: p99 latency vs static copy", *p99(cold), "", ""),
        (f"Ceiling of a cold render: its {queries['shipped']} queries, nothing rendered, "
         "vs static copy", *throughput(ceiling), "", ""),
        ("The same bytes through Django, no query, nothing rendered, vs static copy",
         *throughput(bare), "", ""),
        ("SQL queries per guide page (shipped / 10× content / cached)",
         f"{queries['shipped']} / {queries['ten_times']} / {queries['cached']}", "",
         "≤ 8, constant",
         verdict(queries["shipped"] <= 8 and queries["ten_times"] == queries["shipped"])),
        ("First load of the guide, compressed",
         f"{f['first_load']['kb']:.1f} KB", "", "≤ 60 KB", verdict(f["first_load"]["kb"] <= 60)),
        ("Peak memory growth, 20 MB PDF upload (20 KB PDF beside it)",
         f"{memory['big_mb']:.1f} MB ({memory['small_mb']:.1f} MB)", "", "< 10 MB",
         verdict(memory["big_mb"] < 10 and memory["big_status"] == 302)),
        ("Inquiries with a 1 MB PDF, PostgreSQL: 16 clients vs 1",
         f"{sub['sixteen_clients_per_s']:.1f} vs {sub['one_client_per_s']:.1f} per s",
         f"{sub['ratio']:.2f}", "", ""),
        ("The price of safety: inquiries with a 1 MB PDF vs the same upload stored by a plain "
         "Django FileField form, 16 clients",
         f"{sub['ours_per_s']:.1f} vs {sub['plain_per_s']:.1f} per s",
         f"{sub['price_of_safety']:.2f}", "", ""),
    ]  # fmt: skip


def report(figures: dict) -> None:
    table = rows(figures)
    print_table(table)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"wrk_seconds": SECONDS, "rounds": ROUNDS, "connections": CLIENTS},
        "figures": figures,
        "table": as_records(table),
    }
    out = ROOT / "bench" / "results.json"
    earlier = json.loads(out.read_text()) if out.exists() else {}
    for part in ("documents", "archives"):
        if part in earlier:
            results[part] = earlier[part]
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWritten to {out.relative_to(ROOT)} ({results['machine']['cores']} cores, "
          f"{results['machine']['cpu']}, {results['date']})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
