"""A real OpenID provider for the single sign-on tests (``oidc-provider-mock`` in a thread), with the
users they log in as: ``olivia`` (tenant acme, operator), ``nadia`` (no tenant, no role: not let in)
and ``eve`` (a tenant that is not a tenant name)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

#: Each user's subject and claims.
USERS = {
    "olivia": {"name": "Olivia O.", "tenant": "acme", "roles": ["operator"]},
    "nadia": {"name": "Nadia"},
    "eve": {"name": "Eve", "tenant": "../acme", "roles": ["operator"]},
}


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """The provider's issuer URL."""
    # Imported by the tests that use it, not by every session that loads this plugin (tests/conftest.py).
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub=sub, claims=claims) for sub, claims in USERS.items()]
    with run_server_in_thread(user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"
