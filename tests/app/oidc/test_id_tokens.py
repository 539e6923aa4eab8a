"""The ID token's checks, each on its own: a token signed by a key of the provider's JWKS, for
this client, from this issuer, unexpired, with this sign-in's nonce; anything else refused."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from app.oidc.provider import ProviderError, ProviderMetadata, verified_claims

ISSUER = "https://id.example.org"
CLIENT = "memaudit-dashboard"
METADATA = ProviderMetadata(
    ISSUER, f"{ISSUER}/auth", f"{ISSUER}/token", f"{ISSUER}/jwks", ("RS256",)
)
SIGNING = RSAKey.generate_key(2048, parameters={"kid": "k1"})
JWKS = KeySet([SIGNING]).as_dict(private=False)


def _token(key=SIGNING, alg: str = "RS256", **changes: object) -> str:  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now, "exp": now + 300,
              "nonce": "n-1", "roles": ["auditor"]}  # fmt: skip
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key)


def test_a_good_token_gives_its_claims() -> None:
    claims = verified_claims(_token(), JWKS, METADATA, CLIENT, "n-1")
    assert claims["sub"] == "alice" and claims["roles"] == ["auditor"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"nonce": "n-2"}, "'nonce'"),  # another sign-in's token
        ({"nonce": None}, "Missing claim: 'nonce'"),
        ({"aud": "another-client"}, "'aud'"),
        ({"iss": "https://evil.example.org"}, "'iss'"),
        ({"exp": int(time.time()) - 3600}, "expired"),  # beyond the leeway
        ({"exp": None}, "Missing claim: 'exp'"),
        ({"sub": None}, "Missing claim: 'sub'"),
    ],
)
def test_a_token_with_a_wrong_claim_is_refused(changes: dict, reason: str) -> None:
    with pytest.raises(ProviderError, match=reason):
        verified_claims(_token(**changes), JWKS, METADATA, CLIENT, "n-1")


def test_a_token_signed_by_another_key_is_refused() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(ProviderError, match="BadSignatureError"):
        verified_claims(_token(key=other), JWKS, METADATA, CLIENT, "n-1")


def test_a_symmetric_token_is_refused_even_with_the_key_in_hand() -> None:
    """HS256 signed with a key the JWKS would accept: only the provider's asymmetric
    algorithms count, so a token no private key signed never passes."""
    secret = OctKey.generate_key(256, parameters={"kid": "k1"})
    with pytest.raises(ProviderError, match="HS256"):
        verified_claims(
            _token(key=secret, alg="HS256"),
            KeySet([secret]).as_dict(private=True),
            METADATA,
            CLIENT,
            "n-1",
        )
