"""The audit command: `python -m services.audit [--json] [--repair]`.

Settings are the upload coordinator's (CLOUD_DB_URI, S3_BUCKET, AWS_ENDPOINT_URL...).
Exit code: 0 when nothing was found, 1 when something was (with --repair too: run it again
to see what is left), 2 when the audit could not run (a bad setting, a backend down)."""

from __future__ import annotations

import argparse
import sys

from services.common.logs import configure_logging
from services.common.settings import load_settings
from services.upload.settings import UploadSettings

from .audit import DEFAULT_MULTIPART_MIN_AGE_SECONDS, run_audit

EXIT_CLEAN, EXIT_FINDINGS, EXIT_FAILED = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.audit",
        description="Cross-check PostgreSQL against the bucket: objects no row knows, "
        "UPLOADED files whose object is missing or of the wrong size, multipart "
        "uploads no upload knows.",
        epilog="Exit code: 0 clean, 1 findings (also when --repair fixed them), 2 failed.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="abort orphan multipart uploads and mark UPLOADED files whose "
        "object is missing or of the wrong size FAILED; objects no row "
        "knows are reported, never deleted",
    )
    parser.add_argument(
        "--multipart-min-age-seconds",
        type=int,
        default=DEFAULT_MULTIPART_MIN_AGE_SECONDS,
        metavar="SECONDS",
        help="multipart uploads younger than this are not judged (an "
        "initiation commits its row just after creating one; default "
        "%(default)s)",
    )
    args = parser.parse_args(argv)
    if args.multipart_min_age_seconds < 0:
        parser.error("--multipart-min-age-seconds must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(UploadSettings)
    configure_logging("audit", settings.log_level)
    try:
        report = run_audit(
            settings, repair=args.repair, multipart_min_age_seconds=args.multipart_min_age_seconds
        )
    except Exception as exc:  # any failure: one clear line, not a traceback
        print(f"audit failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(report.to_json() if args.json else report.to_text())
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS


if __name__ == "__main__":
    sys.exit(main())
