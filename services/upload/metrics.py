"""Prometheus series of the upload coordinator and its reaper (served with the shared
ones, services/common/metrics.py, on METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPLOADS_INITIATED = Counter("dropfile_uploads_initiated_total", "Multipart uploads started")
UPLOADS_COMPLETED = Counter(
    "dropfile_uploads_completed_total", "Multipart uploads completed in storage"
)
UPLOADS_CONFIRMED = Counter("dropfile_uploads_confirmed_total", "Files marked UPLOADED")
UPLOAD_PARTS = Counter("dropfile_upload_parts_recorded_total", "Parts recorded")
UPLOAD_BYTES = Counter("dropfile_upload_bytes_recorded_total", "Bytes in recorded parts")
EVENT_LAG = Histogram(
    "dropfile_event_lag_seconds",
    "From the storage event's time to the file being UPLOADED",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
# action: upload_expired, completion_recovered, orphan_aborted (reaper.py).
REAPER_ACTIONS = Counter("dropfile_reaper_actions_total", "Cleanup actions", ["action"])
