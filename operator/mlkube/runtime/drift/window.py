"""Reading the live window in chunks, so memory stays flat in the number of rows.

Sources, chosen from ``--live PATH``:

- an inference-log directory (the server's contract): ``<store>/<ns>/<model>/inference/``
  with ``YYYY-MM-DD/HH/<writer-id>-<seq>.jsonl`` (UTC partitions; ``.jsonl.gz`` from an S3
  log, staged by ``drift.remote``). Partitions wholly
  outside the window are never opened; inside, each line's ``ts`` decides. A line that is
  not a JSON object is counted as corrupt; a row with ``status`` other than 200 or
  without ``inputs`` is counted as skipped. A file none of whose lines parse is an error.
  ``PATH`` may also be the model directory above ``inference/``.
- a data file for batch monitoring: CSV (pyarrow's streaming reader), Parquet (row-group
  batches) or JSON lines (flat records; lines shaped like inference-log records are read
  as a log, window and all). A data file has no time column, so every row is used.

Each source yields ``Block``s of feature columns (Arrow arrays, or lists for JSON), and
fills a ``WindowCounts``. A Parquet row group larger than a chunk is handed over a few
columns at a time, so a file written with one huge row group does not need its whole
width in memory. Errors the user can fix raise ``LiveDataError``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from mlkube.runtime.drift.accumulate import Block

CHUNK_ROWS: Final = 65_536
# Values (rows x columns) read at once from a Parquet row group: ~8 MB of float64.
BLOCK_CELLS: Final = 1_000_000
INFERENCE_DIR: Final = "inference"
LOG_SUFFIXES: Final = (".jsonl", ".jsonl.gz")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
KEY_SCAN_ROWS: Final = 100
_HOUR_DIR = re.compile(r"^\d{2}$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


class LiveDataError(Exception):
    """The live data cannot be read as asked; the message names the file and the problem."""


@dataclass
class WindowCounts:
    """What the reader saw, for the report: used rows are counted by the accumulator."""

    read: int = 0  # rows (or log lines) inside the window, usable or not
    skipped: int = 0  # log rows in the window that are failures or carry no inputs
    corrupt: int = 0  # log lines that are not JSON objects or have no readable ts
    files: int = 0
    windowed: bool = False  # rows were selected by ts (inference log), not a whole table
    seen_keys: set[str] = field(default_factory=set)  # input names seen (first rows per file)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def parse_duration(text: str) -> timedelta:
    """``24h``, ``90m``, ``1h30m``, ``7d``, ``1w`` (Go-style, plus d and w) as a timedelta."""
    cleaned = text.strip()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (use e.g. 24h, 90m, 7d)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _hour_dirs(root: Path, window: Window) -> list[Path]:
    """Hour partitions that may hold rows of the window, oldest first."""
    first_hour = window.start.replace(minute=0, second=0, microsecond=0)
    found: list[Path] = []
    for date_dir in sorted(p for p in root.iterdir() if _DATE_DIR.match(p.name) and p.is_dir()):
        for hour_dir in sorted(p for p in date_dir.iterdir() if _HOUR_DIR.match(p.name)):
            try:
                hour = datetime.strptime(f"{date_dir.name} {hour_dir.name}", "%Y-%m-%d %H")
            except ValueError:
                continue
            hour = hour.replace(tzinfo=UTC)
            if first_hour <= hour <= window.end and hour_dir.is_dir():
                found.append(hour_dir)
    return found


def _log_rows(
    lines: Iterator[bytes], source: str, window: Window, counts: WindowCounts
) -> Iterator[dict[str, Any]]:
    """The usable ``inputs`` of one log file's lines inside the window."""
    counts.windowed = True
    parsed_any = False
    lines_seen = 0
    scanned = 0
    for line in lines:
        if not line.strip():
            continue
        lines_seen += 1
        try:
            record = orjson.loads(line)
            ts = parse_time(record["ts"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            counts.corrupt += 1
            continue
        parsed_any = True
        if not window.start <= ts <= window.end:
            continue
        counts.read += 1
        inputs = record.get("inputs")
        if record.get("status") != 200 or not isinstance(inputs, dict) or not inputs:
            counts.skipped += 1
            continue
        if scanned < KEY_SCAN_ROWS:
            counts.seen_keys.update(inputs)
            scanned += 1
        yield inputs
    if lines_seen and not parsed_any:
        raise LiveDataError(f"{source}: no line is an inference-log record; is it a JSONL log?")


def read_lines(path: Path) -> Iterator[bytes]:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as compressed:
                yield from compressed
            return
        with path.open("rb") as handle:
            yield from handle
    except (EOFError, gzip.BadGzipFile) as error:
        raise LiveDataError(f"cannot read {path}: {error}") from None
    except OSError as error:
        raise LiveDataError(f"cannot read {path}: {error.strerror}") from None


def _record_block(batch: list[dict[str, Any]], features: Sequence[str]) -> Block:
    return Block(len(batch), [{f: [row.get(f) for row in batch] for f in features}])


def _frames(rows: Iterator[dict[str, Any]], features: Sequence[str]) -> Iterator[Block]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield _record_block(batch, features)
            batch = []
    if batch:
        yield _record_block(batch, features)


def read_inference_log(
    root: Path, features: Sequence[str], window: Window, counts: WindowCounts
) -> Iterator[Block]:
    """Chunks of the window's usable rows from an inference-log directory."""
    if (root / INFERENCE_DIR).is_dir():
        root = root / INFERENCE_DIR

    def rows() -> Iterator[dict[str, Any]]:
        for path in log_files(root, window):
            counts.files += 1
            yield from _log_rows(read_lines(path), str(path), window, counts)

    yield from _frames(rows(), features)


def log_files(root: Path, window: Window) -> Iterator[Path]:
    """The ``*.jsonl`` files of the hour partitions that may hold rows of the window."""
    try:
        hour_dirs = _hour_dirs(root, window)
    except OSError as error:
        raise LiveDataError(f"cannot list the inference log {root}: {error.strerror}") from None
    for hour_dir in hour_dirs:
        try:
            yield from sorted(p for p in hour_dir.iterdir() if p.name.endswith(LOG_SUFFIXES))
        except OSError as error:
            raise LiveDataError(f"cannot list {hour_dir}: {error.strerror}") from None


def _check_columns(source: Path, columns: Sequence[str], features: Sequence[str]) -> None:
    absent = [f for f in features if f not in columns]
    if absent:
        raise LiveDataError(
            f"{source} lacks feature column(s) of the reference: {', '.join(absent)} "
            f"(it has: {', '.join(list(columns)[:20])})"
        )


def _read_parquet(
    path: Path, features: Sequence[str], categorical: set[str], counts: WindowCounts
) -> Iterator[Block]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Categorical columns stay dictionary-encoded (codes + the few labels), as Parquet
        # stores them: no string per row is built, and counting is a bincount of codes.
        parquet = pq.ParquetFile(path, read_dictionary=sorted(categorical))
    except (OSError, pa.ArrowException) as error:
        raise LiveDataError(f"cannot read {path} as Parquet: {error}") from None
    _check_columns(path, parquet.schema_arrow.names, features)
    counts.files += 1

    def parts(group: int, rows: int) -> Iterator[dict[str, Any]]:
        width = max(1, BLOCK_CELLS // max(rows, 1))
        for start in range(0, len(features), width):
            subset = list(features[start : start + width])
            try:
                table = parquet.read_row_group(group, columns=subset)
            except (OSError, pa.ArrowException) as error:
                raise LiveDataError(f"cannot read {path}: {error}") from None
            yield {name: table.column(name) for name in subset}

    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        counts.read += rows
        yield Block(rows, parts(group, rows))


def _read_csv(
    path: Path, features: Sequence[str], categorical: set[str], counts: WindowCounts
) -> Iterator[Block]:
    import pyarrow as pa
    from pyarrow import csv

    read_options = csv.ReadOptions(block_size=8 << 20)
    try:
        header = csv.open_csv(path, read_options=read_options).schema.names
    except (OSError, pa.ArrowException) as error:
        raise LiveDataError(f"cannot read {path} as CSV: {error}") from None
    _check_columns(path, header, features)
    types = {f: (pa.string() if f in categorical else pa.float64()) for f in features}
    convert = csv.ConvertOptions(column_types=types, include_columns=list(features))
    counts.files += 1
    try:
        reader = csv.open_csv(path, read_options=read_options, convert_options=convert)
        for batch in reader:
            counts.read += batch.num_rows
            yield Block(batch.num_rows, [{f: batch.column(f) for f in features}])
    except (OSError, pa.ArrowException) as error:
        raise LiveDataError(f"cannot read {path} as CSV: {error}") from None


def _read_jsonl(
    path: Path, features: Sequence[str], window: Window, counts: WindowCounts
) -> Iterator[Block]:
    first = next((line for line in read_lines(path) if line.strip()), None)
    if first is None:
        return
    try:
        head = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise LiveDataError(f"{path}: the first line is not JSON") from None
    counts.files += 1
    if isinstance(head, dict) and "inputs" in head and "ts" in head:
        yield from _frames(_log_rows(read_lines(path), str(path), window, counts), features)
        return
    if not isinstance(head, dict):
        raise LiveDataError(f"{path}: lines must be JSON objects (one row each)")
    _check_columns(path, list(head), features)

    def rows() -> Iterator[dict[str, Any]]:
        for line in read_lines(path):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                counts.corrupt += 1
                continue
            if not isinstance(record, dict):
                counts.corrupt += 1
                continue
            counts.read += 1
            yield record

    yield from _frames(rows(), features)


def read_live(
    path: Path,
    features: Sequence[str],
    categorical: set[str],
    window: Window,
    counts: WindowCounts,
) -> Iterator[Block]:
    """Chunks of live rows (feature columns only) from a log directory or a data file."""
    if not path.exists():
        raise LiveDataError(f"live data {path} does not exist")
    if path.is_dir():
        return read_inference_log(path, features, window, counts)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        import pyarrow as pa

        # Column buffers here live for one block; the system allocator hands them back,
        # where Arrow's default pool keeps them (~15 MB more peak RSS per check).
        pa.set_memory_pool(pa.system_memory_pool())
    if name.endswith((".parquet", ".pq")):
        return _read_parquet(path, features, categorical, counts)
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(path, features, categorical, counts)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return _read_jsonl(path, features, window, counts)
    raise LiveDataError(
        f"{path}: unknown live data format (use .csv, .parquet, .jsonl or a log directory)"
    )
