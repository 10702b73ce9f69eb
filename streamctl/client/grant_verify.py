"""Check a grant token against the access server's JWKS before a tunnel relies on it.

Every field the tunnel trusts is validated here: the signing algorithm (only the
asymmetric ones the server uses), the key id, issuer, audience, expiry and
not-before; only then are the claims turned into a `Grant`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.types import Options

from streamctl.client.errors import GrantInvalid
from streamctl.policy.grant import Grant, GrantError

#: The algorithms an access server signs grants with; anything else (HS*, none) is refused.
ALLOWED_ALGORITHMS = ("EdDSA", "ES256")
#: Tolerated clock difference between this machine and the server.
LEEWAY_S = 30


def verify_grant_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str | None,
    now: float | None = None,
) -> Grant:
    """Verify the signature and registered claims, then parse the streamctl claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise GrantInvalid(f"the grant token is not a JWT ({exc})") from exc
    alg = header.get("alg")
    kid = header.get("kid")
    if alg not in ALLOWED_ALGORITHMS:
        raise GrantInvalid(f"the grant token uses algorithm {alg!r}, which streamctl refuses")
    if not isinstance(kid, str) or not kid:
        raise GrantInvalid("the grant token names no signing key (kid)")
    try:
        key_set = jwt.PyJWKSet.from_dict(dict(jwks))
    except jwt.PyJWTError as exc:
        raise GrantInvalid(f"the server's JWKS cannot be read ({exc})") from exc
    matching = [k for k in key_set.keys if k.key_id == kid]
    if not matching:
        raise GrantInvalid(
            f"the grant was signed with key {kid!r}, which the server's JWKS does not list"
        )
    jwk = matching[0]
    jwk_alg = jwk._jwk_data.get("alg")
    if jwk_alg is not None and jwk_alg != alg:
        raise GrantInvalid(f"key {kid!r} is for {jwk_alg}, but the token says {alg}")
    options: Options = {
        "require": ["exp", "nbf", "iss", "sub", "jti"],
        "verify_aud": audience is not None,
        # Time claims are checked below against `now`, so tests can move the clock.
        "verify_exp": False,
        "verify_nbf": False,
    }
    moment = time.time() if now is None else now
    try:
        claims: dict[str, Any] = jwt.decode(
            token, jwk.key, algorithms=[alg], issuer=issuer, audience=audience, options=options
        )
        if float(claims["exp"]) + LEEWAY_S <= moment:
            raise jwt.ExpiredSignatureError("expired")
        if float(claims["nbf"]) - LEEWAY_S > moment:
            raise jwt.ImmatureSignatureError("not yet valid")
    except jwt.ExpiredSignatureError as exc:
        raise GrantInvalid("the grant has already expired", hint="request a new one") from exc
    except jwt.ImmatureSignatureError as exc:
        raise GrantInvalid("the grant is not valid yet (check this machine's clock)") from exc
    except jwt.InvalidIssuerError as exc:
        raise GrantInvalid(f"the grant was issued by someone else (expected {issuer})") from exc
    except jwt.InvalidAudienceError as exc:
        raise GrantInvalid(f"the grant is meant for another audience (expected {audience})") \
            from exc
    except jwt.PyJWTError as exc:
        raise GrantInvalid(f"the grant token does not verify ({exc})") from exc
    try:
        return Grant.from_claims(claims)
    except GrantError as exc:
        raise GrantInvalid(f"the grant's claims are not usable ({exc})") from exc


def seconds_left(grant: Grant, now: float | None = None) -> float:
    """How long the grant still runs, for the CLI's countdown."""
    return grant.expires_at - (time.time() if now is None else now)
