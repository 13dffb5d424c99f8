"""The `dropfile` command line: a thin layer over DropfileClient.

Unix habits: results on stdout, errors on stderr as `dropfile: <message>`, exit status 0
on success, 1 on errors, 2 on usage errors, 130 on Ctrl-C; never a traceback (unless
asked for with -v, for an unexpected bug). Requests that fail in a way time may lift are
retried (--retries, --retry-deadline); an upload that still fails is kept, and running
the same command again resumes it. Ctrl-C aborts an upload."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import cli_share
from ._version import __version__
from .checksums import DEFAULT_PART_CHECKSUM, PART_CHECKSUMS
from .client import DEFAULT_PARALLEL, DEFAULT_WAIT_TIMEOUT, DropfileClient, FileInfo
from .config import DEFAULT_SERVER, SERVER_ENV
from .download import TargetExists
from .errors import DropfileError, NotSignedIn, UploadFailed, UploadInterrupted
from .retry import DEFAULT_RETRIES, DEFAULT_RETRY_DEADLINE, RetryPolicy

PROG = "dropfile"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = f"""\
The server is --server, else ${SERVER_ENV}, else the signed-in session's, else {DEFAULT_SERVER}.
The session is kept in $DROPFILE_CONFIG_DIR, $XDG_CONFIG_HOME/dropfile or ~/.config/dropfile.
"""


class CommandError(DropfileError):
    """A refusal by the CLI itself (bad input it cannot take)."""


def fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


# -- progress ------------------------------------------------------------------------------


class Bars:
    """Rich progress bars on stderr (bytes, rate and ETA), or nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled

    @contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[int, int], None]]:
        """One bar for one transfer; yields the (done, total) progress callback."""
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self._enabled,
            transient=False,
        )
        task = progress.add_task(label, total=max(total, 1))

        def update(done: int, _total: int) -> None:
            progress.update(task, completed=done)

        with progress:
            yield update
            if total == 0:
                progress.update(task, completed=1)


def progress_enabled(args: argparse.Namespace) -> bool:
    return args.progress if args.progress is not None else sys.stderr.isatty()


# -- credentials ---------------------------------------------------------------------------


def ask(label: str) -> str:
    if not sys.stdin.isatty():
        raise CommandError(f"{label.lower()} is required (no terminal to ask on)")
    return input(f"{label}: ").strip()


def read_password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for the password on; use --password-stdin")
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Password (again): ") != password:
            raise CommandError("the passwords do not match")
    if not password:
        raise CommandError("the password must not be empty")
    return password


# -- commands ------------------------------------------------------------------------------


def cmd_signup(client: DropfileClient, args: argparse.Namespace) -> int:
    email = args.email or ask("Email")
    name = args.name or (
        ask("Name") if sys.stdin.isatty() and not args.password_stdin else email.split("@")[0]
    )
    client.signup(email, read_password(args, confirm=True), name, remember=args.remember)
    print(f"signed up and signed in as {email} on {client.server}")
    return EXIT_OK


def cmd_login(client: DropfileClient, args: argparse.Namespace) -> int:
    email = args.email or ask("Email")
    client.login(email, read_password(args, confirm=False), remember=args.remember)
    print(f"signed in as {email} on {client.server}")
    return EXIT_OK


def cmd_logout(client: DropfileClient, args: argparse.Namespace) -> int:
    if not client.signed_in:
        print(f"not signed in to {client.server}")
        return EXIT_OK
    client.logout()
    print(f"signed out of {client.server}")
    return EXIT_OK


def cmd_status(client: DropfileClient, args: argparse.Namespace) -> int:
    status = client.status()
    print(f"server:    {status.server}")
    if not status.reachable:
        print(f"reachable: no ({status.problem})")
    elif status.ready:
        print("reachable: yes")
    else:
        print(f"reachable: yes, but not ready ({status.problem})")
    if status.signed_in:
        print(f"signed in: yes, as {status.email or 'unknown user'}")
    elif status.signed_in is None:
        print("signed in: unknown (could not check)")
    else:
        print("signed in: no")
    if client.session_file and client.session_file.exists():
        print(f"session:   {client.session_file}")
    return EXIT_OK if status.reachable else EXIT_ERROR


def cmd_upload(client: DropfileClient, args: argparse.Namespace) -> int:
    if not client.signed_in:
        raise NotSignedIn("not signed in")
    bars = Bars(progress_enabled(args))
    failures = 0
    for path in args.files:
        label = os.path.basename(path) or path
        try:
            with bars.bar(f"up {label}", _size_or_zero(path)) as update:
                info = client.upload(
                    path,
                    on_progress=update,
                    parallel=args.parallel,
                    wait=False,
                    checksum_algorithm=args.checksum,
                )
        except NotSignedIn:
            raise
        except UploadFailed as exc:  # its message names the file
            fail(exc.message)
            failures += 1
            continue
        except DropfileError as exc:
            fail(f"{label}: {exc.message}")
            failures += 1
            continue
        if args.wait:
            try:
                info = client.wait_until_uploaded(info.file_id, timeout=args.wait_timeout)
            except KeyboardInterrupt:
                fail(
                    f"interrupted while waiting for storage to confirm {info.file_id}; "
                    "the upload itself is complete"
                )
                return EXIT_INTERRUPTED
            except DropfileError as exc:
                fail(f"{label}: {exc.message}")
                failures += 1
                continue
        state = "" if info.status == "UPLOADED" else f", status {info.status}"
        print(f"uploaded {info.name} ({human_size(info.size)}{state}) as {info.file_id}")
    return EXIT_ERROR if failures else EXIT_OK


def _size_or_zero(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def cmd_ls(client: DropfileClient, args: argparse.Namespace) -> int:
    # A name filter: every word must appear in the name, whatever the case. The server
    # filters by the longest word (pages of 1,000 files each); the others are checked here.
    words = [word.casefold() for word in [*args.name_words, *(args.name or [])]]
    several = len(words) > 1
    # The newest --limit, and one more: are there more?
    wanted = None if args.limit is None or several else args.limit + 1
    files = client.list(name=max(words, key=len) if words else None, limit=wanted)
    if several:
        files = [info for info in files if all(w in info.name.casefold() for w in words)]
    if args.limit is not None and len(files) > args.limit:
        files = files[: args.limit]
        print(f"{PROG}: the newest {args.limit} files; there are more", file=sys.stderr)
    if args.json:
        print(json.dumps([_file_json(info) for info in files], indent=2))
        return EXIT_OK
    if not files:
        print("no files matching " + " ".join(map(repr, words)) if words else "no files")
        return EXIT_OK
    print(f"{'ID':36}  {'SIZE':>10}  {'STATUS':9}  {'CREATED (UTC)':16}  NAME")
    for info in files:
        created = info.created_at.strftime("%Y-%m-%d %H:%M") if info.created_at else "-"
        print(
            f"{info.file_id:36}  {human_size(info.size):>10}  {info.status:9}  "
            f"{created:16}  {info.name}"
        )
    return EXIT_OK


def _file_json(info: FileInfo) -> dict[str, Any]:
    return {
        "fileId": info.file_id,
        "fileName": info.name,
        "mimeType": info.mime_type,
        "size": info.size,
        "status": info.status,
        "createdAt": info.created_at.isoformat() if info.created_at else None,
    }


def cmd_get(client: DropfileClient, args: argparse.Namespace) -> int:
    info = client.get_file(args.file_id)
    bars = Bars(progress_enabled(args))
    try:
        with bars.bar(f"down {info.name}", info.size) as update:
            path = client.download(
                info.file_id,
                args.path,
                overwrite=args.force,
                on_progress=update,
                parallel=args.parallel,
            )
    except TargetExists as exc:
        raise CommandError(f"{exc.path} already exists (use --force to replace it)") from None
    print(f"saved {info.name} ({human_size(info.size)}) to {path}")
    return EXIT_OK


def cmd_rm(client: DropfileClient, args: argparse.Namespace) -> int:
    client.delete(args.file_id)
    print(f"deleted {args.file_id}")
    return EXIT_OK


# -- parsing -------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


def file_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def retry_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 0 and 1000")
    return value


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    return RetryPolicy(
        attempts=getattr(args, "retries", DEFAULT_RETRIES) + 1,
        deadline=getattr(args, "retry_deadline", DEFAULT_RETRY_DEADLINE),
    )


def build_parser() -> argparse.ArgumentParser:
    # --server and -v are accepted before and after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"the Dropfile server (default: ${SERVER_ENV}, the session's, or {DEFAULT_SERVER})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="report retries and refreshes on stderr",
    )
    common.add_argument(
        "--retries",
        type=retry_count,
        default=argparse.SUPPRESS,
        metavar="N",
        help="retries of a request that failed in a way time may lift (the "
        "server down, overloaded or failing, a timeout, a dropped "
        f"connection) (default: {DEFAULT_RETRIES})",
    )
    common.add_argument(
        "--retry-deadline",
        type=non_negative_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="how long one request keeps being retried (default: "
        f"{DEFAULT_RETRY_DEADLINE:g}); an upload that still fails is "
        "kept, and running the same command again resumes it",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Store large files on a Dropfile server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[DropfileClient, argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def credentials(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--email", help="account email (asked when omitted)")
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of stdin",
        )
        sub.add_argument(
            "--remember",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="a long-lived session (days) rather than one day (default: remember)",
        )

    def progress(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar (default: when stderr is a terminal)",
        )

    signup = command("signup", cmd_signup, "create an account and sign in")
    credentials(signup)
    signup.add_argument("--name", help="your name (default: asked, or the email's user part)")
    credentials(command("login", cmd_login, "sign in"))
    command("logout", cmd_logout, "sign out and forget the session")
    command("status", cmd_status, "show the server, whether it is reachable, and who is signed in")

    upload = command("upload", cmd_upload, "upload files")
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument(
        "--parallel",
        type=positive_int,
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"parts uploaded at a time (default: {DEFAULT_PARALLEL})",
    )
    upload.add_argument(
        "--checksum",
        choices=[name.lower() for name in PART_CHECKSUMS],
        default=DEFAULT_PART_CHECKSUM.lower(),
        help="each part's checksum, which storage verifies (default: "
        f"{DEFAULT_PART_CHECKSUM.lower()}; a resumed upload keeps its "
        "own)",
    )
    upload.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait until storage confirms each file (default: wait)",
    )
    upload.add_argument(
        "--wait-timeout",
        type=positive_seconds,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait (default: {DEFAULT_WAIT_TIMEOUT:g})",
    )
    progress(upload)

    ls = command("ls", cmd_ls, "list your files, newest first")
    ls.add_argument(
        "name_words",
        nargs="*",
        metavar="NAME",
        help="only files whose name contains this (any case; several: all of them)",
    )
    ls.add_argument(
        "--name",
        action="append",
        metavar="TEXT",
        help="only files whose name contains TEXT (any case), as NAME does",
    )
    ls.add_argument("--json", action="store_true", help="print JSON, for scripts")
    ls.add_argument(
        "--limit",
        type=file_count,
        metavar="N",
        help="only the newest N files (default: every file)",
    )

    get = command("get", cmd_get, "download a file")
    get.add_argument("file_id", metavar="FILE_ID")
    get.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="where to save it (a file or a directory; default: its name in the current directory)",
    )
    get.add_argument("-f", "--force", action="store_true", help="replace an existing file")
    get.add_argument(
        "--parallel",
        type=positive_int,
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"ranges downloaded at a time (default: {DEFAULT_PARALLEL})",
    )
    progress(get)

    rm = command("rm", cmd_rm, "delete a file")
    rm.add_argument("file_id", metavar="FILE_ID")

    cli_share.add_commands(command)  # share, links, unshare, quota
    return parser


@contextmanager
def verbose_logging(enabled: bool) -> Iterator[None]:
    logger = logging.getLogger("dropfile_client")
    if not enabled:
        # Retries stay quiet unless asked for: without a handler, logging's last resort
        # would print every retry's warning on stderr.
        quiet = logging.NullHandler()
        logger.addHandler(quiet)
        try:
            yield
        finally:
            logger.removeHandler(quiet)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    try:
        with verbose_logging(verbose):
            with DropfileClient(getattr(args, "server", None), retry=retry_policy(args)) as client:
                try:
                    status: int = args.handler(client, args)
                    return status
                except NotSignedIn as exc:
                    server = "" if client.server == DEFAULT_SERVER else f" --server {client.server}"
                    fail(f"{exc.message}: sign in with `{PROG} login{server}`")
                    return EXIT_ERROR
    except UploadInterrupted as exc:
        if exc.aborted:
            fail(f"interrupted; aborted the upload of {exc.file_name} (nothing was kept)")
        else:
            fail(
                f"interrupted; could not abort the upload of {exc.file_name} "
                f"(file id {exc.file_id}): {exc.abort_error}"
            )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except DropfileError as exc:
        fail(exc.message)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`dropfile ls | head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as exc:
        fail(exc.strerror or str(exc))
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback only on -v
        if verbose:
            traceback.print_exc()
        fail(f"unexpected error ({type(exc).__name__}): {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
