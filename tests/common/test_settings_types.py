"""Secrets are SecretStr and URLs typed DSNs in every settings class: secrets and the
passwords URLs may carry never show in a repr, a URL of the wrong kind stops the process
with one line naming its variable, and clients get the URL as it was written."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings
from services.auth.settings import AuthSettings
from services.common import keys
from services.common.settings import load_settings, url_text
from services.events.settings import EventsSettings
from services.upload.settings import UploadSettings

SECRETS = {
    "service_token": "s3cr3t-service-token-0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\\nPRIVATE-BYTES\\n-----END PRIVATE KEY-----",
    "cloud_db_uri": "postgresql://dropfile:db-pa55word@db.example.internal:5432/dropfile",
    "cloud_rd_uri": "rediss://:redis-pa55word@cache.example.internal:6379/0",
}


def test_no_secret_and_no_url_password_in_a_repr():
    settings = AuthSettings(_env_file=None, **SECRETS)
    shown = repr(settings) + str(settings)
    for value in ("s3cr3t", "PRIVATE-BYTES", "db-pa55word", "redis-pa55word"):
        assert value not in shown
    # The values themselves are there for whoever asks for them.
    assert settings.private_key is not None and "PRIVATE-BYTES" in keys.private_key_pem(
        settings, settings.private_key
    )
    assert keys.service_token(settings, settings.service_token) == SECRETS["service_token"]
    assert str(settings.cloud_db_uri) == SECRETS["cloud_db_uri"]
    assert str(settings.cloud_rd_uri) == SECRETS["cloud_rd_uri"]
    gateway = GatewaySettings(_env_file=None, service_token=SECRETS["service_token"])
    assert "s3cr3t" not in repr(gateway)


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        (AuthSettings, "CLOUD_DB_URI", "redis://127.0.0.1:6379/0"),
        (AuthSettings, "CLOUD_RD_URI", "postgresql://postgres@127.0.0.1:5432/dropfile"),
        (EventsSettings, "SQS_QUEUE_URL", "queue-name-only"),
        (EventsSettings, "AWS_ENDPOINT_URL", "127.0.0.1:5000"),
        (UploadSettings, "S3_PUBLIC_ENDPOINT_URL", "ftp://storage.example"),
        (GatewaySettings, "OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4317"),
        (GatewaySettings, "SERVICE_TOKEN", "too-short"),
    ],
)
def test_a_value_of_the_wrong_kind_stops_the_process_naming_it(
    cls, variable, value, monkeypatch, capsys
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(cls, _env_file=None)
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"configuration error: {variable}: ")
    assert value not in line


def test_urls_reach_clients_as_written():
    settings = EventsSettings(
        _env_file=None,
        aws_endpoint_url="http://127.0.0.1:5000",
        aws_endpoint_url_sqs="",  # empty: unset, as it always was
        sqs_queue_url="http://127.0.0.1:5000/123456789012/dropfile-events",
    )
    assert settings.s3_endpoint == settings.sqs_endpoint == "http://127.0.0.1:5000"
    assert settings.aws_endpoint_url_sqs is None
    assert settings.sqs_queue_url is not None
    assert url_text(settings.sqs_queue_url) == "http://127.0.0.1:5000/123456789012/dropfile-events"
    assert url_text("redis://as-is") == "redis://as-is"
