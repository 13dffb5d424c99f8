"""The queue `services.setup` makes: S3 may send to it for Dropfile's bucket only, as the
bucket owner's account; a message that keeps failing is dead-lettered after
SQS_MAX_RECEIVE_COUNT receives. Read back from moto's SQS (which stores the policy but does
not enforce it, so the document itself is what is checked)."""

from __future__ import annotations

import json
import secrets

from services.setup import SetupSettings, ensure_queues, queue_policy, run_setup

ACCOUNT = "123456789012"  # moto's


def attributes(sqs, queue_url: str) -> dict:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]


def test_the_queue_accepts_only_its_bucket_as_its_account(sqs, moto_endpoint):
    # A queue of its own: moto forgets a queue's Policy when another attribute is set
    # (the browser tests delay the session queue's messages), real SQS does not.
    name = f"dropfile-policy-{secrets.token_hex(4)}"
    bucket = f"dropfile-policy-{secrets.token_hex(4)}"
    run_setup(
        SetupSettings(
            _env_file=None,
            aws_endpoint_url=moto_endpoint,
            s3_bucket=bucket,
            sqs_queue_url=f"{moto_endpoint}/{ACCOUNT}/{name}",
        )
    )
    found = attributes(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])
    [statement] = json.loads(found["Policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == found["QueueArn"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }


def test_the_redrive_policy_uses_the_setting_and_defaults_to_five(sqs, moto_endpoint):
    assert SetupSettings(_env_file=None).sqs_max_receive_count == 5
    name = f"dropfile-policy-{secrets.token_hex(4)}"
    bucket = f"dropfile-policy-{secrets.token_hex(4)}"
    settings = SetupSettings(
        _env_file=None,
        aws_endpoint_url=moto_endpoint,
        s3_bucket=bucket,
        sqs_queue_url=f"{moto_endpoint}/{ACCOUNT}/{name}",
    )
    run_setup(settings)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    dlq_arn = attributes(sqs, sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"])["QueueArn"]
    redrive = json.loads(attributes(sqs, url)["RedrivePolicy"])
    assert (str(redrive["maxReceiveCount"]), redrive["deadLetterTargetArn"]) == ("5", dlq_arn)
    # Set up again with another bucket: the policy follows it (the old bucket is refused).
    ensure_queues(sqs, name, 7, bucket=f"{bucket}-moved")
    found = attributes(sqs, url)
    assert json.loads(found["RedrivePolicy"])["maxReceiveCount"] in (7, "7")
    [statement] = json.loads(found["Policy"])["Statement"]
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": f"arn:aws:s3:::{bucket}-moved"}


def test_a_queue_arn_without_an_account_id_gets_no_account_condition():
    policy = queue_policy("arn:aws-cn:sqs:cn-north-1:local:events", "files")
    [statement] = policy["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": "arn:aws-cn:s3:::files"}}
