"""Sample records shared by the benchmark sections: ~300-byte JSON orders with PII in them."""

from __future__ import annotations

import json
import random

BASE_TIMESTAMP = 1_700_000_000_000


def luhn_complete(digits: str) -> str:
    """Append the Luhn check digit, so generated card numbers look real to detectors."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def json_records(count: int = 1000, seed: int = 7) -> list[bytes]:
    """JSON values of about 300 bytes, each with an e-mail, an SSN and a card number."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    out = []
    for i in range(count):
        card = luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
        record = {
            "order_id": f"ord-{i:08d}",
            "ts": BASE_TIMESTAMP + i,
            "customer": {
                "name": f"Customer {rng.randrange(10**6)}",
                "email": f"user{rng.randrange(10**6)}@example.com",
                "ssn": f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-"
                f"{rng.randrange(1000, 9999)}",
                "tier": rng.choice(["gold", "silver", "bronze"]),
            },
            "items": [
                {"sku": f"SKU-{rng.randrange(10**5)}", "qty": rng.randrange(1, 5), "card": card},
            ],
            "shipping": {"city": rng.choice(["Lyon", "Oslo", "Porto", "Graz"]), "zip": "12345"},
            "note": "x" * rng.randrange(20, 40),
        }
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return out
