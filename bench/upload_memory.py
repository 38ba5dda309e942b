"""How much a server's memory grows while it receives, checks and stores a 20 MB PDF.

Starts the site in its own process (Django's server, one request at a time, SQLite in a
temporary folder), warms it up with a small inquiry, resets the kernel's record of its peak
memory, sends one inquiry with a ~20 MB PDF, and reads the new peak. The same is done with
a ~20 KB PDF side by side, so that the growth due to the file's size stands out from the
memory any inquiry costs.

Usage: .venv/bin/python bench/upload_memory.py   (prints a table; exits 1 over the target)
"""

import http.client
import http.cookies
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sample_files import large_pdf, pdf_bytes  # noqa: E402
from tests.servers import free_port  # noqa: E402

TARGET_MB = 10
BOUNDARY = "----cancerfax-bench-" + uuid.uuid4().hex


def kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM (the peak resident size) to the current size.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Site:
    def __init__(self, folder: Path):
        self.port = free_port()
        env = {
            **os.environ,
            "DJANGO_SECRET_KEY": "bench-only-key",
            "DJANGO_DEBUG": "0",
            "DATA_DIR": str(folder),
            "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "INQUIRY_RATE_LIMIT": "1000/h",
            "EMAIL_URL": "console:",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        }
        python = sys.executable
        for command in (["migrate"], ["collectstatic", "--noinput"]):
            subprocess.run([python, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True)
        self.process = subprocess.Popen(
            [
                python,
                "manage.py",
                "runserver",
                "--noreload",
                "--nothreading",
                f"127.0.0.1:{self.port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def send(self, name: str, path: Path) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", "/inquiries/new/")
        response = conn.getresponse()
        html = response.read().decode()
        cookies = http.cookies.SimpleCookie(response.getheader("Set-Cookie"))
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        fields = {
            "csrfmiddlewaretoken": token,
            "writer": "patient",
            "patient_name": "Bench Example",
            "birth_year": "1970",
            "country": "GB",
            "email": "bench@example.org",
            "diagnosis": "other",
            "treatment_so_far": "None, this is a benchmark.",
            "question": "None, this is a benchmark.",
            "language": "en",
            "consent": "on",
            "submission_id": str(uuid.uuid4()),
        }
        head = b"".join(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="{key}"\r\n\r\n{value}\r\n'.encode()
            for key, value in fields.items()
        )
        head += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="documents"; '
            f'filename="{name}"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        length = len(head) + path.stat().st_size + len(tail)

        def body():
            yield head
            with path.open("rb") as data:
                while chunk := data.read(256 * 1024):
                    yield chunk
            yield tail

        conn.putrequest("POST", "/inquiries/new/")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(length))
        conn.putheader("Cookie", f"csrftoken={cookies['csrftoken'].value}")
        conn.putheader("Referer", f"http://127.0.0.1:{self.port}/inquiries/new/")
        conn.endheaders()
        for chunk in body():
            conn.send(chunk)
        status = conn.getresponse().status
        conn.close()
        return status


def growth(site: Site, name: str, path: Path) -> tuple[float, int]:
    pid = site.process.pid
    before = kib(pid, "VmRSS")
    reset_peak(pid)
    status = site.send(name, path)
    return (kib(pid, "VmHWM") - before) / 1024, status


def measure() -> dict:
    """Peak memory growth (MB) for a ~20 KB and a ~20 MB PDF, with their HTTP statuses."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        small = folder / "small.pdf"
        small.write_bytes(pdf_bytes(pages=3))
        big = large_pdf(folder / "big.pdf", size_mb=20)
        site = Site(folder / "site")
        try:
            # Warm up with small files only: memory that a big upload took and freed could
            # stay with the process and hide the growth being measured.
            site.send("warm-up.pdf", small)
            site.send("warm-up.pdf", small)
            small_growth, small_status = growth(site, "small.pdf", small)
            big_growth, big_status = growth(site, "big.pdf", big)
        finally:
            site.stop()
        size_mb = big.stat().st_size / 1024 / 1024
    return {
        "small_mb": small_growth,
        "small_status": small_status,
        "big_mb": big_growth,
        "big_status": big_status,
        "big_size_mb": size_mb,
    }


def main() -> int:
    m = measure()
    print("Peak server memory growth while an inquiry with one PDF is received")
    print(f"{'upload':<22}{'status':>8}{'growth MB':>12}")
    print(f"{'PDF, ~20 KB':<22}{m['small_status']:>8}{m['small_mb']:>12.1f}")
    print(f"{f'PDF, {m["big_size_mb"]:.0f} MB':<22}{m['big_status']:>8}{m['big_mb']:>12.1f}")
    print(f"target: under {TARGET_MB} MB for the 20 MB PDF")
    ok = m["big_status"] == 302 and m["small_status"] == 302 and m["big_mb"] < TARGET_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
