"""Dashboard login with OpenID Connect (authorization code + PKCE) against a real local provider,
``oidc-provider-mock``: its users' tenant and roles become the session's principal."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest


@pytest.fixture
def sso(make_server, idp):
    return make_server(
        {"RUNWATCH_OIDC_ISSUER": idp, "RUNWATCH_OIDC_CLIENT_ID": "runwatch", "RUNWATCH_OIDC_CLIENT_SECRET": "s3cr3t"}
    )


async def _authorize(authorize_url: str, sub: str) -> str:
    """What the user does at the provider: picks ``sub`` and authorizes; returns where it sends them."""
    async with httpx.AsyncClient() as at_provider:
        r = await at_provider.post(authorize_url, data={"sub": sub})
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def test_a_login_at_the_provider_is_a_session_of_its_tenant_and_role(sso):
    async with httpx.AsyncClient(base_url=sso.url) as browser:
        start = await browser.get("/api/oidc/login")
        assert start.status_code == 302
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
        assert query["redirect_uri"] == [sso.url + "/api/oidc/callback"] and query["nonce"] and query["state"]
        back = await _authorize(start.headers["location"], "olivia")
        done = await browser.get(back)
        assert done.status_code == 200 and "runwatch_session" in done.headers["set-cookie"]
        me = (await browser.get("/api/me")).json()
        assert me["id"] == "jwt:olivia" and me["name"] == "Olivia O." and me["tenant"] == "acme"
        assert me["role"] == "operator" and me["source"] == "session"
        assert (await browser.post("/api/runs", json={"agent": "demo", "input": "hi"})).status_code == 202
        again = await browser.get(back)  # the same code (and the flow's cookie is gone): refused
        assert again.status_code == 401


async def test_a_callback_with_another_state_is_refused(sso):
    async with httpx.AsyncClient(base_url=sso.url) as browser:
        start = await browser.get("/api/oidc/login")
        back = await _authorize(start.headers["location"], "olivia")
        forged = back.replace("state=", "state=x")
        r = await browser.get(forged)
        assert r.status_code == 401 and "login_error=" in r.text and "start again" in r.text
        assert (await browser.get("/api/me")).status_code == 401


async def test_a_provider_user_without_tenant_or_role_is_not_let_in(sso):
    async with httpx.AsyncClient(base_url=sso.url) as browser:
        start = await browser.get("/api/oidc/login")
        r = await browser.get(await _authorize(start.headers["location"], "nadia"))
        assert r.status_code == 401 and "role" in r.text


async def test_a_provider_user_whose_tenant_is_no_tenant_name_is_not_let_in(sso):
    async with httpx.AsyncClient(base_url=sso.url) as browser:
        start = await browser.get("/api/oidc/login")
        r = await browser.get(await _authorize(start.headers["location"], "eve"))
        assert r.status_code == 401 and "not a tenant name" in r.text
        assert (await browser.get("/api/me")).status_code == 401


async def test_the_login_page_learns_that_sso_is_there(sso, server):
    async with httpx.AsyncClient(base_url=sso.url) as c:
        assert (await c.get("/api/login")).json() == {"auth": True, "oidc": True}
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/api/login")).json() == {"auth": True, "oidc": False}
