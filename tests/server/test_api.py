"""The access server's HTTP API, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json

from streamctl.policy.token import verify_grant_token
from tests.server.conftest import ApiServer
from tests.server.helpers import DEVICE_GRANT, bearer


def test_discovery_jwks_and_login_config(api: ApiServer) -> None:
    disco = api.client.get("/.well-known/openid-configuration").json()
    assert disco["issuer"] == "http://testserver"
    assert disco["device_authorization_endpoint"] == "http://testserver/oauth/device_authorization"
    assert DEVICE_GRANT in disco["grant_types_supported"]
    keys = api.client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1 and keys[0]["alg"] == "ES256" and "d" not in keys[0]
    assert api.client.get("/v1/login-config").json() == {
        "issuer": "http://testserver", "client_id": "streamctl", "external": False,
    }
    assert "/v1/grants" in api.client.get("/openapi.json").json()["paths"]


def test_whoami_needs_a_token_and_shows_roles(api: ApiServer) -> None:
    anon = api.client.get("/v1/whoami")
    assert anon.status_code == 401
    assert anon.json()["error"] == "not_authenticated" and anon.json()["hint"] == "streamctl login"
    me = api.client.get("/v1/whoami", headers=api.as_user("alice")).json()
    assert me["subject"] == "alice" and me["kind"] == "user" and me["roles"] == ["engineer"]
    assert me["token_expires_at"].endswith("Z")


def test_grant_is_signed_verifiable_and_carries_the_policy(api: ApiServer) -> None:
    alice = api.as_user("alice")
    r = api.grant(alice, topics=["orders"], operations=["read"], ttl_seconds=600, reason="debug")
    assert r.status_code == 201, r.text
    body = r.json()
    jwks = api.client.get("/.well-known/jwks.json").json()
    grant = verify_grant_token(body["token"], jwks, "http://testserver", "kafka-local")
    assert grant.subject == "alice" and grant.grant_id == body["grant_id"]
    assert grant.topics == ("orders",) and {o.value for o in grant.operations} == {"read"}
    assert grant.expires_at - grant.not_before == 600
    assert grant.cluster.bootstrap == "127.0.0.1:9092"
    assert {r.name for r in grant.masking_for("orders")} == {"customer-email", "card-numbers"}
    assert "immutable" in {c.value for c in grant.classes_of("audit-events")}
    assert body["claims"]["aud"] == "kafka-local" and body["claims"]["iss"] == "http://testserver"


def test_list_status_and_revoke(api: ApiServer) -> None:
    alice, bob = api.as_user("alice"), api.as_user("bob")
    issued = api.grant(alice, topics=["orders"], operations=["read"]).json()
    gid = issued["grant_id"]
    listed = api.client.get("/v1/grants", headers=alice).json()
    assert [g["grant_id"] for g in listed] == [gid] and listed[0]["active"] is True
    assert api.client.get("/v1/grants", headers=bob).json() == []
    # the tunnel may ask with the grant token itself
    status = api.client.get(f"/v1/grants/{gid}/status", headers=bearer(issued["token"])).json()
    assert status == {"grant_id": gid, "active": True, "revoked": False,
                      "expires_at": issued["expires_at"]}
    # someone else's grant is not found, and cannot be revoked
    assert api.client.post(f"/v1/grants/{gid}/revoke", headers=bob).status_code == 404
    revoked = api.client.post(f"/v1/grants/{gid}/revoke", headers=alice).json()
    assert revoked["revoked"] is True and revoked["active"] is False
    again = api.client.get(f"/v1/grants/{gid}/status", headers=alice).json()
    assert again["revoked"] is True
    assert api.client.get("/v1/grants?active=true", headers=alice).json() == []


def test_refusals_say_why_and_what_next(api: ApiServer) -> None:
    alice = api.as_user("alice")
    cases = [
        ({"topics": ["payments"], "operations": ["write"]}, "approval_required",
         "writes to payments need an approval", "streamctl request-approval payments --write"),
        ({"topics": ["payments"], "operations": ["write"], "approval_id": "nope"},
         "approval_refused", "approval nope does not allow this grant", None),
        ({"topics": ["audit-events"], "operations": ["delete"]}, "not_allowed",
         "audit-events is immutable", None),
        ({"topics": ["orders"], "operations": ["write"]}, "not_allowed",
         "no rule of role(s) engineer allows write on orders", None),
        ({"topics": ["secrets"], "operations": ["read"]}, "not_allowed",
         "allows read on secrets", None),
        ({"topics": ["orders"], "operations": ["read"], "ttl_seconds": 14401},
         "ttl_exceeds_cap", "above the policy cap of 14400 s", None),
        ({"topics": ["payments"], "operations": ["read"], "ttl_seconds": 3601},
         "ttl_exceeds_cap", "cap of 3600 s", None),
    ]
    for body, error, message, hint in cases:
        r = api.grant(alice, **body)
        assert r.status_code == 403, (body, r.text)
        got = r.json()
        assert got["error"] == error and message in got["message"], (body, got)
        if hint is not None:
            assert got["hint"] == hint
    unknown = api.grant(alice, cluster="prod", topics=["orders"], operations=["read"])
    assert unknown.status_code == 404 and "no cluster named 'prod'" in unknown.json()["message"]


def test_escalation_with_a_pattern_is_refused(api: ApiServer) -> None:
    alice = api.as_user("alice")
    assert api.grant(alice, topics=["orders.*"], operations=["read"]).status_code == 201
    wider = api.grant(alice, topics=["*"], operations=["read"])
    assert wider.status_code == 403 and wider.json()["error"] == "not_allowed"
    sneaky = api.grant(alice, topics=["ord*"], operations=["read"])
    assert sneaky.status_code == 403
    # bob's approver role reads but never writes
    bob = api.as_user("bob")
    assert api.grant(bob, topics=["orders"], operations=["write"]).status_code == 403


def test_bad_bodies_get_4xx_with_a_clear_message(api: ApiServer) -> None:
    alice = api.as_user("alice")
    h = {**alice, "content-type": "application/json"}
    post = api.client.post
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00{", 400, "not valid JSON"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (b'"text"', 422, "must be a JSON object"),
        (json.dumps({"topics": "orders", "operations": ["read"]}).encode(), 422, "topics"),
        (json.dumps({"topics": ["orders"], "operations": ["fly"]}).encode(), 422, "operations"),
        (json.dumps({"topics": ["orders"], "operations": ["read"], "ttl_seconds": "60"}).encode(),
         422, "ttl_seconds"),
        (json.dumps({"topics": ["orders"], "operations": ["read"], "ttl_seconds": -5}).encode(),
         422, "ttl_seconds"),
        (json.dumps({"topics": [], "operations": ["read"]}).encode(), 422, "topics"),
        (json.dumps({"topics": ["orders"], "operations": ["read"], "admin": True}).encode(),
         422, "admin"),
        (json.dumps({"topics": ["x" * 300], "operations": ["read"]}).encode(), 422, "topics"),
        (b"{" + b'"reason": "' + b"x" * 70000 + b'"}', 413, "larger than"),
    ]
    for raw, status, words in cases:
        r = post("/v1/grants", headers=h, content=raw)
        assert r.status_code == status, (raw[:60], r.status_code, r.text)
        assert words in r.json()["message"], (raw[:60], r.json())
    # forms on the OAuth endpoints: missing fields and oversized ones are 400, not 500
    r = post("/oauth/token", data={})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = post("/oauth/token", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = post("/oauth/device_authorization", data={"client_id": "c" * 500})
    assert r.status_code == 400
    r = post("/oauth/device_authorization", data={"client_id": "someone-else"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = post("/device", data={"user_code": "X"})
    assert r.status_code == 400 and "Enter the code" in r.text
    r = post("/device", data={"user_code": "BCDF-GHJK", "username": "alice", "password": "p" * 5000})
    assert r.status_code == 400 and "Wrong username or password" in r.text
    r = post("/oauth/token", content=b"grant_type=%ZZ%%&&==",
             headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert api.client.get("/v1/nothing-here").json()["error"] == "not_found"


def test_refresh_tokens_rotate_and_are_single_use(api: ApiServer) -> None:
    tokens = api.client.post("/oauth/device_authorization", data={"client_id": "streamctl"})
    assert tokens.status_code == 200
    from tests.server.helpers import device_login

    first = device_login(api.client, "alice", api.passwords["alice"])
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
            "client_id": "streamctl"}
    second = api.client.post("/oauth/token", data=form)
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    replay = api.client.post("/oauth/token", data=form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    me = api.client.get("/v1/whoami", headers=bearer(second.json()["access_token"]))
    assert me.json()["subject"] == "alice"


def test_device_codes_are_single_use(api: ApiServer) -> None:
    start = api.client.post("/oauth/device_authorization", data={"client_id": "streamctl"}).json()
    assert api.client.post("/device", data={
        "user_code": start["user_code"].lower().replace("-", " "), "username": "alice",
        "password": api.passwords["alice"], "action": "approve"}).status_code == 200
    form = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"],
            "client_id": "streamctl"}
    assert api.client.post("/oauth/token", data=form).status_code == 200
    again = api.client.post("/oauth/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # an approved code cannot be approved again either
    reuse = api.client.post("/device", data={
        "user_code": start["user_code"], "username": "bob", "password": api.passwords["bob"],
        "action": "approve"})
    assert reuse.status_code == 400 and "Unknown or expired code" in reuse.text


def test_user_code_guessing_is_throttled(api: ApiServer) -> None:
    start = api.client.post("/oauth/device_authorization", data={"client_id": "streamctl"}).json()
    limit = api.config.user_code_failures_per_window
    for i in range(limit):
        guess = api.client.post("/device", data={
            "user_code": f"BCDF-GH{'JK'[i % 2]}{'MN'[i // 2 % 2]}", "username": "alice",
            "password": api.passwords["alice"], "action": "approve"})
        assert guess.status_code in (400, 401), guess.text
    # the right code and password are now refused too, until the window passes
    blocked = api.client.post("/device", data={
        "user_code": start["user_code"], "username": "alice",
        "password": api.passwords["alice"], "action": "approve"})
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.text


def test_wrong_password_is_refused_and_counted(api: ApiServer) -> None:
    start = api.client.post("/oauth/device_authorization", data={"client_id": "streamctl"}).json()
    r = api.client.post("/device", data={"user_code": start["user_code"], "username": "alice",
                                         "password": "wrong", "action": "approve"})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = api.client.post("/device", data={"user_code": start["user_code"], "username": "mallory",
                                         "password": "x", "action": "approve"})
    assert r.status_code == 401


def test_key_rotation_keeps_old_keys_until_their_tokens_expire(api: ApiServer) -> None:
    alice = api.as_user("alice")
    old = api.grant(alice, topics=["orders"], operations=["read"]).json()
    state = api.client.app.state.server  # type: ignore[attr-defined]
    new_entry = state.keys.create("EdDSA")
    jwks = api.client.get("/.well-known/jwks.json").json()
    assert {k["kid"] for k in jwks["keys"]} >= {new_entry.kid}
    assert len(jwks["keys"]) == 2
    new = api.grant(alice, topics=["orders"], operations=["read"]).json()
    for issued in (old, new):
        verify_grant_token(issued["token"], jwks, "http://testserver", "kafka-local")
    # the old access token still works, and new ones are signed by the new key
    assert api.client.get("/v1/whoami", headers=alice).status_code == 200
    import jwt as pyjwt

    assert pyjwt.get_unverified_header(new["token"])["kid"] == new_entry.kid
    assert pyjwt.get_unverified_header(new["token"])["alg"] == "EdDSA"
