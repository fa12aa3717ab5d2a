"""The backup file: every ordercore table, as JSON Lines, in a zip with a manifest.

Format ``ordercore-backup`` version 1 (``docs/concepts/export.md`` documents it)::

    manifest.json          {"format": "ordercore-backup", "version": 1, "created_at": ...,
                            "schema_revision": "0004", "ordercore_version": ...,
                            "tables": [{"name", "file", "rows", "sha256", "columns"}, ...]}
    tables/<name>.jsonl    one JSON object per row, by primary key

A column's values are JSON numbers (integers: ids, minor units, counts), strings, booleans,
null, ISO 8601 UTC times with microseconds (``"2026-11-24T08:30:15.123456+00:00"``) and, for
binary columns, base64 text; ``columns`` in the manifest says which. ``sha256`` is the hash
of the table's file, checked for every table before anything is restored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import IO, Any, Final

from attrs import frozen

from ordercore._errors import InvalidField

__all__ = ["FORMAT", "VERSION", "BackupManifest", "TableEntry", "read_backup", "write_backup"]

FORMAT: Final = "ordercore-backup"
VERSION: Final = 1
MANIFEST: Final = "manifest.json"
_BATCH: Final = 500


@frozen
class TableEntry:
    name: str
    file: str
    rows: int
    sha256: str
    columns: Mapping[str, str]


@frozen
class BackupManifest:
    created_at: str
    schema_revision: str
    ordercore_version: str
    tables: tuple[TableEntry, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_at": self.created_at,
            "schema_revision": self.schema_revision,
            "ordercore_version": self.ordercore_version,
            "tables": [
                {
                    "name": t.name,
                    "file": t.file,
                    "rows": t.rows,
                    "sha256": t.sha256,
                    "columns": dict(t.columns),
                }
                for t in self.tables
            ],
        }


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "bool":
        return bool(value)
    return value


def _bad(what: str) -> InvalidField:
    return InvalidField(f"the backup is not usable: {what}", field="backup")


def _decode(kind: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "time":
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("no offset")
            return moment.astimezone(timezone.utc)
        if kind == "bytes":
            return base64.b64decode(value, validate=True)
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "str" and isinstance(value, str):
            return value
    except (ValueError, TypeError, binascii.Error):
        pass
    raise _bad(f"{where}: {value!r} is not a valid {kind} value")


def write_backup(
    out: str | IO[bytes],
    tables: Iterable[tuple[str, Mapping[str, str], Iterable[Sequence[Any]]]],
    *,
    created_at: datetime,
    schema_revision: str,
    ordercore_version: str,
    progress: Callable[[int], None] | None = None,
) -> BackupManifest:
    """Write the backup of ``tables`` (each: base name, column kinds in row order, rows)."""
    entries = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, columns, rows in tables:
            file = f"tables/{name}.jsonl"
            digest = hashlib.sha256()
            count = 0
            kinds = list(columns.items())
            with zf.open(file, "w", force_zip64=True) as raw:
                for row in rows:
                    obj = {col: _encode(kind, v) for (col, kind), v in zip(kinds, row, strict=True)}
                    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
                    data = line.encode("utf-8")
                    raw.write(data)
                    digest.update(data)
                    count += 1
                    if progress is not None and count % 10_000 == 0:
                        progress(10_000)
            if progress is not None:
                progress(count % 10_000)
            entries.append(TableEntry(name, file, count, digest.hexdigest(), dict(columns)))
        manifest = BackupManifest(
            created_at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
            schema_revision,
            ordercore_version,
            tuple(entries),
        )
        zf.writestr(MANIFEST, json.dumps(manifest.as_json(), indent=2, ensure_ascii=False))
    return manifest


def _manifest(zf: zipfile.ZipFile) -> BackupManifest:
    try:
        data = json.loads(zf.read(MANIFEST))
    except KeyError:
        raise _bad(f"it has no {MANIFEST}") from None
    except (ValueError, UnicodeDecodeError):
        raise _bad(f"{MANIFEST} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(f"{MANIFEST} does not describe an {FORMAT} file")
    if data.get("version") != VERSION:
        raise _bad(
            f"format version {data.get('version')!r} is not {VERSION}, the one this ordercore reads"
        )
    try:
        tables = tuple(
            TableEntry(
                str(t["name"]),
                str(t["file"]),
                int(t["rows"]),
                str(t["sha256"]),
                {str(k): str(v) for k, v in dict(t["columns"]).items()},
            )
            for t in data["tables"]
        )
        return BackupManifest(
            str(data["created_at"]),
            str(data["schema_revision"]),
            str(data.get("ordercore_version", "")),
            tables,
        )
    except (KeyError, TypeError, ValueError):
        raise _bad(f"{MANIFEST} lacks a table's name, file, rows, sha256 or columns") from None


RowReader = Callable[[TableEntry], Iterator[list[dict[str, Any]]]]


def read_backup(source: str | IO[bytes]) -> tuple[BackupManifest, RowReader]:
    """Open a backup: its manifest (every table's checksum and row count checked) and a
    function that reads one table's rows back, decoded, in batches."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _bad(f"it is not a zip file ({exc})") from None
    manifest = _manifest(zf)
    for entry in manifest.tables:
        digest = hashlib.sha256()
        lines = 0
        try:
            with zf.open(entry.file) as raw:
                while chunk := raw.read(1 << 16):
                    digest.update(chunk)
                    lines += chunk.count(b"\n")
        except KeyError:
            raise _bad(f"{entry.file} is missing") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise _bad(f"{entry.file} cannot be read ({exc})") from None
        if digest.hexdigest() != entry.sha256:
            raise _bad(f"{entry.file} does not match its sha256 in the manifest (altered?)")
        if lines != entry.rows:
            raise _bad(f"{entry.file} has {lines} rows, the manifest says {entry.rows}")

    def rows(entry: TableEntry) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        with zf.open(entry.file) as raw:
            for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), 1):
                where = f"{entry.file} line {number}"
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise _bad(f"{where} is not JSON") from None
                if not isinstance(obj, dict) or set(obj) != set(entry.columns):
                    raise _bad(f"{where} does not have the manifest's columns")
                batch.append(
                    {col: _decode(kind, obj[col], where) for col, kind in entry.columns.items()}
                )
                if len(batch) >= _BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    return manifest, rows
