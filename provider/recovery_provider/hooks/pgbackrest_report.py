"""pgBackRest's output as small, secret-free facts: ``info`` backups and ``verify`` reports (XCom-friendly)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def backup_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One backup of ``info --output=json`` as a small, secret-free dict (XCom-friendly)."""
    import datetime as dt

    def iso(epoch: Any) -> str | None:
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).isoformat() if epoch else None

    stamps = entry.get("timestamp") or {}
    info = entry.get("info") or {}
    repo = info.get("repository") or {}
    return {
        "label": entry.get("label"), "type": entry.get("type"), "prior": entry.get("prior"),
        "started_at": iso(stamps.get("start")), "finished_at": iso(stamps.get("stop")),
        "lsn_start": (entry.get("lsn") or {}).get("start"), "lsn_stop": (entry.get("lsn") or {}).get("stop"),
        "wal_start": (entry.get("archive") or {}).get("start"), "wal_stop": (entry.get("archive") or {}).get("stop"),
        "size_bytes": info.get("size"), "delta_bytes": info.get("delta"),
        "repo_size_bytes": repo.get("size"), "repo_delta_bytes": repo.get("delta"), "error": entry.get("error"),
    }


def parse_verify(output: str) -> dict[str, Any]:
    """``verify --verbose`` text as facts: the stanza's status, each backup's status, the problems."""
    status = re.search(r"stanza: \S+\s+status: (\S+)", output)
    backups = [{"label": m.group(1), "status": m.group(2)} for m in re.finditer(r"backup: (\S+), status: (\S+?),", output)]
    problems: list[str] = []
    subject = "repository"
    for line in output.splitlines():
        head = re.search(r"(archiveId: \S+|backup: \S+),", line)
        if head:
            subject = head.group(1).replace("archiveId", "WAL archive")
        counts = re.search(r"missing: (\d+), checksum invalid: (\d+), size invalid: (\d+), other: (\d+)", line)
        if counts and any(int(n) for n in counts.groups()):
            problems.append(f"{subject}: {counts.group(0)}")
        elif "No usable" in line:
            problems.append(line.strip())
    problems += [f"backup {b['label']}: {b['status']}" for b in backups if b["status"] != "valid"]
    ok = bool(status and status.group(1) == "ok") and not problems
    return {"ok": ok, "status": status.group(1) if status else None, "backups": backups, "problems": problems}
