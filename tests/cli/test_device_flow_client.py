"""The device-flow client library against the real access server: intervals and slow_down."""

from __future__ import annotations

import time

import httpx

from streamctl.client import device_flow
from streamctl.client.oidc import DEVICE_CODE_GRANT, discover
from tests.cli.conftest import AccessServer


def test_slow_down_widens_the_polling_interval(access_server: AccessServer) -> None:
    with httpx.Client(timeout=30) as http:
        meta = discover(http, access_server.url)
        auth = device_flow.start(http, meta, "streamctl")
        assert auth.interval == 1  # the test server's configured interval
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": auth.device_code,
                "client_id": "streamctl"}
        started = time.monotonic()
        seen: dict[str, object] = {"meddled": None, "approved": False}
        intervals: list[float] = []

        def on_wait(state: device_flow.PollState) -> None:
            intervals.append(state.interval)
            assert state.seconds_left > 0
            # Another poller sneaks in just before the client's first poll, so the server
            # sees two polls too close together and answers the client with slow_down.
            if seen["meddled"] is None and time.monotonic() - started >= 1.1:
                seen["meddled"] = http.post(meta.token_endpoint, data=form).json()["error"]
            # Once the client has widened its interval, the user approves.
            if state.interval > auth.interval and not seen["approved"]:
                assert access_server.approve_device(auth.user_code, "alice") == 200
                seen["approved"] = True

        tokens = device_flow.wait_for_tokens(http, meta, auth, "streamctl", on_wait=on_wait)
    assert seen["meddled"] == "authorization_pending"
    assert tokens.access_token and tokens.refresh_token
    # The client went from the announced 1 s to 1 + 5 s (RFC 8628 3.5) and then got tokens.
    assert intervals[0] == 1 and intervals[-1] == 6
