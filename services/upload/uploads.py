"""The upload domain, composed: every use case around one shared core (core.py), as a
composer holds a core store and its capabilities; nothing is inherited. The servicers
(servicer.py) take what they serve from here."""

from __future__ import annotations

from dataclasses import dataclass

from .completion import Completion
from .confirmation import Confirmation
from .core import UploadCore
from .creation import Creation
from .files import Files
from .initiation import Initiation
from .part_urls import PartUrlIssuer
from .parts import MIN_PART_SIZE
from .recording import PartRecording
from .removal import Removal
from .resume import Resumption


@dataclass(frozen=True)
class Uploads:
    core: UploadCore
    initiation: Initiation  # v1: InitiateUpload
    creation: Creation  # v2: CreateUpload
    resumption: Resumption  # v2: GetUpload
    recording: PartRecording  # RecordPart, RecordParts
    part_urls: PartUrlIssuer  # GetPartUrls
    completion: Completion  # CompleteUpload
    removal: Removal  # AbortUpload, DeleteFile
    files: Files  # ListFiles, GetFile, GetDownloadUrl, GetQuota
    confirmation: Confirmation  # internal: ConfirmUpload, ListPendingConfirmations


def compose(
    core: UploadCore,
    *,
    part_size: int,
    max_file_size: int,
    v2_max_file_size: int = 5 * 1024**4,
    min_part_size: int = MIN_PART_SIZE,
) -> Uploads:
    """`part_size`/`max_file_size` are v1's; v2 chooses part sizes from `min_part_size`
    up, for files up to `v2_max_file_size`."""
    return Uploads(
        core=core,
        initiation=Initiation(core, part_size=part_size, max_file_size=max_file_size),
        creation=Creation(core, max_file_size=v2_max_file_size, min_part_size=min_part_size),
        resumption=Resumption(core),
        recording=PartRecording(core),
        part_urls=PartUrlIssuer(core),
        completion=Completion(core),
        removal=Removal(core),
        files=Files(core),
        confirmation=Confirmation(core),
    )
