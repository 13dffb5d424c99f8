"""What an audit found and did, and how it is shown: text for people, JSON for tools."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class FindingKind(str, enum.Enum):
    # An object under users/ whose key no row has.
    UNKNOWN_OBJECT = "unknown_object"
    # An UPLOADED row whose object storage does not hold.
    MISSING_OBJECT = "missing_object"
    # An UPLOADED row whose object is not of the row's size.
    WRONG_SIZE = "wrong_size"
    # A multipart upload under users/ that no UPLOADING row expects parts for.
    ORPHAN_MULTIPART_UPLOAD = "orphan_multipart_upload"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    s3_key: str
    detail: str
    file_id: str | None = None
    upload_id: str | None = None
    # Bytes: the row's size (missing, wrong size), the object's (unknown, wrong size).
    expected_size: int | None = None
    stored_size: int | None = None


@dataclass(frozen=True)
class Action:
    """What --repair did about one finding (`done` False: left alone, `what` says why)."""

    finding: Finding
    done: bool
    what: str


@dataclass
class Report:
    bucket: str
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    repaired: bool = False  # --repair was asked for

    @property
    def clean(self) -> bool:
        return not self.findings

    def of_kind(self, kind: FindingKind) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind is kind]

    def to_dict(self) -> dict[str, Any]:
        def finding(item: Finding) -> dict[str, Any]:
            return {**asdict(item), "kind": item.kind.value}

        counts = {kind.value: len(self.of_kind(kind)) for kind in FindingKind}
        return {
            "bucket": self.bucket,
            "clean": self.clean,
            "counts": counts,
            "findings": [finding(item) for item in self.findings],
            "repair": self.repaired,
            "actions": [
                {"finding": finding(action.finding), "done": action.done, "what": action.what}
                for action in self.actions
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        lines = [
            f"audit of bucket {self.bucket} against PostgreSQL: "
            + ("clean" if self.clean else f"{len(self.findings)} finding(s)")
        ]
        for kind in FindingKind:
            found = self.of_kind(kind)
            if not found:
                continue
            lines.append(f"{kind.value} ({len(found)}):")
            lines.extend(f"  {item.s3_key}: {item.detail}" for item in found)
        if self.repaired:
            lines.append(
                f"repair ({sum(a.done for a in self.actions)} of {len(self.actions)} done):"
            )
            lines.extend(
                f"  {'done' if a.done else 'left'}: {a.finding.s3_key}: {a.what}"
                for a in self.actions
            )
        return "\n".join(lines)
