"""AWS clients share the services' models (one copy per process) but not credentials:
each client signs with the credentials in force when it was made, against a store that
checks them."""

from __future__ import annotations

import secrets

import botocore.exceptions
import pytest

from services.common.clients import aws_client
from tests.conftest import REGION
from tests.fixtures.stores import aws_credentials

pytestmark = pytest.mark.slow


def test_clients_share_models_and_keep_their_own_credentials(seaweedfs, moto_endpoint):
    good = seaweedfs.client()
    with aws_credentials("wrong-key", "wrong-secret"):
        wrong = aws_client("s3", region=REGION, endpoint_url=seaweedfs.endpoint)
    other_service = aws_client("sqs", region=REGION, endpoint_url=moto_endpoint)
    # One loader, so the S3 model was read once for both S3 clients.
    assert good._loader is wrong._loader is other_service._loader
    assert (
        good.meta.service_model._service_description
        is wrong.meta.service_model._service_description
    )
    bucket = f"clients-{secrets.token_hex(4)}"
    good.create_bucket(Bucket=bucket)
    assert good.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        wrong.head_bucket(Bucket=bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_endpoint_table_keeps_every_endpoint_of_dropfiles_services():
    """Only AWS_SERVICES' entries of botocore's endpoint table are loaded: for those, every
    region of every partition resolves as with botocore's whole table."""
    from botocore.loaders import Loader
    from botocore.regions import EndpointResolver

    from services.common.clients import AWS_SERVICES

    whole = Loader().load_data("endpoints")
    kept = aws_client("s3", region=REGION)._loader.load_data("endpoints")
    assert {
        name for partition in kept["partitions"] for name in partition["services"]
    } == AWS_SERVICES
    ours, botocores = EndpointResolver(kept), EndpointResolver(whole)

    def resolved(resolver, *args, **options):
        try:
            return resolver.construct_endpoint(*args, **options)
        except botocore.exceptions.BotoCoreError as exc:  # a variant a partition lacks
            return type(exc)

    regions = {region for partition in whole["partitions"] for region in partition["regions"]}
    assert len(regions) > 20
    for service in AWS_SERVICES:
        for region in sorted(regions) + ["nowhere-1"]:
            for fips in (False, True):
                for dualstack in (False, True):
                    options = dict(use_fips_endpoint=fips, use_dualstack_endpoint=dualstack)
                    assert resolved(ours, service, region, **options) == resolved(
                        botocores, service, region, **options
                    )


def test_clients_of_other_services_need_their_endpoints_kept():
    with pytest.raises(ValueError, match="AWS_SERVICES"):
        aws_client("dynamodb", region=REGION)
