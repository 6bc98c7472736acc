"""Backup storage over ``airflow.sdk.ObjectStoragePath``: layout, manifests, checksums, deletion.

Layout (one folder per backup, the manifest written last)::

    <location>/<database slug>/<run key>/dump.pgcustom.zst        custom format (pg_dump -Z0) through zstd
    <location>/<database slug>/<run key>/dump.pgcustom            custom format, pg_dump's own gzip
    <location>/<database slug>/<run key>/dump.dir/<file>          directory format, one object per file
    <location>/<database slug>/<run key>/manifest.json            written LAST: no manifest = incomplete
    <location>/<database slug>/<run key>/verification.json        written by VerifyBackupOperator

Why a slug and not the raw database name: names may hold quotes, spaces, semicolons or slashes;
the slug keeps keys portable (S3, local paths) and stays unique with a short hash of the real
name, which the manifest records verbatim.

Locations: ``s3://<aws conn id>@<bucket>/<prefix>`` (any S3 endpoint via the connection's
``endpoint_url`` extra), ``file:///absolute/path`` or a plain absolute path (the embedded default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

# defined in exceptions.py, one hierarchy; still importable from here
from recovery_provider.exceptions import BackupCorrupt as BackupCorrupt
from recovery_provider.exceptions import BackupIncomplete as BackupIncomplete
from recovery_provider.exceptions import RecoveryError
from recovery_provider.exceptions import StorageError as StorageError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
MANIFEST_VERSION = 1
CHUNK = 1024 * 1024
# S3 parts written: memory stays bounded by one part, whatever the backup's size. Reads are one GET
# per object (hooks/streams.py).
S3_BLOCK = 16 * CHUNK
DEFAULT_LOCATION_ENV = "RECOVERY_BACKUP_LOCATION"


def default_location() -> str:
    """``$RECOVERY_BACKUP_LOCATION``, else ``file://$AIRFLOW_HOME/recovery-backups``."""
    if os.environ.get(DEFAULT_LOCATION_ENV):
        return os.environ[DEFAULT_LOCATION_ENV]
    home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return f"file://{os.path.abspath(home)}/recovery-backups"


def slug(name: str) -> str:
    """A key-safe folder name for a database: readable, unique, no path or shell metacharacters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"
    if cleaned == name:
        return name
    return f"{cleaned[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def run_key_safe(key: str) -> str:
    """Run keys come from logical dates or run ids: keep them to key-safe characters."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)


@dataclasses.dataclass
class BackupInfo:
    """One backup folder as listed: complete when its manifest is present and parses."""

    run_key: str
    path: ObjectStoragePath
    manifest: dict[str, Any] | None
    verified: bool

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def finished_at(self) -> dt.datetime | None:
        if not self.manifest:
            return None
        return dt.datetime.fromisoformat(self.manifest["finished_at"])


def manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def zstd_level(compression: str | None) -> int | None:
    """The zstd level of a manifest's ``compression`` ("zstd:1"), None for pg_dump's own compression."""
    if not compression or not compression.startswith("zstd"):
        return None
    _, _, level = compression.partition(":")
    return int(level) if level else 1


class BackupStore:
    """All reads and writes of backups at one location."""

    def __init__(self, location: str | None = None) -> None:
        from airflow.sdk import ObjectStoragePath

        text = (location or default_location()).rstrip("/")
        if "://" not in text:
            if not text.startswith("/"):
                raise RecoveryError(
                    f"backup location '{text}' is neither a URL nor an absolute path: "
                    "use s3://<conn id>@<bucket>/<prefix> or file:///absolute/path"
                )
            text = "file://" + text
        self.location = text
        self.root = ObjectStoragePath(text)
        self.is_local = self.root.protocol in ("file", "local", "")

    # -- layout -----------------------------------------------------------------------------------

    def database_path(self, database: str) -> ObjectStoragePath:
        return self.root / slug(database)

    def backup_path(self, database: str, run_key: str) -> ObjectStoragePath:
        return self.database_path(database) / run_key_safe(run_key)

    def error(self, exc: BaseException, doing: str) -> StorageError:
        """A storage failure as an error that says where and what to check."""
        hint = (
            f"check the Airflow connection '{self.root.conn_id}' (endpoint_url, credentials, region) and that "
            "the bucket exists; botocore's retries come from the connection extra config_kwargs.retries"
            if not self.is_local else "check that the path exists and is writable by the worker"
        )
        return StorageError(f"backup storage {self.location}: {doing} failed ({type(exc).__name__}: {exc}); {hint}")

    def describe(self, path: ObjectStoragePath) -> str:
        """The path as a URL without credentials (a conn id is a name, not a secret)."""
        return str(path)

    def refresh(self) -> None:
        """Forget cached listings: another process may have written since (s3fs caches them)."""
        with contextlib.suppress(Exception):
            self.root.fs.invalidate_cache()

    # -- objects ----------------------------------------------------------------------------------

    def prepare_dir(self, path: ObjectStoragePath) -> None:
        if self.is_local:
            path.mkdir(parents=True, exist_ok=True)

    def open_write(self, path: ObjectStoragePath, block_size: int) -> Any:
        """A writable file object; S3 uploads in ``block_size`` parts, so memory stays bounded."""
        if self.is_local:
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("wb")  # type: ignore[no-untyped-call]
        return path.open("wb", block_size=block_size)  # type: ignore[no-untyped-call]

    def write_chunks(self, path: ObjectStoragePath, chunks: Iterable[bytes], block_size: int) -> tuple[int, str]:
        """Write chunks as they come, hashing as we go; returns (size, sha256 hex)."""
        digest, size = hashlib.sha256(), 0
        with self.open_write(path, block_size) as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def read_chunks(self, path: ObjectStoragePath, chunk_size: int = CHUNK) -> Iterable[bytes]:
        if not self.is_local:
            from recovery_provider.hooks.streams import s3_object_chunks

            yield from s3_object_chunks(path, chunk_size)
            return
        with path.open("rb") as src:  # type: ignore[no-untyped-call]
            while True:
                chunk = src.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    def hash_object(self, path: ObjectStoragePath) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        for chunk in self.read_chunks(path):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def write_json(self, path: ObjectStoragePath, document: dict[str, Any]) -> None:
        """Write a small JSON document so that readers see all of it or nothing."""
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        if self.is_local:
            tmp = path.parent / (path.name + ".partial")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as out:  # type: ignore[no-untyped-call]
                out.write(data)
            os.replace(tmp.path, path.path)  # atomic on one filesystem
        else:
            with path.open("wb") as out:  # type: ignore[no-untyped-call]  # one PUT: atomic on S3
                out.write(data)

    def read_json(self, path: ObjectStoragePath) -> dict[str, Any] | None:
        """The document, or None when absent or unreadable (a torn write is not a manifest)."""
        try:
            value = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        except Exception as exc:
            raise self.error(exc, f"reading {path.name}") from None
        return value if isinstance(value, dict) else None

    # -- backups ----------------------------------------------------------------------------------

    def manifest(self, database: str, run_key: str) -> dict[str, Any] | None:
        self.refresh()
        document = self.read_json(self.backup_path(database, run_key) / MANIFEST)
        if document is None or document.get("manifest_version") != MANIFEST_VERSION or "objects" not in document:
            return None
        return document

    def is_verified(self, path: ObjectStoragePath, manifest: dict[str, Any]) -> bool:
        mark = self.read_json(path / VERIFICATION)
        return bool(mark and mark.get("manifest_sha256") == manifest_digest(manifest) and mark.get("ok"))

    def list_backups(self, database: str) -> list[BackupInfo]:
        """Every backup folder of a database, oldest first (complete ones by finish time)."""
        self.refresh()
        base = self.database_path(database)
        try:
            if not base.exists():
                return []
            folders = [p for p in base.iterdir() if p.is_dir()]
        except Exception as exc:
            raise self.error(exc, "listing backups") from None
        found = []
        for folder in folders:
            document = self.read_json(folder / MANIFEST)
            if document is not None and (document.get("manifest_version") != MANIFEST_VERSION or "objects" not in document):
                document = None
            verified = bool(document) and self.is_verified(folder, document or {})
            found.append(BackupInfo(folder.name, folder, document, verified))
        epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        found.sort(key=lambda b: (b.finished_at or epoch, b.run_key))
        return found

    def databases(self) -> list[str]:
        """Folder names (slugs) of every database with backups here; a slug addresses its folder too."""
        self.refresh()
        try:
            if not self.root.exists():
                return []
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except Exception as exc:
            raise self.error(exc, "listing databases") from None

    def newest(self, database: str, *, verified_only: bool) -> BackupInfo | None:
        candidates = [b for b in self.list_backups(database) if b.complete and (b.verified or not verified_only)]
        return candidates[-1] if candidates else None

    def verify(self, path: ObjectStoragePath, manifest: dict[str, Any]) -> list[str]:
        """Re-read every object and compare size and SHA-256 with the manifest; [] when all match.

        zstd objects are also decompressed on the fly (nothing kept): each frame carries a content
        checksum, so this proves the dump inside decodes, not only that the stored bytes are intact.
        """
        problems = []
        for entry in manifest["objects"]:
            target = path / entry["key"]
            try:
                if entry["key"].endswith(".zst"):
                    size, sha = self._hash_and_decode(target, entry)
                else:
                    size, sha = self.hash_object(target)
            except BackupCorrupt as exc:
                problems.append(f"{entry['key']}: {exc}")
                continue
            except FileNotFoundError:
                problems.append(f"{entry['key']}: missing")
                continue
            except Exception as exc:
                raise self.error(exc, f"reading {entry['key']}") from None
            if size != entry["size"]:
                problems.append(f"{entry['key']}: {size} bytes stored, manifest says {entry['size']}")
            elif sha != entry["sha256"]:
                problems.append(f"{entry['key']}: SHA-256 {sha[:16]}... does not match the manifest's {entry['sha256'][:16]}...")
        return problems

    def _hash_and_decode(self, path: ObjectStoragePath, entry: dict[str, Any]) -> tuple[int, str]:
        """Size and SHA-256 of the stored bytes; decoding problems count only when those match."""
        import zstandard

        digest, size, raw = hashlib.sha256(), 0, 0
        decoder: Any = zstandard.ZstdDecompressor().decompressobj()
        problem = None
        for chunk in self.read_chunks(path):
            digest.update(chunk)
            size += len(chunk)
            if problem is None:
                try:
                    raw += len(decoder.decompress(chunk))
                except zstandard.ZstdError as exc:
                    problem = f"not a valid zstd stream ({exc})"
        sha = digest.hexdigest()
        if size != entry["size"] or sha != entry["sha256"]:
            return size, sha  # the caller reports the mismatch: the clearer message
        if problem is None and not decoder.eof:
            problem = "the zstd stream ends before its last frame does (truncated)"
        if problem is None and entry.get("uncompressed_size") not in (None, raw):
            problem = f"decompresses to {raw} bytes, manifest says {entry['uncompressed_size']}"
        if problem:
            raise BackupCorrupt(problem)
        return size, sha

    def delete_backup(self, path: ObjectStoragePath) -> None:
        """Manifest first: an interrupted deletion leaves an incomplete backup, never a torn complete one."""
        for name in (MANIFEST, VERIFICATION):
            with contextlib.suppress(FileNotFoundError):
                target = path / name
                if target.exists():
                    target.unlink()
        self.remove_tree(path)

    def remove_tree(self, path: ObjectStoragePath) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path, recursive=True)
        self.refresh()
