"""`python -m services.setup`: creates what Dropfile needs in storage when it is missing:
the bucket, its CORS rule (exposing ETag to browsers), its lifecycle rule aborting
multipart uploads left incomplete, the queue with its dead-letter queue, and the bucket's
ObjectCreated notification to the queue. On AWS these are infrastructure;
the command still works there with sufficient rights, and skips what the store lacks."""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pydantic import Field

from services.common.clients import aws_client
from services.common.logs import configure_logging
from services.common.settings import (
    CorsSettings,
    OptionalHttpUrl,
    StorageSettings,
    UrlSetting,
    load_settings,
    url_text,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import LifecycleRuleTypeDef
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("setup")


class SetupSettings(StorageSettings, CorsSettings):
    sqs_queue_url: OptionalHttpUrl = None
    # Receives after which a message that keeps failing moves to the dead-letter queue.
    sqs_max_receive_count: int = Field(default=5, ge=1, le=1000)
    # The upload coordinator's idle TTL (same variable): storage's lifecycle rule aborts
    # multipart uploads this long after initiation, rounded up to whole days.
    upload_idle_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=365 * 24 * 3600)


def queue_name_from_url(url: str | UrlSetting) -> str:
    url = url_text(url)
    name = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise ValueError(f"SQS_QUEUE_URL has no queue name: {url}")
    return name


def ensure_bucket(s3: S3Client, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        location = cast("BucketLocationConstraintType", region)  # any region S3 has
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})
    log.info("created bucket %s", bucket)


def ensure_cors(s3: S3Client, bucket: str, origins: list[str]) -> None:
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": origins,
                    "AllowedMethods": ["GET", "PUT", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


LIFECYCLE_RULE_ID = "dropfile-abort-incomplete-multipart-uploads"
# Where a store has no lifecycle support (answers of S3-compatible servers vary).
_LIFECYCLE_UNSUPPORTED = {
    "NotImplemented",
    "NotImplementedError",
    "UnsupportedOperation",
    "MethodNotAllowed",
    "XNotImplemented",
}


def lifecycle_days(idle_ttl_seconds: int) -> int:
    """Lifecycle rules count whole days: the TTL rounded up, at least one."""
    return max(1, math.ceil(idle_ttl_seconds / 86400))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_lifecycle(s3: S3Client, bucket: str, *, days: int) -> bool:
    """Storage aborts multipart uploads under `users/` `days` after initiation: the backstop
    of the upload coordinator's reaper. The bucket's other lifecycle rules are kept (ours is
    replaced by its id). False, with a warning, where the store has no lifecycle support."""
    kept: list[LifecycleRuleTypeDef]
    try:
        # Given back as they were read: the shape storage answers is the shape it takes.
        kept = cast(
            "list[LifecycleRuleTypeDef]",
            s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []),
        )
    except ClientError as exc:
        if _error_code(exc) in _LIFECYCLE_UNSUPPORTED:
            log.warning(
                "storage has no lifecycle rules (%s): incomplete multipart uploads "
                "are left to the reaper alone",
                _error_code(exc),
            )
            return False
        if _error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        kept = []
    ours: LifecycleRuleTypeDef = {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": "users/"},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }
    rules = [rule for rule in kept if rule.get("ID") != LIFECYCLE_RULE_ID] + [ours]
    try:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
    except ClientError as exc:
        if _error_code(exc) in _LIFECYCLE_UNSUPPORTED:
            log.warning(
                "storage has no lifecycle rules (%s): incomplete multipart uploads "
                "are left to the reaper alone",
                _error_code(exc),
            )
            return False
        raise
    return True


def queue_policy(queue_arn: str, bucket: str) -> dict[str, Any]:
    """Who may send to the queue: S3, for this bucket only (aws:SourceArn), and only as the
    account that owns it (aws:SourceAccount; the queue's own account, taken from its ARN,
    where that is an AWS account id). Without the conditions any bucket whose owner points
    its notifications at this queue could send it events."""
    _, partition, _, _, account, _ = queue_arn.split(":", 5)
    conditions: dict[str, dict[str, str]] = {
        "ArnEquals": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"}
    }
    if account.isdigit() and len(account) == 12:
        conditions["StringEquals"] = {"aws:SourceAccount": account}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "dropfile-bucket-events-only",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": conditions,
            }
        ],
    }


def ensure_queues(
    sqs: SQSClient, queue_name: str, max_receive_count: int, *, bucket: str
) -> tuple[str, str]:
    """Returns (queue_url, queue_arn), creating the queue and its dead-letter queue; the
    queue accepts S3's events of `bucket` only (queue_policy)."""
    dlq_url = sqs.create_queue(
        QueueName=f"{queue_name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
            "Policy": json.dumps(queue_policy(queue_arn, bucket)),
        },
    )
    return queue_url, queue_arn


def ensure_notification(s3: S3Client, bucket: str, queue_arn: str) -> None:
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "dropfile-object-created",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                }
            ],
        },
    )


def run_setup(settings: SetupSettings) -> None:
    s3 = aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_endpoint)
    ensure_bucket(s3, settings.s3_bucket, settings.aws_region)
    try:
        ensure_cors(s3, settings.s3_bucket, settings.cors_origin_list)
    except ClientError as exc:
        log.warning("bucket CORS not set (%s); browsers cannot read ETags", exc)
    try:
        ensure_lifecycle(
            s3, settings.s3_bucket, days=lifecycle_days(settings.upload_idle_ttl_seconds)
        )
    except ClientError as exc:
        log.warning(
            "bucket lifecycle rule not set (%s); the reaper still aborts incomplete "
            "multipart uploads",
            exc,
        )
    if settings.sqs_queue_url is None:
        log.info("SQS_QUEUE_URL not set: no queue or event notification")
        return
    sqs = aws_client("sqs", region=settings.aws_region, endpoint_url=settings.sqs_endpoint)
    _, queue_arn = ensure_queues(
        sqs,
        queue_name_from_url(settings.sqs_queue_url),
        settings.sqs_max_receive_count,
        bucket=settings.s3_bucket,
    )
    try:
        ensure_notification(s3, settings.s3_bucket, queue_arn)
    except ClientError as exc:
        log.warning("bucket event notification not set (%s)", exc)
    log.info("storage ready: bucket %s, queue %s", settings.s3_bucket, settings.sqs_queue_url)


def main() -> None:
    settings = load_settings(SetupSettings)
    configure_logging("setup", settings.log_level)
    try:
        run_setup(settings)
    except Exception as exc:  # any failure: one clear line, not a traceback
        print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
