"""Real servers for the tests that need them: PostgreSQL, gunicorn as `make serve` runs it,
and an HTTP client that sends the inquiry form as a browser would."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from http.cookies import SimpleCookie
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} stopped:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}:\n{log.read_text()[-3000:]}")


def start(stack: ExitStack, command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Starts a process whose output goes to `log`, stopped when `stack` closes."""
    output = stack.enter_context(log.open("w"))
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **kwargs)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


class PostgresServer:
    """A PostgreSQL 15 cluster of the test's own, in a temporary folder, which the test may
    stop and start again. As root it runs as the postgres user, as PostgreSQL requires."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="cancerfax-pg-"))
        self.as_root = os.getuid() == 0
        if self.as_root:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", f"{self.folder}/db", "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8")  # fmt: skip
        self.start()

    def _run(self, program: str, *args: str) -> None:
        command = [str(PG_BIN / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", f"{self.folder}/db", "-l", f"{self.folder}/server.log",
                  "-w", "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", f"{self.folder}/db", "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self._run("pg_ctl", "-D", f"{self.folder}/db", "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_for_the_site(stack: ExitStack) -> "PostgresServer":
    """A PostgreSQL server of the caller's own, with an empty database named cancerfax,
    removed when `stack` closes."""
    import psycopg

    postgres = PostgresServer()
    stack.callback(postgres.remove)
    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute("CREATE DATABASE cancerfax")
    return postgres


class RedisServer:
    """Debian's redis-server on a free loopback port, nothing saved to disk. The test may
    stop it, freeze it (it then takes connections and never answers) and start it again."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.stack = stack
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        program = shutil.which("redis-server")
        assert program, "redis-server is missing: make test installs it"
        command = [program, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        log = self.folder / "redis.log"
        self.process = start(self.stack, command, log)
        wait_for_port(self.port, self.process, log)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def manage(env: dict, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# The guides the site starts with, as `make run` loads them.
# The guides as `make run` has them: loaded, and published by an approver (a superuser with
# no password, who can only publish).
GUIDES = (
    ["loaddata", "fixtures/guides.json", "-v0"],
    [
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='approver').exists() or "
        "User.objects.create_superuser('approver', 'approver@example.org', None)",
    ],
    ["publish_first_revisions", "--approver", "approver", "-v0"],
)


def prepare(env: dict, *commands: list[str]) -> None:
    """Run manage.py commands one after the other, stopping at the first that fails, with
    what it printed."""
    for command in commands:
        result = manage(env, *command)
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(command)} failed:\n{result.stderr}")


def start_gunicorn(
    stack: ExitStack, env: dict, log: Path, app: str = "cancerfax.wsgi:application"
) -> tuple[str, subprocess.Popen]:
    port = free_port()
    gunicorn = start(
        stack,
        [sys.executable, "-m", "gunicorn", app, "-c", "gunicorn.conf.py"],
        log,
        cwd=ROOT,
        env={**env, "PORT": str(port)},
    )
    wait_for_port(port, gunicorn, log)
    return f"http://127.0.0.1:{port}", gunicorn


# A worker in the tests takes up what another left behind within seconds, not a minute.
QUICK_WORKER = {
    "WORKER_RECOVERY_SECONDS": "1",
    "DOCUMENT_HEARTBEAT_SECONDS": "1",
    "DOCUMENT_STALE_SECONDS": "4",
    "DOCUMENT_RETRY_SECONDS": "2",
    "EMAIL_RETRY_SECONDS": "1",
}


def start_worker(stack: ExitStack, env: dict, log: Path) -> subprocess.Popen:
    """A background worker, as `make run` and `make serve` start it."""
    return start(
        stack,
        [sys.executable, "manage.py", "worker", "--interval", "0.2", "--no-startup-delay"],
        log,
        cwd=ROOT,
        env={**env, **QUICK_WORKER},
    )


def make_serve(stack: ExitStack, env: dict, log: Path, workers: int = 1) -> str:
    """`make serve` itself: nginx, gunicorn and workers, stopped as Ctrl+C stops them."""
    port = free_port()
    output = stack.enter_context(log.open("w"))
    serve = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"PORT={port}", f"WORKERS={workers}"],
        cwd=ROOT,
        env={**env, **QUICK_WORKER, "PORT": str(port)},
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()

    stack.callback(stop)
    wait_for_port(port, serve, log, seconds=120)
    url = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(retries=False, timeout=5)
    deadline = time.monotonic() + 120
    # nginx listens before gunicorn is ready behind it.
    while http.request("GET", url + "/healthz").status != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"make serve did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return url


def wrk(url: str, seconds: float = 2, connections: int = 4) -> tuple[float, float]:
    """Requests a second and p99 latency in ms, as wrk (from Debian) measures them."""
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            "Accept-Encoding: gzip",
            url,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", result.stdout).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise RuntimeError(f"{url} answered {errors.group(1)} errors:\n{result.stdout}")
    return rate, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def web_memory(run_dir: Path) -> int:
    """Resident memory, in bytes, of gunicorn and of the nginx that `make serve` started with
    `run_dir`, master and workers."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            command = (status.parent / "cmdline").read_bytes()
            text = status.read_text()
        except OSError:
            continue
        if b"gunicorn" in command or (b"nginx" in command and str(run_dir).encode() in command):
            total += int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) * 1024
    return total


@contextlib.contextmanager
def slow_clients(url: str, count: int = 20):
    """`count` clients sending a form's body two bytes a second, for as long as it lasts."""
    port = int(url.rsplit(":", 1)[1])
    stop = threading.Event()

    def trickle() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(
                    b"POST /inquiries/new/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=cut\r\n"
                    b"Content-Length: 1000000\r\n\r\n--cut\r\n"
                )
                while not stop.wait(0.5):
                    connection.sendall(b"x")
        except OSError:
            pass  # the server gave up on it: fine

    clients = [threading.Thread(target=trickle, daemon=True) for _ in range(count)]
    for client in clients:
        client.start()
    time.sleep(2)  # all of them connected, and waiting
    try:
        yield
    finally:
        stop.set()


def sandbox_children() -> list[int]:
    """The sandbox children opening a file on this machine right now."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"documents/sandbox.py" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def beside_the_sandboxes(measure, rounds: int) -> tuple[list[float], list[float]]:
    """Runs `measure` (a list of latencies) in turns, with the running sandbox children
    paused and going again, as long as any run: what a reader meets while files are being
    checked, beside the very same moments' idle machine."""
    idle: list[float] = []
    busy: list[float] = []
    for _ in range(rounds):
        # Between one file's child and the next there is a moment with none: only a second
        # with none at all means the checks are over.
        children = _sandbox_children_within(1.0)
        if not children:
            break
        paused = set()
        try:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    paused.add(pid)
            idle += measure()
        finally:
            for pid in paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        busy += measure()
    return idle, busy


def _sandbox_children_within(seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while not (children := sandbox_children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return children


def worker_pids(master: subprocess.Popen) -> set[int]:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return {int(pid) for pid in children}


PATIENT = "Ada Example"


def form_data(**changes) -> dict:
    """The inquiry form as a fictional family fills it in; a value of None leaves a field out."""
    data = {
        "writer": "family",
        "writer_name": "Sam Example",
        "acting_for_patient_confirmed": "on",
        "patient_name": PATIENT,
        "birth_year": "2009",
        "country": "GB",
        "email": "sam.example@example.org",
        "phone": "+44 20 7946 0000",
        "diagnosis": "b-all",
        "treatment_so_far": "Chemotherapy in 2025.\r\nRelapse in 2026.",
        "question": "Could CAR-T help my daughter?",
        "language": "en",
        "consent": "on",
        "website": "",
        "submission_id": str(uuid.uuid4()),
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


class Family:
    """One family's browser: it opens the form (for its CSRF cookie), then sends it."""

    def __init__(self, site: str, http: urllib3.PoolManager | None = None) -> None:
        self.site = site
        self.http = http or urllib3.PoolManager(retries=False, timeout=120)
        self.cookies: dict[str, str] = {}

    def get(self, path: str) -> urllib3.BaseHTTPResponse:
        response = self.http.request("GET", self.site + path, headers=self._headers(),
                                     redirect=False)  # fmt: skip
        self._keep_cookies(response)
        return response

    def send(self, files: list[tuple[str, bytes]]) -> urllib3.BaseHTTPResponse:
        form = self.get("/inquiries/new/")
        if form.status != 200:
            return form
        files_sent = [("documents", (name, content, "application/pdf")) for name, content in files]
        return self.post("/inquiries/new/", [*form_data().items(), *files_sent])

    def post(self, path: str, fields: list) -> urllib3.BaseHTTPResponse:
        """A multipart form to `path`, with the CSRF token of the page got before."""
        token = ("csrfmiddlewaretoken", self.cookies["csrftoken"])
        body, content_type = urllib3.encode_multipart_formdata([*fields, token])
        response = self.http.request(
            "POST",
            self.site + path,
            body=body,
            headers={**self._headers(), "Content-Type": content_type},
            redirect=False,
        )
        self._keep_cookies(response)
        return response

    def reference(self) -> str:
        page = self.get("/inquiries/thank-you/").data.decode()
        return re.search(r"CF-\w{4}-\w{4}", page).group(0)

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def _keep_cookies(self, response: urllib3.BaseHTTPResponse) -> None:
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value


def main(argv: list[str]) -> int:
    """`python tests/servers.py with-postgres COMMAND…`: COMMAND run against a PostgreSQL
    server of its own, stopped and deleted when COMMAND ends, passed or failed. `make test`
    runs the suite's PostgreSQL pass this way."""
    if argv[1:2] != ["with-postgres"] or len(argv) < 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    postgres = PostgresServer()
    try:
        version = subprocess.run(
            [str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2]
        print(f"PostgreSQL {version} is running on 127.0.0.1:{postgres.port} for the tests")
        return subprocess.call(
            argv[2:], env={**os.environ, "DATABASE_URL": postgres.url("cancerfax")}
        )
    finally:
        postgres.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
