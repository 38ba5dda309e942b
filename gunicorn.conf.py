"""gunicorn settings for `make serve` and production. Each value can be changed through the
environment variable named beside it."""

import fcntl
import os
import shutil
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Two workers a core is gunicorn's own advice for a site that mostly waits on its database.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
worker_class = "sync"
# Uploads of up to 100 MB from a phone on a slow line take a while to arrive.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 120))
graceful_timeout = 30
# Recycle workers now and then, so that a slow leak never grows without bound.
# Often enough to bound a leak, rarely enough that a busy server does not spend its time
# starting workers (at 1,000 requests a second, 2,000 meant a restart every few seconds).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 50_000))
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# One JSON object a line, like the application's logs, with the same request id. Never the
# query string: an admin search could carry a patient's name.
access_log_format = (
    '{"time": "%(t)s", "logger": "access", "method": "%(m)s", "path": "%(U)s", '
    '"status": %(s)s, "bytes": "%(B)s", "ms": %(M)s, "request_id": "%({x-request-id}o)s"}'
)

# Uploads in progress: each worker writes them in a folder of its own, so that when a
# worker dies mid-upload (killed, or stopped by the timeout) the master deletes exactly what
# it left, at once. Django reads the folder from UPLOADS_IN_PROGRESS (see settings), so the
# application must load in each worker, after the fork.
preload_app = False
UPLOADS = (
    Path(os.environ.get("DATA_DIR", "").strip() or Path(__file__).resolve().parent / "var")
    / "uploads-in-progress"
)
# Held by each worker for as long as it lives: a folder whose lock can be taken belongs to
# no running worker, whichever gunicorn started it.
_held_lock = None


def worker_folder(pid: int) -> Path:
    return UPLOADS / f"worker-{pid}"


def post_fork(server, worker):
    # Runs in the new worker, before it loads Django.
    global _held_lock
    folder = worker_folder(os.getpid())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _held_lock = (folder / ".lock").open("w")
    fcntl.flock(_held_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.environ["UPLOADS_IN_PROGRESS"] = str(folder)


def child_exit(server, worker):
    # Runs in the master whenever a worker ends, however it ended.
    shutil.rmtree(worker_folder(worker.pid), ignore_errors=True)


def on_starting(server):
    # What workers of an earlier master left, if the whole server was killed (or a worker
    # ended without child_exit running): every worker folder no live worker holds.
    for folder in UPLOADS.glob("worker-*") if UPLOADS.is_dir() else []:
        try:
            with (folder / ".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running worker's
        except OSError:
            pass  # no lock file: never a running worker's
        shutil.rmtree(folder, ignore_errors=True)
