"""Detectors: what they find, what they leave alone."""

from __future__ import annotations

import pytest

from streamctl.masking.detectors import BUILTIN, custom_detector, detector_for, find_spans
from streamctl.masking.errors import MaskingError


def found(name: str, text: str) -> list[str]:
    return [text[s:e] for s, e in BUILTIN[name].spans(text)]


def test_email() -> None:
    assert found("email", "mail jane.doe+x@mail.example.co.uk now") == ["jane.doe+x@mail.example.co.uk"]
    assert found("email", "no at sign here") == []


def test_card_is_luhn_checked() -> None:
    assert found("card", "card 4111 1111 1111 1111 exp") == ["4111 1111 1111 1111"]
    assert found("card", "card 4111-1111-1111-1111") == ["4111-1111-1111-1111"]
    assert found("card", "4111111111111111") == ["4111111111111111"]
    assert found("card", "order 4111111111111112") == []  # Luhn fails
    assert found("card", "12345678901234567890123") == []  # too long to be a card


def test_card_next_to_other_digits_is_still_found() -> None:
    assert found("card", "ref 12 4111 1111 1111 1111") == ["4111 1111 1111 1111"]
    assert found("card", "4111 1111 1111 1111 123") == ["4111 1111 1111 1111"]
    assert found("card", "4111111111111111 5500005555555559") == [
        "4111111111111111", "5500005555555559"]


def test_iban_is_mod97_checked() -> None:
    assert found("iban", "pay DE89370400440532013000 now") == ["DE89370400440532013000"]
    assert found("iban", "GB82 WEST 1234 5698 7654 32 THANKS") == ["GB82 WEST 1234 5698 7654 32"]
    assert found("iban", "DE89370400440532013001") == []


def test_us_ssn() -> None:
    assert found("us_ssn", "ssn 123-45-6789.") == ["123-45-6789"]
    assert found("us_ssn", "ssn 123 45 6789") == ["123 45 6789"]
    assert found("us_ssn", "000-12-3456 666-12-3456 912-12-3456 123-00-4567") == []
    assert found("us_ssn", "123-45-67890") == []


def test_phone() -> None:
    assert found("phone", "call +44 20 7946 0958 today") == ["+44 20 7946 0958"]
    assert found("phone", "call (415) 555-2671") == ["(415) 555-2671"]
    assert found("phone", "call 415.555.2671") == ["415.555.2671"]
    assert found("phone", "year 2024") == []


def test_ip_addresses() -> None:
    assert found("ipv4", "from 192.168.1.20.") == ["192.168.1.20"]
    assert found("ipv4", "version 1.2.3.4.5 and 256.1.1.1") == []
    assert found("ipv6", "from 2001:db8::8a2e:370:7334 and fe80::1") == [
        "2001:db8::8a2e:370:7334", "fe80::1"]
    assert found("ipv6", "at 12:30:45") == []


def test_overlaps_keep_the_first_detector() -> None:
    detectors = [BUILTIN["card"], BUILTIN["phone"]]
    assert find_spans(detectors, "4111111111111111") == [(0, 16)]


def test_unknown_detector_and_bad_pattern_are_policy_errors() -> None:
    with pytest.raises(MaskingError, match="unknown detector"):
        detector_for("passport")
    with pytest.raises(MaskingError, match="bad pattern"):
        custom_detector("([a-z", "r1")
    assert custom_detector(r"EMP-\d{5}", "r1").spans("id EMP-12345") == [(3, 12)]


def test_hostile_text_stays_fast_enough_to_finish() -> None:
    text = "a" * 200_000 + "@" + "b." * 50_000
    for detector in BUILTIN.values():
        detector.spans(text)  # bounded quantifiers: this returns rather than backtracking forever
