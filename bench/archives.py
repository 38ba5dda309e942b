"""`make bench`, its third part: a scan disc's ZIP file, received, checked and stored.

Two discs are built here from real scans that pydicom ships for its tests, each written 320
times as the slices of one series (each slice its own instance), with a disc's index beside
them, as a hospital's disc holds them: CT_small.dcm (a CT slice from a real scanner, cut
down to 128 by 128, 39 KB), J2K_pixelrep_mismatch.dcm (a CT slice at a scanner's own 512 by
512, compressed losslessly with JPEG 2000 as many discs carry them, 135 KB) and
examples_overlay.dcm (an MR slice, 300 by 484, 314 KB). Then, side by side in one run, for
each:
- `unzip` extracting the same archive on this machine (the floor: the bytes taken out,
  nothing checked), against a worker's whole check of it (the sandbox, every scan checked
  and rewritten, each stored under a generated name, the rows written), for files on disk
  and for an S3 store (moto's server on this machine);
- the worker's peak memory growth during that check;
- the web server's peak memory growth while it receives the archive (bench/upload_memory).

Prints a table and adds it to bench/results.json under "archives".
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import upload_memory  # noqa: E402
from tables import as_records, print_table  # noqa: E402

from tests.servers import free_port, prepare, start, wait_for_port  # noqa: E402

SLICES = 320
ROUNDS = 3
TARGETS = {"ratio": 4.0, "worker_mb": 200, "web_mb": 50}
FILES = Path(pydicom.data.__file__).parent / "test_files"
SCANS = {
    "CT": FILES / "CT_small.dcm",
    "CT 512": FILES / "J2K_pixelrep_mismatch.dcm",
    "MR": FILES / "examples_overlay.dcm",
}
SCAN = SCANS["CT"]
INDEX = FILES / "dicomdirtests" / "DICOMDIR"
BUCKET = "cancerfax-bench"


def build_disc(path: Path, scan: Path = SCAN) -> int:
    dataset = pydicom.dcmread(scan)
    study, series = generate_uid(), generate_uid()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(INDEX, "DICOMDIR")
        for number in range(1, SLICES + 1):
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
            dataset.SOPInstanceUID = generate_uid()
            dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
            dataset.InstanceNumber = number
            dataset.SeriesDescription = "CHEST"
            member = tempfile.SpooledTemporaryFile()
            dataset.save_as(member, enforce_file_format=True)
            member.seek(0)
            archive.writestr(f"DICOM/ST000001/SE000001/IM{number:06d}", member.read())
    return sum(info.file_size for info in zipfile.ZipFile(path).infolist())


def unzip_seconds(path: Path) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(["unzip", "-qq", "-o", str(path), "-d", folder], check=True)
        return time.perf_counter() - started


def site_env(folder: Path, **extra: str) -> dict:
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": "bench-only-key-not-secret",
        "DJANGO_DEBUG": "0",
        "DATA_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
        "EMAIL_URL": "console:",
        # One check at a time, as on a machine of two cores.
        "DOCUMENT_CHECKS_AT_ONCE": "1",
        **extra,
    }


def unzip_and_put_seconds(path: Path, client) -> float:
    """The store's own floor: `unzip`, then each member put to the same S3 server by a plain
    loop of one boto3 client, nothing checked."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(["unzip", "-qq", "-o", str(path), "-d", folder], check=True)
        for number, member in enumerate(p for p in Path(folder).rglob("*") if p.is_file()):
            client.put_object(Bucket=BUCKET, Key=f"floor/{number}", Body=member.read_bytes())
        return time.perf_counter() - started


def worker_check(env: dict, path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "archive_worker.py"), str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def side_by_side(env: dict, path: Path, client=None) -> dict:
    ours, floor, stored, growth, child = [], [], [], [], []
    for _ in range(ROUNDS):
        floor.append(unzip_seconds(path))
        if client is not None:
            stored.append(unzip_and_put_seconds(path, client))
        checked = worker_check(env, path)
        if checked["accepted"] != SLICES:
            raise RuntimeError(f"only {checked['accepted']} of {SLICES} scans accepted")
        ours.append(checked["seconds"])
        growth.append(checked["growth_mb"])
        child.append(checked["child_mb"])
    return {
        "unzip_seconds": statistics.median(floor),
        "check_seconds": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(floor),
        "worker_growth_mb": max(growth),
        "sandbox_peak_mb": max(child),
        **({"unzip_put_seconds": statistics.median(stored)} if stored else {}),
    }


def moto_server(stack: ExitStack, folder: Path) -> str:
    port = free_port()
    log = folder / "moto.log"
    process = start(stack, [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)], log)
    wait_for_port(port, process, log)
    return f"http://127.0.0.1:{port}"


def main() -> int:
    figures: dict = {"slices": SLICES}
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="cancerfax-bench-archives-"))
        stack.callback(lambda: shutil.rmtree(folder, ignore_errors=True))
        local = folder / "local"
        local.mkdir()
        local_env = site_env(local)
        prepare(local_env, ["migrate", "-v0"])
        s3 = folder / "s3"
        s3.mkdir()
        endpoint = moto_server(stack, folder)
        s3_env = site_env(
            s3,
            DOCUMENTS_BUCKET=BUCKET,
            DOCUMENTS_S3_ENDPOINT_URL=endpoint,
            DOCUMENTS_S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="bench-not-a-key",
            AWS_SECRET_ACCESS_KEY="bench-not-a-secret",  # noqa: S106
        )
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench-not-a-key",
            aws_secret_access_key="bench-not-a-secret",  # noqa: S106
        )
        client.create_bucket(Bucket=BUCKET)
        prepare(s3_env, ["migrate", "-v0"])
        figures["discs"] = {}
        for kind, scan in SCANS.items():
            disc = folder / f"disc-{kind.replace(' ', '-')}.zip"
            unpacked = build_disc(disc, scan)
            figures["discs"][kind] = {
                "slice_kb": scan.stat().st_size / 1024,
                "unpacked_mb": unpacked / 1024 / 1024,
                "archive_mb": disc.stat().st_size / 1024 / 1024,
                "local": side_by_side(local_env, disc),
                "s3": side_by_side(s3_env, disc, client),
            }

        site = upload_memory.Site(folder / "web")
        stack.callback(site.stop)
        small = folder / "small.zip"
        with zipfile.ZipFile(small, "w") as archive:
            archive.write(SCAN, "IM000001")
        site.send("warm-up.zip", small)
        site.send("warm-up.zip", small)
        growth, status = upload_memory.growth(site, "disc.zip", folder / "disc-MR.zip")
        if status != 302:
            raise RuntimeError(f"the disc was not received: {status}")
        figures["web_growth_mb"] = growth

    records = rows(figures)
    print_table(records)
    out = ROOT / "bench" / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["archives"] = {"figures": figures, "table": as_records(records)}
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(row[-1] in ("yes", "") for row in records) else 1


def rows(figures: dict) -> list[tuple[str, ...]]:
    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    table = []
    for kind, disc in figures["discs"].items():
        about = (
            f"{figures['slices']} {kind} slices of {disc['slice_kb']:.0f} KB, "
            f"{disc['archive_mb']:.0f} MB zipped"
        )
        for store in ("local", "s3"):
            side = disc[store]
            name = "files on disk" if store == "local" else "S3 (moto)"
            table.append(
                (
                    f"Disc checked and stored, {about}, {name}",
                    f"{side['check_seconds']:.2f} s",
                    f"unzip {side['unzip_seconds']:.2f} s: {side['ratio']:.1f}×",
                    f"≤ {TARGETS['ratio']:g}×",
                    met(side["ratio"] <= TARGETS["ratio"]),
                )
            )
            if "unzip_put_seconds" in side:
                table.append(
                    (
                        f"The same disc, unzipped and each member put to the same S3 "
                        f"by a plain loop (the store's floor), {kind} disc",
                        f"{side['unzip_put_seconds']:.2f} s",
                        f"ours {side['check_seconds'] / side['unzip_put_seconds']:.1f}×",
                        "",
                        "",
                    )
                )
            table.append(
                (
                    f"Worker's peak memory growth, {kind} disc, {name} (its sandbox's peak)",
                    f"{side['worker_growth_mb']:.1f} MB ({side['sandbox_peak_mb']:.0f} MB)",
                    "",
                    f"< {TARGETS['worker_mb']} MB",
                    met(side["worker_growth_mb"] < TARGETS["worker_mb"]),
                )
            )
    table.append(
        (
            "Web server's peak memory growth receiving the MR disc",
            f"{figures['web_growth_mb']:.1f} MB",
            "",
            f"< {TARGETS['web_mb']} MB",
            met(figures["web_growth_mb"] < TARGETS["web_mb"]),
        )
    )
    return table


if __name__ == "__main__":
    sys.exit(main())
