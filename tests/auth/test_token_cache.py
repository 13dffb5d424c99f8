"""TokenVerifier remembers tokens it verified (services/common/tokens.py): only the exact
token that verified is accepted from memory, and only until it expires."""

from __future__ import annotations

import time

import pytest

from services.common.revocations import RevokedSessions, revocation_client
from services.common.tokens import LEEWAY_SECONDS, InvalidTokenError, TokenVerifier


@pytest.fixture
def verifier(key_pair, redis_url):
    return TokenVerifier(
        key_pair[1],
        issuer="dropfile-auth",
        audience="dropfile",
        cache_size=2,
        revocations=RevokedSessions(revocation_client(redis_url)),
    )


@pytest.mark.slow
def test_a_verified_token_is_remembered_until_it_expires(verifier, make_token):
    # Expired a moment before the leeway ends: valid for a few more seconds (room enough
    # for the two checks below on a loaded machine).
    token = make_token(
        user_id="6f4a3e51-1d8c-4c55-9d0c-2f0a6b8c1e11", exp=int(time.time()) - LEEWAY_SECONDS + 4
    )
    assert verifier.verify(token).user_id == "6f4a3e51-1d8c-4c55-9d0c-2f0a6b8c1e11"
    assert verifier.verify(token).user_id == "6f4a3e51-1d8c-4c55-9d0c-2f0a6b8c1e11"
    time.sleep(5.5)
    with pytest.raises(InvalidTokenError, match="expired"):
        verifier.verify(token)


def test_only_the_exact_token_is_taken_from_memory(verifier, make_token):
    token = make_token()
    verifier.verify(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(InvalidTokenError):
        verifier.verify(forged)


def test_memory_is_bounded(verifier, make_token):
    tokens = [make_token() for _ in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 2
    for token in tokens:  # evicted ones are simply verified again
        verifier.verify(token)
