"""`python -m services.audit`: cross-checks PostgreSQL against the bucket (audit.py) and
reports what disagrees (report.py); a library function too, for suites that end with it:

    report = run_audit(settings)          # UploadSettings: database, bucket, endpoint
    assert report.clean, report.to_text()
"""

from .audit import DEFAULT_MULTIPART_MIN_AGE_SECONDS, run_audit
from .report import Action, Finding, FindingKind, Report

__all__ = [
    "Action",
    "DEFAULT_MULTIPART_MIN_AGE_SECONDS",
    "Finding",
    "FindingKind",
    "Report",
    "run_audit",
]
