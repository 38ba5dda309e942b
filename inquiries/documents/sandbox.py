"""Opens a file from outside only in a child process that a bomb or an exploit can bring
down without harming anything else.

The child is this module run as a program. Before it reads a byte of the file it limits
its own address space, CPU time, open files and the size of any file it could write, loads
every decoder it will need, and, with `isolate`, leaves the network (a network namespace
with no interface) and the filesystem (a chroot into an empty folder); run as root it also
becomes nobody. The file arrives on its standard input and the results leave on its
standard output as frames: a JSON header, then as many raw bytes as the header says. The
parent kills the child at the wall-time limit and checks every frame against its limits.

A child that runs out of memory, CPU time or wall time, or crashes, is reported as such;
nothing it did can reach the worker but the frames, which carry pixels or a rewritten scan.
"""

import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

HEADER_LIMIT = 64 * 1024
# The child has no user of its own when it starts as root: "nobody".
NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    cpu_seconds: int = 60
    wall_seconds: int = 120
    open_files: int = 16
    # Cores the child may run on, counted from the last; 0 for any.
    cpus: int = 0
    # No network and no filesystem (Linux namespaces and a chroot). Off only where the
    # host gives the worker no namespaces and isolates it itself (a container with no
    # network and a read-only root): the other limits always apply.
    isolate: bool = True


class Refused(Exception):
    """The file is not one we can accept; `code` names why (see messages.py)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SandboxFailed(Exception):
    """The child ran out of time ("time"), was stopped by a signal, as when an allocation
    fails at the memory limit ("memory"), ended without a proper result ("crash"), could
    not be set up on this machine at all ("setup"), or ran out of time without having had
    the CPU for its work, on a machine too busy for it ("starved")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Frame = Callable[[dict, bytes], None]


def run(
    kind: str,
    source: IO[bytes],
    options: dict,
    limits: Limits,
    on_frame: Frame,
    *,
    max_payload: int,
) -> dict:
    """Runs the child for a file of `kind` read from `source` (a real file), passing each
    frame to `on_frame`; returns the last frame, or raises Refused or SandboxFailed."""
    with tempfile.TemporaryDirectory(prefix="sandbox-root-") as root:
        # The child may be nobody; it can write nothing there (RLIMIT_FSIZE).
        os.chmod(root, 0o755)  # noqa: S103
        command = [
            sys.executable,
            "-I",
            str(Path(__file__).resolve()),
            kind,
            json.dumps(options),
            json.dumps(asdict(limits)),
            root,
        ]
        source.seek(0)
        child = subprocess.Popen(  # noqa: S603 - our own program, no shell
            command,
            stdin=source,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        ready = []

        def frame(header: dict, payload: bytes) -> None:
            if header.get("ready") and not ready:
                ready.append(True)
            elif not ready:
                raise SandboxFailed("crash")
            else:
                on_frame(header, payload)

        try:
            last = _read_frames(child, limits, frame, max_payload)
        finally:
            _end(child)
    if not ready:
        # The child never got as far as the file: a fault of this machine (namespaces,
        # a library missing), to be tried again, never held against the family's file.
        raise SandboxFailed("setup")
    if last is None:
        raise SandboxFailed(_reason(child.returncode))
    if "refused" in last:
        raise Refused(str(last["refused"]))
    return last


def _end(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    child.stderr.close()


def _out_of_time(child: subprocess.Popen, limits: Limits):
    used = _cpu_of_group(child.pid)
    os.killpg(child.pid, signal.SIGKILL)
    if used < limits.wall_seconds / 2:
        # Out of time having had less than half a core: the machine was too busy for it (it
        # runs at idle priority), which says nothing about the file.
        raise SandboxFailed("starved")
    raise SandboxFailed("time")


def _cpu_of_group(group: int) -> float:
    """The CPU seconds the processes of a process group have used so far."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, parent, group, …, user and system time (fields 3 and
        # 12, 13 counting from 0).
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _reason(returncode: int) -> str:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "time"  # the CPU limit, or the kernel's out-of-memory killer
    if returncode < 0:
        # A decoder aborting or crashing: in practice an allocation the memory limit refused.
        return "memory"
    return "crash"


def _read_frames(child, limits, on_frame, max_payload):
    deadline = time.monotonic() + limits.wall_seconds
    out, err = child.stdout.fileno(), child.stderr.fileno()
    open_fds = {out, err}
    buffer = bytearray()
    last = None
    while open_fds:
        now = time.monotonic()
        if now >= deadline:
            _out_of_time(child, limits)
        ready, _, _ = select.select(list(open_fds), [], [], deadline - now)
        for fd in ready:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                open_fds.discard(fd)
            elif fd == out:
                buffer += chunk
                last = _take_frames(buffer, on_frame, max_payload) or last
            # Whatever the child writes to stderr is dropped: it could quote the file.
    remaining = max(0.1, deadline - time.monotonic())
    try:
        child.wait(remaining)
    except subprocess.TimeoutExpired:
        _out_of_time(child, limits)
    if buffer:
        raise SandboxFailed("crash")  # a frame cut short
    if last is None or not last.get("end"):
        return None
    return last


def _take_frames(buffer: bytearray, on_frame: Frame, max_payload: int) -> dict | None:
    """Passes every complete frame at the start of `buffer` to `on_frame`, removes it, and
    returns the last final frame seen."""
    last = None
    while len(buffer) >= 4:
        header_length = int.from_bytes(buffer[:4], "big")
        if header_length > HEADER_LIMIT:
            raise SandboxFailed("crash")
        if len(buffer) < 4 + header_length:
            break
        try:
            header = json.loads(bytes(buffer[4 : 4 + header_length]))
            length = int(header.get("bytes", 0))
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
            raise SandboxFailed("crash") from None
        if not 0 <= length <= max_payload:
            raise SandboxFailed("crash")
        if len(buffer) < 4 + header_length + length:
            break
        payload = bytes(buffer[4 + header_length : 4 + header_length + length])
        del buffer[: 4 + header_length + length]
        if header.get("end"):
            last = header
        else:
            on_frame(header, payload)
    return last


# The child


class FrameWriter:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def send(self, header: dict, payload: bytes = b"") -> None:
        encoded = json.dumps({**header, "bytes": len(payload)}).encode()
        self.stream.write(len(encoded).to_bytes(4, "big") + encoded)
        self.stream.write(payload)

    def end(self, **result: Any) -> None:
        self.send({"end": True, **result})
        self.stream.flush()


def _limit(which: int, value: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (value, value if hard is None else hard))


# What the standard library lacks for leaving the filesystem: mount, pivot_root, capset
# and prctl, from the C library.
_LIBC = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_REC, MS_PRIVATE = 1 << 14, 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
CAPABILITY_VERSION_3 = 0x20080522
SPARE_PROCESSES = 32


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySet(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc(name: str, *args) -> None:
    if getattr(_LIBC, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def _isolate(root: str, user_namespace: bool | None = None) -> None:
    """Leaves the network, the filesystem and the machine's processes for good. In namespaces
    of its own, the child makes an empty, read-only filesystem its root and drops the old
    one entirely (a chroot alone can be climbed out of by a process holding capabilities,
    as a user namespace gives), gives up every capability and the means to regain one, and
    becomes the first process of a namespace of its own."""
    if user_namespace is None:
        # Without root, a user namespace gives the rights to make the two others.
        user_namespace = os.geteuid() != 0
    becomes_nobody = os.geteuid() == 0 and not user_namespace
    # Decoders start a few threads (libheif does); a fork bomb would start thousands. The
    # limit counts every process of the user, so it is what runs as that user now, plus a
    # few: read while /proc can still be seen.
    processes = _processes_of(NOBODY if becomes_nobody else os.getuid()) + SPARE_PROCESSES
    # A process namespace too, whose first process the child becomes below: it can see no
    # process outside it, other checks' children included, and whatever it starts ends with
    # it. And an IPC namespace: shared memory it makes goes when it ends.
    flags = os.CLONE_NEWNET | os.CLONE_NEWNS | os.CLONE_NEWPID | os.CLONE_NEWIPC
    if user_namespace:
        flags |= os.CLONE_NEWUSER
    os.unshare(flags)
    _libc("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    new_root = root.encode()
    _libc("mount", b"sandbox", new_root, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k")
    os.chdir(root)
    # The new root over the old one, then the old one detached: nothing of the machine's
    # filesystem is left in this namespace, nor in any the child could make from it.
    _libc("pivot_root", b".", b".")
    _libc("umount2", b".", MNT_DETACH)
    os.chdir("/")
    read_only = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    _libc("mount", None, b"/", None, read_only, None)
    if becomes_nobody:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    header, nothing = _CapabilityHeader(CAPABILITY_VERSION_3, 0), (_CapabilitySet * 2)()
    _libc("capset", ctypes.byref(header), nothing)
    _libc("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _limit(resource.RLIMIT_NPROC, processes)
    _become_first_process()


def _become_first_process() -> None:
    """Goes on in a new process, the second of the new process namespace. The first only
    waits for it and ends as soon as it ends, which ends whatever else it started; it must
    not do the work itself, as the kernel spares a namespace's first process the signals
    that the CPU limit sends. This process, outside, waits too and ends as the check
    ended, signal and all, so that the worker sees what became of it."""
    first = os.fork()
    if first:
        _, status = os.waitpid(first, 0)
        code = os.waitstatus_to_exitcode(status)
        if code > 128:
            number = code - 128
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        os._exit(code)
    second = os.fork()
    if second:
        _, status = os.waitpid(second, 0)
        if os.WIFSIGNALED(status):
            os._exit(128 + os.WTERMSIG(status))
        os._exit(os.waitstatus_to_exitcode(status))


def _processes_of(uid: int) -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            owner = next(
                line for line in status.read_text().splitlines() if line.startswith("Uid:")
            )
        except (OSError, StopIteration):
            continue
        count += int(owner.split()[1]) == uid
    return count


def _decoder(kind: str):
    if kind == "pdf":
        from inquiries.documents import pdf as module
    elif kind == "dicom":
        from inquiries.documents import dicom as module
    elif kind == "zip":
        from inquiries.documents import archives as module
    else:
        from inquiries.documents import images as module
    return module


def probe(limits: Limits) -> str | None:
    """None if a child can be started with these limits here; else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="sandbox-root-") as root:
        os.chmod(root, 0o755)  # noqa: S103 - empty, and the child can write nothing
        probe = subprocess.run(  # noqa: S603 - our own program, no shell
            [
                sys.executable,
                "-I",
                str(Path(__file__).resolve()),
                "probe",
                "{}",
                json.dumps(asdict(limits)),
                root,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


def child_main(argv: list[str]) -> None:
    kind, options, limits, root = (
        argv[1],
        json.loads(argv[2]),
        Limits(**json.loads(argv[3])),
        argv[4],
    )
    # The lowest CPU priority there is: a file that takes all the CPU it is allowed takes it
    # only when nothing else, a reader's page above all, wants it.
    os.nice(19)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if limits.cpus:
        # The last cores of the machine, as many as files may be opened at once: the first
        # ones stay free for the web servers.
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[-limits.cpus :])
    _limit(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    # SIGXCPU at the limit, SIGKILL a second later should the child ignore it.
    _limit(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_CORE, 0)
    if kind == "probe":
        if limits.isolate:
            _isolate(root)
        return
    decoder = _decoder(kind)
    # Everything a decoder loads lazily must be loaded before the filesystem goes.
    decoder.prepare()
    if limits.isolate:
        _isolate(root)
    _limit(resource.RLIMIT_NOFILE, limits.open_files)
    out = FrameWriter(sys.stdout.buffer)
    # Set up and isolated: what goes wrong from here is the file's doing, not the machine's.
    out.send({"ready": True})
    out.stream.flush()
    # An archive is read where it lies (its standard input is the file itself), member by
    # member; any other file, whole.
    data = sys.stdin.buffer if kind == "zip" else sys.stdin.buffer.read()
    try:
        result = decoder.child(kind, data, options, out)
    except Refused as refused:
        out.end(refused=refused.code)
    except MemoryError:
        out.end(refused="too_complex")
    except Exception:  # whatever a decoder raises on a broken file means the same
        out.end(refused="damaged")
    else:
        out.end(**result)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from inquiries.documents import sandbox as this

    this.child_main(sys.argv)
