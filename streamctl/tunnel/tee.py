"""A send stream that forwards everything and keeps a copy: relaying a frame and recording it.

With a transcript but no masker, a Fetch answer does not need to be held back before the
client gets it: it is relayed as it arrives (as without a transcript), and this tee keeps
the bytes so the observer can be told about the frame once it is through.
"""

from __future__ import annotations

import trio


class TeeSendStream(trio.abc.SendStream):
    """Sends to `sink` and appends a copy of every piece sent to `kept`."""

    def __init__(self, sink: trio.abc.SendStream, kept: list[bytes]) -> None:
        self._sink = sink
        self._kept = kept

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # A copy, not a view: the reader may reuse the buffer a view points into.
        self._kept.append(bytes(data))
        await self._sink.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._sink.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """The tee does not own the sink (the client connection outlives one frame)."""
