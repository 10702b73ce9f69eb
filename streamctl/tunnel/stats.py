"""Live counters of a running tunnel, for the CLI's status line and for tests.

Written only from the tunnel's trio thread; plain integers, so another thread may read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TunnelStats:
    """Requests allowed and refused, bytes each way, connections, masking outcomes."""

    requests_allowed: int = 0
    requests_refused: int = 0
    refused_by_code: dict[int, int] = field(default_factory=dict)
    bytes_from_clients: int = 0
    bytes_to_clients: int = 0
    connections_open: int = 0
    connections_total: int = 0
    connection_errors: int = 0
    partitions_masked: int = 0
    partitions_mask_failed: int = 0
    reauthentications: int = 0

    def count_refused(self, error_code: int) -> None:
        """Count one refusal under its Kafka error code."""
        self.requests_refused += 1
        self.refused_by_code[error_code] = self.refused_by_code.get(error_code, 0) + 1
