"""`dropfile share`, `links`, `unshare` and `quota`: the CLI's commands for share links
and the storage quota (cli.py mounts them with `add_commands`).

    dropfile share FILE_ID [--expires 24h] [--password] [--max-downloads N]
    dropfile links FILE_ID
    dropfile unshare LINK_ID
    dropfile quota
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .client import DropfileClient
from .errors import DropfileError
from .sharing import CreatedLink, ShareLink

EXIT_OK = 0
MAX_PASSWORD_BYTES = 72
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*", re.IGNORECASE)

Handler = Callable[[DropfileClient, argparse.Namespace], int]


class ShareCommandError(DropfileError):
    """A refusal by the CLI itself (bad input it cannot take)."""


def duration(text: str) -> int:
    """`90`, `90s`, `30m`, `24h`, `7d`, `2w` -> seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (like 3600, 30m, 24h, 7d or 2w)"
        )
    seconds = int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def download_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000000")
    return value


def human_size(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def link_password(args: argparse.Namespace) -> str | None:
    """The password asked for (--password: on the terminal, twice, not echoed;
    --password-stdin: the first line of stdin); None without either."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password:
        if not sys.stdin.isatty():
            raise ShareCommandError(
                "no terminal to ask for the link's password on; use --password-stdin"
            )
        password = getpass.getpass("Link password: ")
        if getpass.getpass("Link password (again): ") != password:
            raise ShareCommandError("the passwords do not match")
    else:
        return None
    if not password:
        raise ShareCommandError("the link's password must not be empty")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ShareCommandError(f"the link's password must be at most {MAX_PASSWORD_BYTES} bytes")
    return password


def _created_json(created: CreatedLink) -> dict[str, Any]:
    return {
        "linkId": created.link_id,
        "url": created.url,
        "expiresAt": _iso(created.expires_at),
        "maxDownloads": created.max_downloads,
        "passwordProtected": created.password_protected,
    }


def _link_json(link: ShareLink) -> dict[str, Any]:
    return {
        "linkId": link.link_id,
        "fileId": link.file_id,
        "createdAt": _iso(link.created_at),
        "expiresAt": _iso(link.expires_at),
        "maxDownloads": link.max_downloads,
        "downloadCount": link.download_count,
        "passwordProtected": link.password_protected,
        "state": link.state(),
    }


def cmd_share(client: DropfileClient, args: argparse.Namespace) -> int:
    password = link_password(args)
    created = client.create_link(
        args.file_id,
        expires_in=args.expires,
        password=password,
        max_downloads=args.max_downloads,
    )
    if args.json:
        print(json.dumps(_created_json(created), indent=2))
        return EXIT_OK
    # The URL alone on stdout (`url=$(dropfile share ID)`); what it is, on stderr.
    print(created.url)
    limit = (
        f"up to {created.max_downloads} download(s)"
        if created.max_downloads is not None
        else "unlimited downloads"
    )
    protection = "password protected" if created.password_protected else "no password"
    print(
        f"link {created.link_id}: expires {_when(created.expires_at)} UTC, {limit}, "
        f"{protection}. The URL is shown only now.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_links(client: DropfileClient, args: argparse.Namespace) -> int:
    links = client.links(args.file_id)
    if args.json:
        print(json.dumps([_link_json(link) for link in links], indent=2))
        return EXIT_OK
    if not links:
        print("no links")
        return EXIT_OK
    print(
        f"{'LINK ID':36}  {'CREATED (UTC)':16}  {'EXPIRES (UTC)':16}  "
        f"{'DOWNLOADS':>9}  {'PASSWORD':8}  STATE"
    )
    for link in links:
        limit = "" if link.max_downloads is None else f"/{link.max_downloads}"
        downloads = f"{link.download_count}{limit}"
        print(
            f"{link.link_id:36}  {_when(link.created_at):16}  {_when(link.expires_at):16}  "
            f"{downloads:>9}  {'yes' if link.password_protected else 'no':8}  {link.state()}"
        )
    return EXIT_OK


def cmd_unshare(client: DropfileClient, args: argparse.Namespace) -> int:
    client.revoke_link(args.link_id)
    print(f"revoked link {args.link_id}")
    return EXIT_OK


def cmd_quota(client: DropfileClient, args: argparse.Namespace) -> int:
    quota = client.quota()
    if args.json:
        print(
            json.dumps(
                {
                    "usedBytes": quota.used_bytes,
                    "uploadingBytes": quota.uploading_bytes,
                    "limitBytes": quota.limit_bytes,
                },
                indent=2,
            )
        )
        return EXIT_OK
    if quota.limit_bytes is None:
        print(f"used:      {human_size(quota.used_bytes)} (no limit)")
    else:
        share = 100 * quota.used_bytes / quota.limit_bytes if quota.limit_bytes else 100.0
        print(
            f"used:      {human_size(quota.used_bytes)} of {human_size(quota.limit_bytes)} "
            f"({share:.1f} %)"
        )
        print(f"free:      {human_size(quota.free_bytes or 0)}")
    print(f"uploading: {human_size(quota.uploading_bytes)} (uploads in progress, counted above)")
    return EXIT_OK


def add_commands(
    command: Callable[[str, Handler, str], argparse.ArgumentParser],
) -> None:
    """Adds the commands with cli.py's `command(name, handler, help)`."""
    share = command(
        "share",
        cmd_share,
        "make a link anyone can download an uploaded file through, without an account",
    )
    share.add_argument("file_id", metavar="FILE_ID")
    share.add_argument(
        "--expires",
        type=duration,
        default=None,
        metavar="DURATION",
        help="when the link stops working: 3600, 30m, 24h, 7d, 2w (default: the "
        "server's, 7 days; at most the server's maximum, 30 days by default)",
    )
    secret = share.add_mutually_exclusive_group()
    secret.add_argument(
        "--password",
        action="store_true",
        help="ask for a password the downloader must give (not echoed)",
    )
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the link's password from the first line of stdin",
    )
    share.add_argument(
        "--max-downloads",
        type=download_limit,
        default=None,
        metavar="N",
        help="downloads the link serves, then it stops (default: unlimited)",
    )
    share.add_argument("--json", action="store_true", help="print JSON, for scripts")

    links = command("links", cmd_links, "list a file's share links and their downloads")
    links.add_argument("file_id", metavar="FILE_ID")
    links.add_argument("--json", action="store_true", help="print JSON, for scripts")

    unshare = command("unshare", cmd_unshare, "revoke a share link: it stops working at once")
    unshare.add_argument("link_id", metavar="LINK_ID")

    quota = command("quota", cmd_quota, "show how much of your storage quota is used")
    quota.add_argument("--json", action="store_true", help="print JSON, for scripts")
