"""Verifying signed tokens (grants, access tokens) against a JWKS, with every field checked.

Pure: takes the token text and a JWKS dict, returns claims or a Grant, raises
`TokenError` with a message saying which check failed. Shared by the access
server (access tokens, grant status) and the tunnel (the grant it was handed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from streamctl.policy.grant import Grant, GrantError

#: Asymmetric algorithms only: `none` and HMAC (signed with a public key as secret) never pass.
ALLOWED_ALGORITHMS = ("ES256", "EdDSA")
#: Seconds of clock skew tolerated on exp, nbf and iat.
LEEWAY_SECONDS = 30


class TokenError(ValueError):
    """The token was refused; the message names the check that failed (never the token)."""


def _key_for(header: Mapping[str, Any], jwks: Mapping[str, Any]) -> Any:
    """The public key the header's kid points at, of the kind its alg needs."""
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenError(
            f"algorithm {alg!r} is not accepted (allowed: {', '.join(ALLOWED_ALGORITHMS)})"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token header has no key id (kid)")
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise TokenError("the JWKS holds no key list")
    for jwk in keys:
        if not isinstance(jwk, Mapping) or jwk.get("kid") != kid:
            continue
        if jwk.get("alg") not in (None, alg):
            raise TokenError(f"key {kid} is for {jwk.get('alg')}, token says {alg}")
        try:
            if alg == "ES256":
                if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                    raise TokenError(f"key {kid} is not a P-256 key")
                return ECAlgorithm.from_jwk(json.dumps(jwk))
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise TokenError(f"key {kid} is not an Ed25519 key")
            return OKPAlgorithm.from_jwk(json.dumps(jwk))
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            if isinstance(exc, TokenError):
                raise
            raise TokenError(f"key {kid} in the JWKS is malformed") from exc
    raise TokenError(f"unknown key id {kid!r}: not in the issuer's JWKS")


def verify_jwt(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
    required: tuple[str, ...] = ("iss", "aud", "sub", "exp", "iat"),
) -> dict[str, Any]:
    """Check alg (allow-list), kid, signature, iss, aud, exp, nbf; return the claims."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise TokenError("not a signed JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("token header is not readable") from exc
    key = _key_for(header, jwks)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={
                "require": list(required),
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise TokenError("bad signature: the token was altered or signed by another key") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError(f"wrong audience: the token is not meant for {audience!r}") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError(f"wrong issuer: the token was not issued by {issuer!r}") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token lacks the '{exc.claim}' claim") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"token refused: {exc}") from exc
    at = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("token 'exp' is not a number")
    if exp + LEEWAY_SECONDS <= at:
        raise TokenError("token expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not isinstance(nbf, int | float) or isinstance(nbf, bool):
            raise TokenError("token 'nbf' is not a number")
        if nbf - LEEWAY_SECONDS > at:
            raise TokenError("token not valid yet (nbf is in the future)")
    return claims


def verify_grant_token(
    token: str,
    jwks: Mapping[str, Any],
    issuer: str,
    audience: str,
    now: float | None = None,
) -> Grant:
    """Verify a grant token signed by the access server and return the grant it carries."""
    claims = verify_jwt(
        token,
        jwks,
        issuer=issuer,
        audience=audience,
        now=now,
        required=("iss", "aud", "sub", "exp", "nbf", "iat", "jti"),
    )
    try:
        return Grant.from_claims(claims)
    except GrantError as exc:
        raise TokenError(f"not a grant token: {exc}") from exc
