"""The identity provider's requests go through the outbound rules: a provider on a private
address is reached only when the operator allows it."""

from __future__ import annotations

import pytest

from app.oidc.provider import ProviderError, discover
from core.config import Settings


def test_a_private_issuer_needs_the_opt_in(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        oidc_issuer="http://127.0.0.1:9/idp",
        oidc_client_id="memaudit",
        oidc_team_prefix="memaudit-",
    )
    with pytest.raises(ProviderError, match=r"non-public address 127\.0\.0\.1") as refused:
        discover(settings)
    # The refusal names the identity provider's own opt-in, not the callbacks'.
    assert "set MEMAUDIT_OIDC_ALLOW_PRIVATE=true" in str(refused.value)
    assert "CALLBACK" not in str(refused.value)
