"""AWS clients share the services' models (one copy per process) but not credentials:
each client signs with the credentials in force when it was made, against a store that
checks them."""
from __future__ import annotations

import secrets

import botocore.exceptions
import pytest

from services.common.clients import aws_client
from tests.conftest import REGION
from tests.fixtures.stores import aws_credentials, seaweedfs  # noqa: F401 (fixture)


def test_clients_share_models_and_keep_their_own_credentials(seaweedfs, moto_endpoint):
    good = seaweedfs.client()
    with aws_credentials("wrong-key", "wrong-secret"):
        wrong = aws_client("s3", region=REGION, endpoint_url=seaweedfs.endpoint)
    other_service = aws_client("sqs", region=REGION, endpoint_url=moto_endpoint)
    # One loader, so the S3 model was read once for both S3 clients.
    assert good._loader is wrong._loader is other_service._loader
    assert good.meta.service_model._service_description is \
        wrong.meta.service_model._service_description
    bucket = f"clients-{secrets.token_hex(4)}"
    good.create_bucket(Bucket=bucket)
    assert good.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        wrong.head_bucket(Bucket=bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
