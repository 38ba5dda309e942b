"""`make bench`: the site's speed and memory, measured side by side on this machine.

Starts a PostgreSQL server of its own and gunicorn as `make serve` runs it, then measures:
- guide page throughput and p99 latency (wrk, 16 connections), alternated round by round,
  against the limit of this server (the same bytes and headers answered by a do-nothing WSGI
  application on the same gunicorn with the same workers, bench/bare_wsgi.py): the
  published revision with no cache configured at all, with the cache as `make serve` runs
  it, and the same page the way most Django sites serve one (rendered, behind `cache_page`);
- the time to publish a revision;
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


def side_by_side(urls: dict[str, str]) -> dict:
    """Each of `urls` measured once a round, in turn, ROUNDS times: medians of each, so that
    a busy moment of this shared machine slows every one alike."""
    measured: dict[str, list] = {name: [] for name in urls}
    for _ in range(ROUNDS):
        for name, url in urls.items():
            measured[name].append(wrk(url))
    return {
        name: {
            "rps": statistics.median(rate for rate, _ in runs),
            "p99_ms": statistics.median(p99 for _, p99 in runs),
        }
        for name, runs in measured.items()
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
    """SQL queries for a reader's page, as shipped and with ten times the content; and the
    time a clinical approver waits to publish a revision of the real guide."""
    script = """
import json, statistics, time, django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from guides.models import Guide
from tests.conftest import build_guide
from tests.support import publish

def count(url):
    with CaptureQueriesContext(connection) as queries:
        assert Client().get(url, HTTP_HOST="127.0.0.1").status_code == 200
    return len(queries)

shipped = count("/guides/gene-therapy-for-leukemia/")
big = build_guide(slug="bench-ten-times", items=20)
guide = Guide.objects.get(slug="gene-therapy-for-leukemia")
took = []
for _ in range(5):
    started = time.perf_counter()
    publish(guide, kind="correction", summary="Timed by the benchmark.")
    took.append(time.perf_counter() - started)
print(json.dumps({"shipped": shipped, "ten_times": count(big.get_absolute_url()),
                  "publish_ms": statistics.median(took) * 1000}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
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
            # The site as deployed, plus the pages measured beside it (bench/urls.py).
            "DJANGO_SETTINGS_MODULE": "bench.settings",
        }
        prepare(env, ["migrate", "-v0"], *GUIDES, ["collectstatic", "--noinput", "-v0"])

        # The limit: the page's own compressed bytes and headers, from a WSGI application
        # that does nothing else, on the same gunicorn.
        gz = {"Accept-Encoding": "gzip"}
        with ExitStack() as first:
            site, _ = start_gunicorn(first, env, folder / "gunicorn-copy.log")
            status, headers, packed = fetch(site + GUIDE, **gz)
        if status != 200 or headers.get("Content-Encoding") != "gzip":
            raise RuntimeError(f"the guide answered {status} {headers}")
        kept = {"Content-Type", "Content-Encoding", "ETag", "Cache-Control", "Vary"}
        page = folder / "page.json"
        page.write_text(
            json.dumps(
                {
                    "body": packed.hex(),
                    "headers": {
                        **{k: v for k, v in headers.items() if k in kept},
                        "Content-Length": str(len(packed)),
                    },
                }
            )
        )
        with ExitStack() as servers:
            bare, _ = start_gunicorn(
                servers,
                {**env, "BENCH_PAGE": str(page)},
                folder / "g-bare.log",
                "bench.bare_wsgi:application",
            )
            no_cache, _ = start_gunicorn(
                servers, {**env, "BENCH_CACHE": "none"}, folder / "g-none.log"
            )
            site, _ = start_gunicorn(servers, env, folder / "gunicorn.log")
            stock = site + GUIDE.replace("/guides/", "/bench/cache-page/")
            for url in (bare + GUIDE, no_cache + GUIDE, site + GUIDE):
                if fetch(url, **gz)[2] != packed:
                    raise RuntimeError(f"{url} must answer the page's own bytes")
            if fetch(stock, **gz)[0] != 200:
                raise RuntimeError("the cache_page copy of the guide did not answer")
            figures["guide"] = side_by_side(
                {
                    "limit": bare + GUIDE,
                    "no_cache": no_cache + GUIDE,
                    "cache": site + GUIDE,
                    "cache_page": stock,
                }
            )
            figures["first_load"] = first_load_kb(site)
            reports = [
                large_pdf(folder / f"scan-{n}.pdf", size_mb=1, seed=n).read_bytes()
                for n in range(CLIENTS * 8)
            ]
            one = submissions_per_second(site, reports[:16], clients=1)
            many = submissions_per_second(site, reports, clients=CLIENTS)
            # The price of safety: the same uploads, alternated in halves with the form,
            # through a plain Django form that checks and records nothing.
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
    guide, memory, queries, sub = f["guide"], f["upload_memory"], f["queries"], f["submissions"]
    limit = guide["limit"]

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    def against(name: str, base: dict = limit, over: str = "the limit") -> tuple[str, str]:
        measured = guide[name]
        return (
            f"{measured['rps']:.0f} vs {base['rps']:.0f} req/s; "
            f"p99 {measured['p99_ms']:.1f} vs {base['p99_ms']:.1f} ms",
            f"{measured['rps'] / base['rps']:.2f} of {over}",
        )

    return [
        ("The limit: the same bytes from a do-nothing WSGI app on the same gunicorn",
         f"{limit['rps']:.0f} req/s; p99 {limit['p99_ms']:.1f} ms", "", "", ""),
        ("Guide page, no cache configured at all, vs the limit", *against("no_cache"),
         "≥ 0.4", verdict(guide["no_cache"]["rps"] >= 0.4 * limit["rps"])),
        ("Guide page, the cache as make serve runs it, vs the limit", *against("cache"),
         "≥ 0.7", verdict(guide["cache"]["rps"] >= 0.7 * limit["rps"])),
        ("The same page rendered behind Django's stock cache_page, vs the limit",
         *against("cache_page"), "", ""),
        ("Guide page with the cache vs Django's cache_page",
         *against("cache", guide["cache_page"], "cache_page"), "> 1",
         verdict(guide["cache"]["rps"] > guide["cache_page"]["rps"])),
        ("Time to publish a revision of the guide (render, compress, store)",
         f"{queries['publish_ms']:.0f} ms", "", "", ""),
        ("SQL queries per reader's guide page (shipped / 10× content)",
         f"{queries['shipped']} / {queries['ten_times']}", "", "1, constant",
         verdict(queries["shipped"] == queries["ten_times"] == 1)),
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
