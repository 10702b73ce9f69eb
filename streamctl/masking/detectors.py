"""Detectors that find sensitive data wherever it sits in text: e-mail, payment card (Luhn),
IBAN (mod 97), US SSN, phone, IPv4, IPv6, and custom regexes from the policy.

Each detector is a compiled regex (bounded quantifiers only, so hostile text cannot make it
backtrack for long) plus a validator that accepts a match, narrows it to the valid part, or
rejects it. `find_spans` runs several detectors over one text and returns non-overlapping
spans, so a value is masked once even when two detectors see it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamctl.masking.errors import MaskingError

#: A validator gets the match and returns the (start, end) to mask, or None to leave it.
Validator = Callable[[re.Match[str]], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value: a cheap prefilter, a regex and a validator."""

    name: str
    regex: re.Pattern[str]
    validate: Validator | None = None
    needs: str = ""  # a character the text must contain for the regex to possibly match

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Every (start, end) this detector masks in the text.

        After a rejected match the search resumes one character later (not after the match),
        and after an accepted one right after the accepted span: a greedy regex that ran into
        a neighbouring value cannot hide that value.
        """
        if self.needs and self.needs not in text:
            return []
        found = []
        search = self.regex.search
        validate = self.validate
        pos = 0
        while (match := search(text, pos)) is not None:
            span = match.span() if validate is None else validate(match)
            if span is not None and span[1] > span[0]:
                found.append(span)
                pos = span[1]
            else:
                pos = match.start() + 1
        return found


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> tuple[int, int] | None:
    """Longest prefix ending on a digit-group boundary with 13-19 digits and a valid Luhn sum."""
    text = match.group()
    ends = [i + 1 for i, ch in enumerate(text)
            if ch.isdigit() and (i + 1 == len(text) or not text[i + 1].isdigit())]
    for end in reversed(ends):
        digits = "".join(ch for ch in text[:end] if ch.isdigit())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return match.start(), match.start() + end
    return None


def iban_ok(candidate: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN without spaces."""
    if not 15 <= len(candidate) <= 34:
        return False
    rearranged = candidate[4:] + candidate[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _iban(match: re.Match[str]) -> tuple[int, int] | None:
    """Longest prefix of the match that is a valid IBAN (the regex may run into a next word)."""
    text = match.group()
    for end in range(len(text), 14, -1):
        if text[end - 1] == " ":
            continue
        if iban_ok(text[:end].replace(" ", "")):
            return match.start(), match.start() + end
    return None


def _ipv4(match: re.Match[str]) -> tuple[int, int] | None:
    return match.span()


def _ipv6(match: re.Match[str]) -> tuple[int, int] | None:
    text = match.group()
    if sum(ch != ":" for ch in text) < 2:
        return None
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return match.span()


def _phone(match: re.Match[str]) -> tuple[int, int] | None:
    digits = sum(ch.isdigit() for ch in match.group())
    return match.span() if 7 <= digits <= 15 else None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"

BUILTIN: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector(
            "email",
            re.compile(
                r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}"
                r"\.[A-Za-z]{2,24}"
            ),
            needs="@",
        ),
        Detector(
            "iban",
            re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"),
            _iban,
        ),
        Detector(
            "card",
            re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,22}(?![0-9])"),
            _card,
        ),
        Detector(
            "us_ssn",
            re.compile(
                r"(?<![0-9])(?!000|666|9[0-9]{2})[0-9]{3}([\- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}"
                r"(?![0-9])"
            ),
            needs="",
        ),
        Detector(
            "ipv6",
            re.compile(
                r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}"
                r"(?:[0-9A-Fa-f]{1,4}|" + _OCTET + r"(?:\." + _OCTET + r"){3})?"
                r"(?![0-9A-Fa-f:])"
            ),
            _ipv6,
            needs=":",
        ),
        Detector(
            "ipv4",
            re.compile(
                r"(?<![0-9])(?<![0-9]\.)" + _OCTET + r"(?:\." + _OCTET + r"){3}(?!\.?[0-9])"
            ),
            _ipv4,
            needs=".",
        ),
        Detector(
            "phone",
            re.compile(
                r"(?<![0-9+])(?:"
                r"\+[1-9](?:[ .\-]?[0-9]){6,14}"  # E.164, optionally spaced
                r"|(?:1[ .\-]?)?\(?[2-9][0-9]{2}\)?[ .\-]?[2-9][0-9]{2}[ .\-]?[0-9]{4}"  # NANP
                r")(?![0-9])"
            ),
            _phone,
        ),
    )
}

#: The order detectors are tried in when their spans overlap: the most specific first.
PRIORITY = ("email", "iban", "card", "us_ssn", "ipv6", "ipv4", "phone")


def detector_for(name: str) -> Detector:
    """Look up a built-in detector; unknown names are a policy error (fail closed)."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise MaskingError(
            f"unknown detector {name!r}; known: {', '.join(sorted(BUILTIN))}"
        ) from None


def custom_detector(pattern: str, rule_name: str) -> Detector:
    """A detector for a policy's own regex; an invalid regex is a policy error."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise MaskingError(f"masking rule {rule_name!r}: bad pattern: {exc}") from None
    return Detector(f"pattern:{rule_name}", regex)


def find_spans(detectors: Sequence[Detector], text: str) -> list[tuple[int, int]]:
    """Non-overlapping spans to mask, earliest first; on overlap the earlier detector wins."""
    spans: list[tuple[int, int]] = []
    for detector in detectors:
        for start, end in detector.spans(text):
            if all(end <= s or start >= e for s, e in spans):
                spans.append((start, end))
    spans.sort()
    return spans
