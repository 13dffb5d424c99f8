"""The event processor SIGKILLed in the middle of a message: a real process
(`python -m services.events.server`) against moto's SQS and the real upload coordinator,
paused inside ConfirmUpload by a row lock this test holds on the file, then killed -9. The
message comes back after its visibility timeout, another processor takes it, and the file
is confirmed exactly once: UPLOADED once, one status event."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import psycopg2
import pytest
import redis

from services.common.file_events import channel_of
from tests.conftest import ROOT, wait_until

from .helpers import created_event, file_status, is_empty, queue_counts, stats, upload_file

pytestmark = pytest.mark.slow

VISIBILITY_SECONDS = 3


def start_events_process(
    tmp_path, *, queue_url: str, bucket: str, upload_address: str, common_settings: dict
) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "DROPFILE_ENV": "development",
        "DROPFILE_KEYS_DIR": str(tmp_path / "keys"),
        "AWS_REGION": common_settings["aws_region"],
        "AWS_ENDPOINT_URL": common_settings["aws_endpoint_url"],
        "S3_BUCKET": bucket,
        "SQS_QUEUE_URL": queue_url,
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_SECONDS),
        "UPLOAD_SERVICE_ADDR": upload_address,
        "UPLOAD_RPC_TIMEOUT_SECONDS": "60",
        "SERVICE_TOKEN": common_settings["service_token"],
        "PUBLIC_KEY": common_settings["public_key"],
        "CLOUD_RD_URI": common_settings["cloud_rd_uri"],
        "EVENTS_GRPC_PORT": "0",
        # The reconciler must not confirm behind the queue's back.
        "RECONCILE_GRACE_SECONDS": "86400",
        "RECONCILE_INTERVAL_SECONDS": "3600",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.events.server"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "events.log", "wb"),
    )


def confirmations_waiting_for_a_lock(conn, file_id: str) -> list[int]:
    """Backend pids of statements waiting for a lock on the file's row (ConfirmUpload)."""
    with conn.cursor() as cur:
        cur.execute(
            "select pid from pg_stat_activity where datname = current_database() "
            "and wait_event_type = 'Lock' and query ilike '%%FROM files%%' "
            "and pid <> pg_backend_pid()"
        )
        return [row[0] for row in cur.fetchall()]


class StatusEvents:
    """Every status change published for one user, as the live view hears them."""

    def __init__(self, redis_url: str, user_id: str) -> None:
        self._pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel_of(user_id))
        self.seen: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message:
                self.seen.append(json.loads(message["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pubsub.close()

    def statuses(self, file_id: str) -> list[str]:
        return [event["status"] for event in self.seen if event["fileId"] == file_id]


@pytest.mark.parametrize("orphan", ["cancelled", "finishes"])
def test_killed_mid_message_the_message_comes_back_and_confirms_exactly_once(
    orphan,
    tmp_path,
    make_queue,
    quiet_upload,
    quiet_bucket,
    start_processor,
    common_settings,
    database_url,
    make_token,
    s3,
    sqs,
):
    """`orphan`: what becomes of the ConfirmUpload the killed process left behind in the
    upload coordinator: its statement cancelled (retried by the coordinator, or confirmed
    by the redelivered message), or let finish once the lock is gone (the redelivered
    message finds it confirmed). Either way the file is confirmed exactly once."""
    queue = make_queue(max_receive_count=5)
    user_id = str(uuid.uuid4())
    token = make_token(user_id)
    uploaded = upload_file(quiet_upload.stub, token, size=2048)
    watcher = StatusEvents(common_settings["cloud_rd_uri"], user_id)
    lock = psycopg2.connect(database_url)
    observer = psycopg2.connect(database_url)
    observer.autocommit = True
    process = None
    try:
        with lock.cursor() as cur:  # ConfirmUpload blocks on this row until we let go
            cur.execute("select id from files where id = %s for update", (uploaded.file_id,))
        process = start_events_process(
            tmp_path,
            queue_url=queue.url,
            bucket=quiet_bucket,
            upload_address=quiet_upload.address,
            common_settings=common_settings,
        )
        sqs.send_message(
            QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, uploaded.s3_key)
        )
        [waiting] = wait_until(
            lambda: confirmations_waiting_for_a_lock(observer, uploaded.file_id),
            timeout=30,
            what="the events process's ConfirmUpload blocked on the row",
        )
        assert queue_counts(sqs, queue.url) == (0, 1)  # in flight, in the process's hands

        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL

        if orphan == "cancelled":
            with observer.cursor() as cur:
                cur.execute("select pg_cancel_backend(%s)", (waiting,))
        lock.rollback()
        if orphan == "finishes":
            wait_until(
                lambda: (
                    file_status(quiet_upload.stub, token, uploaded.file_id)
                    == "FILE_STATUS_UPLOADED"
                ),
                what="the orphaned confirmation to finish",
            )

        # Nobody deleted it: after its visibility timeout another processor receives it.
        processor = start_processor(
            sqs_queue_url=queue.url,
            s3_bucket=quiet_bucket,
            upload_service_addr=quiet_upload.address,
            sqs_visibility_timeout_seconds=VISIBILITY_SECONDS,
        )
        wait_until(
            lambda: stats(processor.stub, make_token).messages_deleted == 1,
            timeout=30,
            what="the message redelivered and deleted",
        )
        assert file_status(quiet_upload.stub, token, uploaded.file_id) == "FILE_STATUS_UPLOADED"
        counters = stats(processor.stub, make_token)
        assert counters.messages_received == 1
        if orphan == "finishes":
            assert counters.uploads_confirmed == 0  # found it confirmed
        else:
            # A cancelled statement is a transient failure the coordinator may retry for
            # the killed caller: either that retry or the redelivered message confirms;
            # once only, as the status events below show.
            assert counters.uploads_confirmed in (0, 1)
        assert is_empty(sqs, queue.url) and is_empty(sqs, queue.dlq_url)
        # A last marker change proves the watcher heard everything published before it.
        marker = upload_file(quiet_upload.stub, token, size=10)
        wait_until(lambda: watcher.statuses(marker.file_id), what="the marker's event")
        assert watcher.statuses(uploaded.file_id) == ["UPLOADED"]
        with observer.cursor() as cur:
            cur.execute(
                "select status, uploaded_at is not null from files where id = %s",
                (uploaded.file_id,),
            )
            assert cur.fetchone() == ("UPLOADED", True)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        watcher.close()
        lock.close()
        observer.close()
