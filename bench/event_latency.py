"""4. Event latency: from storage's word that an object exists to the file's status UPLOADED
being visible through the API (the list, polled every 10 ms).

- SQS path (moto's S3 and SQS, the SQS stack): the start is the `eventTime` of the
  ObjectCreated event itself. The bench subscribes a queue of its own to the bucket beside
  Dropfile's, so it reads the same event the events service acts on.
- Reconciler path (SeaweedFS, the main stack): SeaweedFS sends no events, and its
  Last-Modified has whole-second resolution, so the start is the moment complete-upload
  was sent (the object cannot exist before it): if anything, this overstates the latency.
Each upload is one small part, put, recorded and completed as the browser client does."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from urllib.parse import unquote_plus

import boto3
import httpx

from .api import abort, api_client, initiate, sign_up
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row, percentile

POLL_SECONDS = 0.01
# The events service's reconciler period without SQS (services/events/settings.py).
RECONCILE_INTERVAL = 1.0
SIZE = 1024
OBSERVER_QUEUE = "bench-observer"


class EventObserver:
    """A queue of the bench's own, notified of every object created in moto's bucket."""

    def __init__(self, stack: BenchStack) -> None:
        e = stack.endpoints
        session = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name=e.region
        )
        self._sqs = session.client("sqs", endpoint_url=e.moto_endpoint)
        s3 = session.client("s3", endpoint_url=e.moto_endpoint)
        self._url = self._sqs.create_queue(QueueName=OBSERVER_QUEUE)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        config = s3.get_bucket_notification_configuration(Bucket=e.moto_bucket)
        config.pop("ResponseMetadata", None)
        config.setdefault("QueueConfigurations", []).append(
            {"Id": "bench-observer", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
        )
        s3.put_bucket_notification_configuration(
            Bucket=e.moto_bucket, NotificationConfiguration=config
        )
        self._seen: dict[str, float] = {}

    def event_time(self, key: str, timeout: float = 30) -> float:
        """The eventTime (epoch seconds) of the ObjectCreated event of `key`."""
        deadline = time.monotonic() + timeout
        while key not in self._seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no storage event for {key} within {timeout:.0f} s")
            reply = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in reply.get("Messages", []):
                for record in json.loads(message["Body"]).get("Records", []):
                    stamp = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
                    self._seen[unquote_plus(record["s3"]["object"]["key"])] = stamp.timestamp()
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return self._seen.pop(key)


def upload_small(client: httpx.Client, storage: httpx.Client) -> tuple[str, str, float]:
    """One single-part upload, completed; returns (file_id, s3 key, when complete was sent)."""
    file_id, reply = initiate(client, SIZE, name="event.bin")
    put = storage.put(
        reply["presignedUrls"][0],
        content=b"e" * SIZE,
        headers={"Content-Type": "application/octet-stream"},
    )
    if put.status_code != 200:
        abort(client, file_id, reply["uploadId"])
        raise RuntimeError(f"storage refused the part: {put.status_code} {put.text[:300]}")
    etag = put.headers["ETag"]
    client.post(
        "/api/files/record-chunk",
        json={"file_id": file_id, "chunk_index": 0, "size": str(SIZE), "etag": etag.strip('"')},
    ).raise_for_status()
    completing = time.time()
    client.post(
        "/api/files/complete-upload",
        json={
            "uploadId": reply["uploadId"],
            "fileId": file_id,
            "parts": [{"ETag": etag, "PartNumber": 1}],
        },
    ).raise_for_status()
    key = next(
        f["s3Key"] for f in client.get("/api/files/list").json()["files"] if f["fileId"] == file_id
    )
    return file_id, key, completing


def visible_at(client: httpx.Client, file_id: str, timeout: float = 60) -> float:
    """When the list first showed the file UPLOADED (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get("/api/files/list")
        if reply.status_code != 503:  # a backend's moment of unavailability: ask again
            files = reply.raise_for_status().json()["files"]
            if any(f["fileId"] == file_id and f["status"] == "UPLOADED" for f in files):
                return time.time()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"file {file_id} was not UPLOADED within {timeout:.0f} s")


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    e = stack.endpoints
    observer = EventObserver(stack)
    rows = {
        path: (
            results.add(Row(f"event.{path}.p50", "Event → UPLOADED", f"{label}: p50", "ms")),
            results.add(Row(f"event.{path}.p99", "Event → UPLOADED", f"{label}: p99", "ms")),
        )
        for path, label in (
            ("sqs", "SQS path (moto S3 → SQS → events)"),
            ("reconciler", "reconciler path (SeaweedFS, HEAD every 1 s)"),
        )
    }
    # Fresh accounts: the list polled stays one file long.
    accounts = {
        "sqs": (e.gateway_sqs, sign_up(e.gateway_sqs, "bench-events-sqs")),
        "reconciler": (e.gateway, sign_up(e.gateway, "bench-events")),
    }
    clients = {path: api_client(url, account) for path, (url, account) in accounts.items()}
    storage = httpx.Client(timeout=60)
    try:
        for round_number in range(config.rounds):
            lags: dict[str, list[float]] = {"sqs": [], "reconciler": []}
            for _ in range(config.event_uploads):
                for path, client in clients.items():
                    stack.check_alive()
                    if path == "reconciler":
                        # Uploads one after another would complete at the same moment of
                        # every reconciler tick: a random pause spreads them over its period.
                        time.sleep(random.uniform(0, RECONCILE_INTERVAL))
                    file_id, key, completing = upload_small(client, storage)
                    seen = visible_at(client, file_id)
                    start = observer.event_time(key) if path == "sqs" else completing
                    lags[path].append((seen - start) * 1000)
                    client.request(
                        "DELETE", "/api/files/delete", json={"file_id": file_id}
                    ).raise_for_status()
            for path, (p50, p99) in rows.items():
                p50.samples.append(percentile(lags[path], 50))
                p99.samples.append(percentile(lags[path], 99))
            say(
                f"  round {round_number + 1}: "
                + ", ".join(
                    f"{path} p50 {rows[path][0].samples[-1]:.0f} ms p99 "
                    f"{rows[path][1].samples[-1]:.0f} ms"
                    for path in rows
                )
            )
    finally:
        storage.close()
        for client in clients.values():
            client.close()
