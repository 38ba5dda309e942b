"""The table `make bench` prints, for bench/run.py and bench/documents.py alike."""

HEADER = ("Measure", "Measured", "Ratio", "Target", "")


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    widths = [max(len(str(row[i])) for row in [HEADER, *rows]) for i in range(5)]
    for row in [HEADER, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def as_records(rows: list[tuple[str, str, str, str, str]]) -> list[dict]:
    keys = ("measure", "measured", "ratio", "target", "verdict")
    return [dict(zip(keys, row, strict=True)) for row in rows]
