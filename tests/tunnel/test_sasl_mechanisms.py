"""SASL client mechanisms on bytes: RFC 7677's SCRAM-SHA-256 example, PLAIN, OAUTHBEARER."""

from __future__ import annotations

import pytest

from streamctl.tunnel.sasl import OAuthBearer, Plain, SaslError, Scram, make_mechanism

SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)


def test_scram_sha_256_matches_rfc_7677() -> None:
    scram = Scram("sha256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert scram.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.step(SERVER_FIRST)
    assert final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert scram.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") is None


def test_scram_refuses_a_forged_server() -> None:
    scram = Scram("sha256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    scram.step(SERVER_FIRST)
    with pytest.raises(SaslError, match="not genuine"):
        scram.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    other = Scram("sha256", "user", "pencil", nonce="abc")
    with pytest.raises(SaslError, match="nonce"):
        other.step(b"r=zzz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(SaslError, match="refused"):
        other.step(b"e=invalid-proof")


def test_plain_and_oauthbearer_messages() -> None:
    assert Plain("u", "p").first() == b"\0u\0p"
    assert Plain("u", "p").step(b"") is None
    accepted = OAuthBearer("a.b.c")
    assert accepted.first() == b"n,,\x01auth=Bearer a.b.c\x01\x01"
    assert accepted.step(b"") is None


def test_oauthbearer_error_challenge_fails_closed() -> None:
    refused = OAuthBearer("a.b.c")
    assert refused.step(b'{"status":"invalid_token"}') == b"\x01"
    with pytest.raises(SaslError, match="invalid_token"):
        refused.step(b"")


def test_make_mechanism_checks_credentials() -> None:
    assert make_mechanism("scram-sha-512", username="u", password="p", token=None).name == (
        "SCRAM-SHA-512"
    )
    with pytest.raises(SaslError, match="grant token"):
        make_mechanism("OAUTHBEARER", username=None, password=None, token=None)
    with pytest.raises(SaslError, match="user name"):
        make_mechanism("PLAIN", username=None, password=None, token=None)
    with pytest.raises(SaslError, match="not supported"):
        make_mechanism("GSSAPI", username="u", password="p", token=None)
