"""`streamctl login`, `logout`, `whoami` and `status`: who you are to the access server."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import webbrowser
from typing import Annotated, Any

import typer

from streamctl.cli.common import (
    OutputOpt,
    ProfileOpt,
    ServerOpt,
    Session,
    check_output,
    format_when,
    human_duration,
    note,
    open_session,
    print_json,
    read_secret_file,
    stderr,
    stdout,
    to_epoch,
)
from streamctl.cli.exit_codes import UsageProblem
from streamctl.cli.local_tunnels import running_tunnels
from streamctl.client import device_flow, oidc
from streamctl.client.credentials import StoredLogin
from streamctl.client.profiles import save_config
from streamctl.client.token_store import MemoryStore
from streamctl.client.tokens import TokenSet


def _browser_available() -> bool:
    """Offer a browser only where one can really open: a desktop session, not ssh or CI."""
    if os.environ.get("CI") or os.environ.get("SSH_CONNECTION"):
        return False
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def qr_block(data: str) -> str:
    """The QR code of `data` drawn with half blocks, small enough for an 80x24 terminal."""
    import segno

    buffer = io.StringIO()
    segno.make(data, error="L").terminal(out=buffer, compact=True, border=2)
    return buffer.getvalue()


def _offer_browser(url: str) -> None:
    """Open the page on Enter without blocking the polling (the user may just scan the QR)."""

    def wait_for_enter() -> None:
        try:
            line = sys.stdin.readline()
        except (OSError, ValueError):
            return
        if line:
            webbrowser.open(url)

    threading.Thread(target=wait_for_enter, name="open-browser", daemon=True).start()


def _device_login(session: Session, no_browser: bool) -> TokenSet:
    """Run the RFC 8628 device flow, drawing the code, URL, QR and a countdown on stderr."""
    login_config = session.anonymous().login_config()
    client_id = str(login_config.get("client_id") or "streamctl")
    meta = session.issuer_metadata()
    http = session.anonymous().http
    auth = device_flow.start(http, meta, client_id)
    complete = auth.verification_uri_complete or auth.verification_uri
    stderr.print(f"! First copy your one-time code: [bold]{auth.user_code}[/bold]")
    stderr.print(f"  Then open: {auth.verification_uri}")
    stderr.print("  Or scan this QR code to open the page with the code filled in:")
    sys.stderr.write(qr_block(complete))
    sys.stderr.flush()
    if not no_browser and sys.stdin.isatty() and _browser_available():
        stderr.print(
            f"- Press [bold]Enter[/bold] to open {auth.verification_uri} in your browser..."
        )
        _offer_browser(complete)
    interactive = sys.stderr.isatty()
    if not interactive:
        left = human_duration(auth.expires_at - time.time())
        stderr.print(f"Waiting for approval ({left} left)...")
        return device_flow.wait_for_tokens(http, meta, auth, client_id)
    with stderr.status("Waiting for you to approve the login...") as status:

        def on_wait(state: device_flow.PollState) -> None:
            status.update(
                "Waiting for you to approve the login... "
                f"[dim]{human_duration(state.seconds_left)} left[/dim]"
            )

        return device_flow.wait_for_tokens(http, meta, auth, client_id, on_wait=on_wait)


def login(
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    no_browser: Annotated[
        bool,
        typer.Option(
            "--no-browser",
            envvar="STREAMCTL_NO_BROWSER",
            help="Never offer to open a browser.",
            metavar="",
        ),
    ] = False,
    insecure_storage: Annotated[
        bool,
        typer.Option(
            "--insecure-storage",
            envvar="STREAMCTL_INSECURE_STORAGE",
            help="Keep tokens in a 0600 file instead of the OS keyring.",
            metavar="",
        ),
    ] = False,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            envvar="STREAMCTL_CLIENT_ID",
            help="Bots: OAuth client id (client credentials login).",
            metavar="ID",
        ),
    ] = None,
    client_secret_file: Annotated[
        str | None,
        typer.Option(
            "--client-secret-file",
            envvar="STREAMCTL_CLIENT_SECRET_FILE",
            help="Bots: file holding the client secret (never pass secrets as arguments).",
            metavar="FILE",
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Log in to the access server (device login in the browser; bots use client credentials).

    People get a one-time code, a link and a QR code, and approve the login on
    any device. Tokens go to the OS keyring; without one they are kept for this
    command only unless you pass --insecure-storage.
    """
    fmt = check_output(output)
    bot: tuple[str, str] | None = None
    if client_id:
        secret = os.environ.get("STREAMCTL_CLIENT_SECRET")
        if client_secret_file:
            secret = read_secret_file(client_secret_file)
        if not secret:
            raise UsageProblem(
                "--client-id needs a secret",
                hint="pass --client-secret-file FILE or set STREAMCTL_CLIENT_SECRET_FILE",
                code="usage",
            )
        bot = (client_id, secret)
    elif client_secret_file:
        raise UsageProblem("--client-secret-file needs --client-id", code="usage")
    store_in_file = insecure_storage or None
    with open_session(profile, server, insecure_storage=store_in_file, bot=bot) as session:
        session.require_server()
        if bot is not None:
            tokens = oidc.client_credentials(
                session.anonymous().http, session.issuer_metadata(), bot[0], bot[1]
            )
        else:
            tokens = _device_login(session, no_browser)
        session.opened.store.save(session.profile, tokens)
        memory = MemoryStore()
        memory.save(session.profile, tokens)
        client = session.anonymous().with_credentials(
            StoredLogin(session.profile, memory, session.anonymous().http, session.lock_path)
        )
        me = client.whoami()
        if bot is None:
            _remember_profile(session, server, insecure_storage)
    stored_in = (
        "memory only (pass --client-id on every command)"
        if bot is not None
        else session.opened.store.description
    )
    if fmt == "json":
        print_json(
            {**me, "profile": session.profile, "server": session.server, "token_storage": stored_in}
        )
        return
    roles = ", ".join(str(r) for r in me.get("roles", [])) or "none"
    stdout.print(
        f"[green]✓[/green] Logged in to {session.server} as [bold]{me.get('subject')}[/bold] "
        f"({me.get('kind', 'user')}; roles: {roles})"
    )
    note(f"  profile {session.profile}; tokens kept in {stored_in}")


def _remember_profile(session: Session, server: str | None, insecure_storage: bool) -> None:
    """After a successful login, the profile remembers its server and token storage."""
    changed = False
    settings = session.config.profiles.setdefault(session.profile, {})
    if session.server and settings.get("server") != session.server:
        settings["server"] = session.server
        changed = True
    wanted = "file" if insecure_storage else settings.get("token_storage", "keyring")
    if settings.get("token_storage") != wanted:
        settings["token_storage"] = wanted
        changed = True
    if changed:
        save_config(session.config)


def logout(profile: ProfileOpt = None, server: ServerOpt = None) -> None:
    """Forget this profile's tokens (keyring entry or token file)."""
    session = open_session(profile, server)
    removed = session.opened.store.clear(session.profile)
    if removed:
        stdout.print(
            f"Logged out of profile {session.profile} "
            f"(tokens removed from {session.opened.store.description})"
        )
    else:
        stdout.print(f"Profile {session.profile} was not logged in; nothing to remove")


def _identity(session: Session) -> dict[str, Any]:
    client = session.client()
    me = client.whoami()
    return {
        "subject": me.get("subject"),
        "kind": me.get("kind"),
        "roles": me.get("roles", []),
        "token_expires_at": me.get("token_expires_at"),
        "profile": session.profile,
        "server": session.server,
        "token_storage": session.opened.store.description,
    }


def _print_identity(info: dict[str, Any]) -> None:
    expires = to_epoch(info.get("token_expires_at"))
    left = f" (in {human_duration(expires - time.time())})" if expires else ""
    stdout.print(f"[bold]{info['subject']}[/bold] ({info.get('kind') or 'user'})")
    stdout.print(f"  roles:          {', '.join(map(str, info['roles'])) or 'none'}")
    stdout.print(f"  server:         {info['server']}  (profile {info['profile']})")
    stdout.print(f"  token expires:  {format_when(info.get('token_expires_at'))}{left}")
    stdout.print(f"  tokens kept in: {info['token_storage']}")


def whoami(profile: ProfileOpt = None, server: ServerOpt = None, output: OutputOpt = None) -> None:
    """Show who you are logged in as: identity, roles and token expiry."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        info = _identity(session)
    if fmt == "json":
        print_json(info)
    else:
        _print_identity(info)


def status(profile: ProfileOpt = None, server: ServerOpt = None, output: OutputOpt = None) -> None:
    """Show your identity plus active grants and the tunnels running on this machine."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        info = _identity(session)
        grants = [g for g in session.client().list_grants() if _is_active(g)]
    tunnels = [t for t in running_tunnels() if t.get("profile") == session.profile]
    if fmt == "json":
        print_json({**info, "active_grants": grants, "tunnels": tunnels})
        return
    _print_identity(info)
    stdout.print(f"  active grants:  {len(grants) or 'none'}")
    for grant in grants:
        expires = to_epoch(grant.get("expires_at"))
        left = human_duration(expires - time.time()) if expires else "?"
        stdout.print(
            f"    {grant.get('grant_id')}  {','.join(grant.get('topics', []))}  "
            f"{','.join(grant.get('operations', []))}  {left} left"
        )
    stdout.print(f"  local tunnels:  {len(tunnels) or 'none'}")
    for tunnel in tunnels:
        stdout.print(
            f"    {tunnel.get('bootstrap')}  {','.join(tunnel.get('topics', []))}  "
            f"pid {tunnel.get('pid')}"
        )


def _is_active(grant: dict[str, Any]) -> bool:
    if grant.get("revoked") or grant.get("active") is False:
        return False
    expires = to_epoch(grant.get("expires_at"))
    return expires is None or expires > time.time()
