"""A production process refuses to start on development defaults, with one line naming the
variable: the default CORS origins (localhost development servers only), and key material
made for development (generated under DROPFILE_KEYS_DIR, or marked as development)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.settings import AuthSettings
from services.common import keys
from services.common.settings import DEFAULT_CORS_ORIGINS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def production_key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def run_process(module: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    """`python -m module` in an empty folder (no .env), with only these settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DROPFILE_", "CORS_", "PRIVATE_KEY", "PUBLIC_KEY", "SERVICE_TOKEN"))
    }
    env.update(variables, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_production_gateway_on_the_default_cors_origins_exits_2(tmp_path):
    result = run_process("gateway", tmp_path, DROPFILE_ENV="production", DROPFILE_HTTP_PORT="9")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: CORS_ORIGINS: is the development default")


def test_the_default_cors_origins_in_any_order_are_still_the_default(tmp_path):
    shuffled = ",".join(reversed(DEFAULT_CORS_ORIGINS.split(",")))
    result = run_process("gateway", tmp_path, DROPFILE_ENV="production", CORS_ORIGINS=shuffled)
    assert result.returncode == 2
    assert "CORS_ORIGINS" in result.stderr


def test_development_keys_from_the_keys_folder_are_refused_in_production(tmp_path):
    """Copied out of .dropfile/keys into the environment: refused by name."""
    keys_dir = tmp_path / "keys"
    development = AuthSettings(_env_file=None, dropfile_keys_dir=keys_dir)
    private = keys.private_key_pem(development, None)
    public = keys.public_key_pem(development, None)
    token = keys.service_token(development, None)
    assert keys.DEVELOPMENT_MARK in private and keys.DEVELOPMENT_MARK in token
    own_private, own_public = production_key_pair()
    own_token = secrets.token_urlsafe(32)
    for name, value, others in [
        ("PRIVATE_KEY", private, {"PUBLIC_KEY": own_public, "SERVICE_TOKEN": own_token}),
        ("PUBLIC_KEY", public, {"PRIVATE_KEY": own_private, "SERVICE_TOKEN": own_token}),
        ("SERVICE_TOKEN", token, {"PRIVATE_KEY": own_private, "PUBLIC_KEY": own_public}),
    ]:
        result = run_process(
            "services.auth.server",
            tmp_path,
            DROPFILE_ENV="production",
            DROPFILE_KEYS_DIR=str(keys_dir),
            **{name: value},
            **others,
        )
        assert result.returncode == 2, f"{name}: {result.stderr}"
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"configuration error: {name}: is a development key"), line


def test_unmarked_keys_generated_under_the_keys_folder_are_refused(tmp_path):
    """Keys an older version generated (without the mark) are known by their file."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    token = secrets.token_urlsafe(32)
    (keys_dir / keys.SERVICE_TOKEN_FILE).write_text(token)
    with pytest.raises(ValueError, match="generated in .*service-token"):
        AuthSettings(
            _env_file=None,
            dropfile_env="production",
            dropfile_keys_dir=keys_dir,
            service_token=token,
        )


def test_the_old_dev_only_placeholders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="development key"):
        AuthSettings(
            _env_file=None,
            dropfile_env="production",
            dropfile_keys_dir=tmp_path,
            service_token="dev-only-service-token-not-a-secret-0123456789",
        )


def test_production_secrets_of_its_own_pass(tmp_path):
    private, public = production_key_pair()
    keys_dir = tmp_path / "keys"
    keys.service_token(AuthSettings(_env_file=None, dropfile_keys_dir=keys_dir), None)
    settings = AuthSettings(
        _env_file=None,
        dropfile_env="production",
        dropfile_keys_dir=keys_dir,
        private_key=private,
        public_key=public,
        service_token=secrets.token_urlsafe(32),
    )
    assert settings.private_key is not None
    assert settings.private_key.get_secret_value() == private


def test_development_accepts_its_own_keys_and_default_origins(tmp_path):
    from gateway.settings import GatewaySettings

    assert GatewaySettings(_env_file=None).cors_origins == DEFAULT_CORS_ORIGINS
    development = AuthSettings(_env_file=None, dropfile_keys_dir=tmp_path)
    token = keys.service_token(development, None)
    AuthSettings(_env_file=None, dropfile_keys_dir=tmp_path, service_token=token)
