"""The streamctl demo: a local Kafka broker, an access server, and alice's day, step by step.

    python scripts/demo.py run     # the whole story, then everything is stopped
    python scripts/demo.py up      # start broker + server and leave them running
    python scripts/demo.py down    # stop what `up` started

Every step prints the exact `streamctl` command it runs, so it can be repeated by
hand (after `up`, `source .demo/alice.env` gives a shell alice's settings).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.kafka import KafkaCluster  # noqa: E402
from tests.harness.processes import SupervisedProcess, free_port  # noqa: E402

STREAMCTL = str(Path(sys.executable).with_name("streamctl"))
DEMO_DIR = Path(os.environ.get("STREAMCTL_DEMO_DIR") or REPO / ".demo")
BOLD, DIM, GREEN, RED, CYAN, RESET = (
    "\033[1m",
    "\033[2m",
    "\033[32m",
    "\033[31m",
    "\033[36m",
    "\033[0m",
)
if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
    BOLD = DIM = GREEN = RED = CYAN = RESET = ""

ORDERS = [
    {
        "order_id": f"o-{n}",
        "customer": {"name": name, "email": email, "address": address},
        "payment": {"card": card, "amount": amount},
        "items": [{"sku": "sku-1", "qty": 1}],
    }
    for n, (name, email, address, card, amount) in enumerate(
        [
            ("Ada", "ada@example.com", "12 Analytical St", "4111111111111111", 42.0),
            ("Grace", "grace@example.com", "1 Compiler Rd", "5555555555554444", 17.5),
            ("Linus", "linus@example.com", "3 Kernel Way", "378282246310005", 99.9),
        ],
        start=1,
    )
]


def _shown_path(path: Path) -> str:
    """A path as short as it can be shown: relative to the repo when inside it."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def say(text: str) -> None:
    print(f"\n{BOLD}{CYAN}== {text}{RESET}", flush=True)


def info(text: str) -> None:
    print(f"{DIM}   {text}{RESET}", flush=True)


@dataclass
class Person:
    """One demo user: their own config and data dirs, as if on their own laptop."""

    name: str
    password: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def setup(self, server_url: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "STREAMCTL_CONFIG_DIR": str(self.home / "config"),
            "STREAMCTL_DATA_DIR": str(self.home / "data"),
            "STREAMCTL_SERVER": server_url,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }

    def env_file(self) -> str:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]
        lines.append(f'export PATH={shlex.quote(str(Path(STREAMCTL).parent))}:"$PATH"')
        return "\n".join(lines) + "\n"


def run(
    person: Person,
    args: list[str],
    *,
    stdin: str | None = None,
    expect: int = 0,
    show: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one streamctl command as `person`, echoing it first, and check its exit code."""
    shown = show or "streamctl " + shlex.join(args)
    prefix = f"echo {shlex.quote(stdin.strip())} | " if stdin and show is None else ""
    print(f"{BOLD}{person.name}$ {prefix}{shown}{RESET}", flush=True)
    proc = subprocess.run(
        [STREAMCTL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **person.env, "COLUMNS": "100"},
        timeout=120,
    )
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print(f"   {line}")
    if proc.returncode != expect:
        raise DemoError(f"`{shown}` exited {proc.returncode}, expected {expect}")
    if expect:
        print(f"   {DIM}(exit code {proc.returncode}, as expected){RESET}")
    return proc


class DemoError(RuntimeError):
    """A demo step did not do what the story says; the message names the step."""


def device_login(person: Person, server_url: str) -> None:
    """`streamctl login`, with the person signing in on the verification page from a 'browser'."""
    args = ["login", "--no-browser", "--insecure-storage"]
    print(f"{BOLD}{person.name}$ streamctl {shlex.join(args)}{RESET}", flush=True)
    proc = subprocess.Popen(
        [STREAMCTL, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **person.env, "COLUMNS": "100"},
    )
    assert proc.stdout is not None
    code: str | None = None
    out: list[str] = []
    reader_done = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
        reader_done.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while code is None and time.monotonic() < deadline:
        match = re.search(r"one-time code: ([A-Z0-9]{4}-[A-Z0-9]{4})", "".join(out))
        if match:
            code = match.group(1)
        else:
            time.sleep(0.1)
    if code is None:
        proc.kill()
        raise DemoError("login did not show a user code:\n" + "".join(out))
    for line in "".join(out).splitlines():
        if line.strip() and not line.startswith(("\u2580", "\u2584", "\u2588", " \u2580")):
            print(f"   {line}")
    info(f"({person.name} opens {server_url}/device, enters {code} and signs in)")
    with httpx.Client(base_url=server_url, timeout=10) as browser:
        page = browser.post(
            "/device",
            data={
                "user_code": code,
                "username": person.name,
                "password": person.password,
                "action": "approve",
            },
        )
        if page.status_code != 200:
            proc.kill()
            raise DemoError(f"signing in on the verification page failed: {page.status_code}")
    rc = proc.wait(timeout=60)
    reader_done.wait(5)
    tail = "".join(out).splitlines()[-2:]
    for line in tail:
        print(f"   {line}")
    if rc != 0:
        raise DemoError(f"login exited {rc}")


@dataclass
class Stack:
    """The running pieces: broker, access server, and the demo users."""

    workdir: Path
    kafka: KafkaCluster | None
    bootstrap: str
    server: SupervisedProcess | None = None
    server_url: str = ""
    alice: Person | None = None
    bob: Person | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.kafka is not None:
            self.kafka.stop()


def start_stack(workdir: Path, bootstrap: str | None) -> Stack:
    """Broker (unless given), server config from `streamctl server init`, server process, topics."""
    # A demo always starts from scratch: stale broker data or server state from an earlier
    # run (with other passwords) would only get in the way.
    for stale in ("kafka", "server", "alice", "bob"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    kafka: KafkaCluster | None = None
    if bootstrap is None:
        say("Starting a local Apache Kafka broker (KRaft, one node)")
        kafka = KafkaCluster(1, workdir=workdir / "kafka").start()
        bootstrap = kafka.bootstrap
        info(f"broker at {bootstrap}")
    stack = Stack(workdir=workdir, kafka=kafka, bootstrap=bootstrap)
    try:
        _start_server(stack)
        _seed_topics(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start_server(stack: Stack) -> None:
    say("Starting the access server (SQLite, built-in login issuer)")
    server_dir = stack.workdir / "server"
    passwords = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    subprocess.run(
        [
            STREAMCTL,
            "server",
            "init",
            str(server_dir),
            "--issuer-url",
            url,
            "--port",
            str(port),
        ],
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "STREAMCTL_ALICE_PASSWORD": passwords["alice"],
            "STREAMCTL_BOB_PASSWORD": passwords["bob"],
        },
    )
    settings = yaml.safe_load((server_dir / "server.yaml").read_text())
    settings.update(issuer_url=url, port=port, device_poll_interval_seconds=1)
    (server_dir / "server.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    policy_path = server_dir / "policy.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    for cluster in policy["clusters"].values():
        cluster["bootstrap"] = stack.bootstrap
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    info(f"streamctl server init {_shown_path(server_dir)}  (users alice=engineer, bob=approver)")
    stack.server = SupervisedProcess(
        [STREAMCTL, "server", "run", "--config", str(server_dir / "server.yaml")],
        log_path=stack.workdir / "server.log",
        cwd=server_dir,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not stack.server.running:
            raise DemoError(
                "the access server did not start; see " + str(stack.workdir / "server.log")
            )
        time.sleep(0.2)
    stack.server_url = url
    info(f"access server at {url}")
    stack.alice = Person("alice", passwords["alice"], stack.workdir / "alice")
    stack.bob = Person("bob", passwords["bob"], stack.workdir / "bob")
    for person in (stack.alice, stack.bob):
        person.setup(url)
        (stack.workdir / f"{person.name}.env").write_text(person.env_file())
    (stack.workdir / "state.json").write_text(
        json.dumps({"server_url": url, "bootstrap": stack.bootstrap, "passwords": passwords})
    )
    os.chmod(stack.workdir / "state.json", 0o600)


def _seed_topics(stack: Stack) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    say("Seeding topics as the cluster operator (directly, not through streamctl)")
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap.split(","))
    try:
        admin.create_topics(
            [NewTopic(t, 1, 1) for t in ("orders", "payments", "audit-events")],
            timeout_ms=30_000,
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap.split(","))
    for order in ORDERS:
        producer.send("orders", json.dumps(order).encode())
    producer.send("audit-events", b'{"event": "payroll-closed"}')
    producer.flush()
    producer.close()
    info("orders: 3 JSON orders with e-mails and card numbers (class pii, masked)")
    info("payments: high-value, writes need an approval by someone else")
    info("audit-events: immutable, never deleted, altered or truncated")


def story(stack: Stack) -> None:
    """alice's day, as in the README."""
    alice, bob = stack.alice, stack.bob
    assert alice is not None and bob is not None

    say("1. alice logs in with the device flow (RFC 8628)")
    device_login(alice, stack.server_url)
    run(alice, ["whoami"])

    say("2. alice tails `orders`: e-mails and card numbers are masked by the tunnel")
    run(alice, ["tail", "orders", "--from-beginning", "--max-messages", "3"])

    say("3. alice tries to write to `payments` without an approval: refused")
    payment = '{"payment_id": "p-1", "amount": 250, "reason": "refund INC-42"}'
    run(alice, ["produce", "payments"], stdin=payment + "\n", expect=3)

    say("4. alice asks for a just-in-time approval")
    proc = run(
        alice,
        [
            "request-approval",
            "payments",
            "--write",
            "--for",
            "30m",
            "--reason",
            "refund INC-42",
            "--nowait",
            "-o",
            "json",
        ],
    )
    approval_id = json.loads(proc.stdout)["id"]

    say("5. bob, an approver, logs in and approves it")
    device_login(bob, stack.server_url)
    run(bob, ["approvals", "ls", "--reviewable"])
    run(bob, ["approvals", "approve", approval_id, "--reason", "matches INC-42"])

    say("6. alice writes to `payments` under the approval")
    run(
        alice,
        ["produce", "payments", "--approval", approval_id, "-o", "json"],
        stdin=payment + "\n",
    )

    say("7. alice tries to delete the immutable `audit-events`")
    info("asking the server for a delete grant is refused outright:")
    run(
        alice, ["connect", "audit-events", "--operation", "delete", "--reason", "cleanup"], expect=3
    )
    info("with a read grant, her admin client's DeleteTopics gets a Kafka error from the tunnel:")
    delete = (
        "import os\n"
        "from kafka.admin import KafkaAdminClient\n"
        "admin = KafkaAdminClient(bootstrap_servers=os.environ['STREAMCTL_BOOTSTRAP'])\n"
        "try:\n"
        "    admin.delete_topics(['audit-events'])\n"
        "    print('deleted (this must not happen)')\n"
        "except Exception as exc:\n"
        "    print(f'DeleteTopics refused: {type(exc).__name__}')\n"
    )
    script = stack.workdir / "delete_topic.py"
    script.write_text(delete)
    proc = run(
        alice,
        [
            "connect",
            "audit-events",
            "--read",
            "--ttl",
            "5m",
            "--reason",
            "cleanup",
            "--exec",
            f"{sys.executable} {script}",
        ],
        show="streamctl connect audit-events --read --exec 'python delete_topic.py'",
    )
    if "DeleteTopics refused" not in proc.stdout + proc.stderr:
        raise DemoError("the delete was not refused")

    say("8. Every tunnel session left a hash-chained transcript on the server")
    run(alice, ["sessions", "ls"])
    listing = subprocess.run(
        [STREAMCTL, "sessions", "ls", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **alice.env},
        check=True,
    )
    writes = [s for s in json.loads(listing.stdout) if "payments" in s.get("topics", [])]
    if not writes:
        raise DemoError("no transcript names payments")
    info("replay of the session that wrote to payments:")
    run(alice, ["sessions", "play", writes[0]["session_id"], "--speed", "0"])

    say("9. Who produced offset 0 of payments?")
    proc = run(alice, ["audit", "who-produced", "payments", "0", "0"])
    if "alice" not in proc.stdout:
        raise DemoError("who-produced did not name alice")
    say(
        "Done: every grant was short-lived and scoped, every refusal a real Kafka error, "
        "and the audit trail lives on the access server, not in Kafka."
    )


def cmd_run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else DEMO_DIR / f"run-{os.getpid()}"
    began = time.monotonic()
    stack = start_stack(workdir, args.bootstrap)
    try:
        story(stack)
    except DemoError as exc:
        print(f"{RED}demo failed: {exc}{RESET}", file=sys.stderr)
        print(f"server log: {workdir / 'server.log'}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            stack.stop()
    print(f"\n{GREEN}demo finished in {time.monotonic() - began:.0f}s{RESET}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Internal: the long-lived process behind `up`, stopped by `down` (SIGTERM)."""
    stack = start_stack(DEMO_DIR / "up", None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    (DEMO_DIR / "up" / "ready").write_text("ok")
    stop.wait()
    stack.stop()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    pid_file = DEMO_DIR / "up.pid"
    if pid_file.exists():
        print(f"already up (pid {pid_file.read_text().strip()}); `make demo-down` first")
        return 1
    (DEMO_DIR / "up").mkdir(parents=True, exist_ok=True)
    (DEMO_DIR / "up" / "ready").unlink(missing_ok=True)
    log = open(DEMO_DIR / "up.log", "ab")
    child = subprocess.Popen(
        [sys.executable, __file__, "serve"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file.write_text(str(child.pid))
    deadline = time.monotonic() + 90
    while not (DEMO_DIR / "up" / "ready").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            pid_file.unlink(missing_ok=True)
            print(f"demo-up failed; see {DEMO_DIR / 'up.log'}", file=sys.stderr)
            return 1
        time.sleep(0.3)
    state = json.loads((DEMO_DIR / "up" / "state.json").read_text())
    print(f"access server: {state['server_url']}\nkafka: {state['bootstrap']}")
    print("alice's shell: source .demo/up/alice.env   (password in .demo/up/state.json)")
    print("stop with: make demo-down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    pid_file = DEMO_DIR / "up.pid"
    if not pid_file.exists():
        print("nothing is running")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    print("demo stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="the whole story, then stop everything")
    p_run.add_argument("--bootstrap", help="use this running broker instead of starting one")
    p_run.add_argument("--workdir", help="where the demo keeps its files (default .demo/run-PID)")
    p_run.add_argument("--keep", action="store_true", help="leave broker and server running")
    sub.add_parser("up", help="start broker + server and leave them running")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    handler: Any = {"run": cmd_run, "up": cmd_up, "down": cmd_down, "serve": cmd_serve}[
        args.command
    ]
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print("\ninterrupted; everything the demo started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
