"""Real Apache Kafka (KRaft) brokers for tests: one node, three nodes, or one with SASL.

Every node runs broker and controller roles (a static quorum of all nodes), listens on free
loopback ports, keeps its data and logs in a temp dir, and runs under the watchdog of
`processes.py`. Jars come from `scripts/fetch-kafka.sh` (a cache outside the clone).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

from tests.harness.processes import SupervisedProcess, free_port

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.1.1")
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 4.0
# Bump when the broker settings that `kafka-storage format` records change.
STORAGE_FORMAT = "kraft-static-v1"
JVM_OPTIONS = [
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]
SASL_LISTENER = "SASL"
SCRAM_USER = "streamctl-test"


def _listening(port: int) -> bool:
    """True when something accepts TCP connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class KafkaHarnessError(RuntimeError):
    """The harness could not bring a broker up (the message carries the log tail)."""


def kafka_home() -> Path:
    """The cached Kafka distribution; tells the user how to fetch it when it is missing."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamctl"
    home = Path(os.environ.get("STREAMCTL_CACHE", default)) / f"kafka-{KAFKA_VERSION}"
    if not (home / "libs").is_dir():
        raise KafkaHarnessError(
            f"Kafka {KAFKA_VERSION} jars not found in {home}; run `bash scripts/fetch-kafka.sh`"
        )
    return home


def java_command(main_class: str, *args: str, jvm_options: list[str] | None = None) -> list[str]:
    """`java -cp 'libs/*' MAIN ARGS` with the cached jars."""
    java = shutil.which("java") or "java"
    classpath = str(kafka_home() / "libs" / "*")
    return [java, *(jvm_options or []), "-cp", classpath, main_class, *args]


def new_cluster_id() -> str:
    """A random Kafka Uuid in its base64 form (never starting with '-', like Kafka's own)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def tail(path: Path, lines: int = 80) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 200_000))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"({path} not found)"
    return "\n".join(data.splitlines()[-lines:])


def log4j2_config(log_file: Path) -> str:
    """A log4j2 properties file that sends everything to one file and nothing to stdout."""
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {log_file}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.raft.name = org.apache.kafka.raft",
            "logger.raft.level = WARN",
            "",
        ]
    )


@dataclass(frozen=True)
class SaslSettings:
    """What the SASL listener accepts: SCRAM-SHA-512 always, OAUTHBEARER when a JWKS URL is set."""

    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None


@dataclass
class KafkaNode:
    """One combined broker+controller JVM and its files."""

    node_id: int
    directory: Path
    port: int
    controller_port: int
    sasl_port: int | None = None
    process: SupervisedProcess | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        """The broker's log4j file (server log)."""
        return self.directory / "server.log"

    @property
    def stdout_path(self) -> Path:
        """What the JVM printed itself (crashes, JVM errors)."""
        return self.directory / "jvm.out"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running


class KafkaCluster:
    """A KRaft cluster of `size` combined nodes (ids 1..size), started with start()."""

    def __init__(
        self,
        size: int = 1,
        *,
        sasl: SaslSettings | None = None,
        workdir: Path | None = None,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.size = size
        self.sasl = sasl
        self.extra_config = dict(extra_config or {})
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"streamctl-kafka{size}-"))
        self.cluster_id = new_cluster_id()
        self.scram_user = SCRAM_USER
        self.scram_password = secrets.token_urlsafe(18)
        self.startup_seconds: float | None = None
        self.node_by_id: dict[int, KafkaNode] = {}
        for node_id in range(1, size + 1):
            directory = self.workdir / f"node-{node_id}"
            directory.mkdir(parents=True, exist_ok=True)
            self.node_by_id[node_id] = KafkaNode(
                node_id=node_id,
                directory=directory,
                port=free_port(),
                controller_port=free_port(),
                sasl_port=free_port() if sasl is not None else None,
            )

    # -- the fixture interface -------------------------------------------------------------

    @property
    def nodes(self) -> list[int]:
        """Node ids, in order."""
        return sorted(self.node_by_id)

    @property
    def bootstrap(self) -> str:
        """PLAINTEXT bootstrap list of every node ("127.0.0.1:P1,127.0.0.1:P2,...")."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self._nodes())

    @property
    def bootstrap_sasl(self) -> str:
        """SASL_PLAINTEXT bootstrap list (SASL variant only)."""
        if self.sasl is None:
            raise AttributeError("this broker has no SASL listener")
        return ",".join(f"127.0.0.1:{node.sasl_port}" for node in self._nodes())

    @property
    def log_path(self) -> Path:
        """Server log of the first node (see log_paths for all)."""
        return self.node_by_id[self.nodes[0]].log_path

    @property
    def log_paths(self) -> dict[int, Path]:
        return {node.node_id: node.log_path for node in self._nodes()}

    def address_of(self, node_id: int) -> tuple[str, int]:
        """The PLAINTEXT host and port a node advertises."""
        return ("127.0.0.1", self.node_by_id[node_id].port)

    def admin(self, **configs: Any) -> KafkaAdminClient:
        """A kafka-python admin client on the running nodes (caller closes it)."""
        running = [f"127.0.0.1:{n.port}" for n in self._nodes() if n.running]
        return KafkaAdminClient(
            bootstrap_servers=running or self.bootstrap.split(","),
            request_timeout_ms=15_000,
            **configs,
        )

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication: int = 1,
        config: dict[str, str] | None = None,
    ) -> str:
        """Create a topic and wait until every partition has a leader; returns the name."""
        admin = self.admin()
        try:
            options: dict[str, Any] = {
                "num_partitions": partitions,
                "replication_factor": replication,
            }
            if config:
                options["configs"] = dict(config)
            admin.create_topics({name: options}, timeout_ms=30_000, wait_for_metadata=True)
        finally:
            admin.close()
        return name

    def live_brokers(self) -> set[int]:
        """Ids of the brokers the cluster currently reports as live (unfenced)."""
        return self._live_brokers({n.node_id for n in self._nodes() if n.running})

    def stop_node(self, node_id: int) -> None:
        """Stop one node gracefully (controlled shutdown moves its leaderships away)."""
        node = self.node_by_id[node_id]
        if node.process is not None:
            node.process.stop()
            node.process = None

    def start_node(self, node_id: int) -> None:
        """Start a stopped node again and wait until the cluster lists it as a live broker."""
        node = self.node_by_id[node_id]
        if node.running:
            return
        self._launch(node)
        self._wait_ready({node_id})

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> KafkaCluster:
        """Format the storage of every node, start them, wait until all brokers are live."""
        began = time.monotonic()
        for node in self._nodes():
            self._write_config(node)
        self._prepare_storage()
        for node in self._nodes():
            self._launch(node)
        self._wait_ready(set(self.nodes))
        if self.sasl is not None:
            self._create_scram_user()
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every node at once and remove the temp dir (unless STREAMCTL_KEEP_KAFKA_LOGS)."""
        for node in self._nodes():
            if node.process is not None:
                node.process.request_stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for node in self._nodes():
            if node.process is not None:
                # A node that lost its quorum can wait forever on controlled shutdown, and the
                # data is thrown away anyway: give the cluster a short grace, then kill.
                node.process.stop(grace=max(0.0, deadline - time.monotonic()))
                node.process = None
        if self._own_workdir and not os.environ.get("STREAMCTL_KEEP_KAFKA_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tails(self, lines: int = 60) -> str:
        """The end of every node's server log and JVM output, for failure reports."""
        parts = []
        for node in self._nodes():
            parts.append(f"--- node {node.node_id} {node.log_path} ---\n{tail(node.log_path, lines)}")
            out = tail(node.stdout_path, 20)
            if out.strip() and not out.startswith("("):
                parts.append(f"--- node {node.node_id} JVM output ---\n{out}")
        return "\n".join(parts)

    # -- internals ------------------------------------------------------------------------------

    def _nodes(self) -> list[KafkaNode]:
        return [self.node_by_id[i] for i in self.nodes]

    def _write_config(self, node: KafkaNode) -> None:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self._nodes())
        replication = str(min(3, self.size))
        listeners = [
            f"PLAINTEXT://127.0.0.1:{node.port}",
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
        ]
        advertised = [f"PLAINTEXT://127.0.0.1:{node.port}"]
        if node.sasl_port is not None:
            listeners.append(f"{SASL_LISTENER}://127.0.0.1:{node.sasl_port}")
            advertised.append(f"{SASL_LISTENER}://127.0.0.1:{node.sasl_port}")
        config: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": (
                f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{SASL_LISTENER}:SASL_PLAINTEXT"
            ),
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.flush.interval.ms": "60000",
            "controlled.shutdown.enable": "true",
        }
        if self.sasl is not None:
            config.update(self._sasl_config())
        config.update(self.extra_config)
        node.config_path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        (node.directory / "log4j2.properties").write_text(log4j2_config(node.log_path))

    def _sasl_config(self) -> dict[str, str]:
        assert self.sasl is not None
        prefix = f"listener.name.{SASL_LISTENER.lower()}"
        mechanisms = ["SCRAM-SHA-512"]
        config = {
            f"{prefix}.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        }
        if self.sasl.jwks_url is not None:
            mechanisms.append("OAUTHBEARER")
            oauth = "org.apache.kafka.common.security.oauthbearer"
            config.update(
                {
                    f"{prefix}.oauthbearer.sasl.jaas.config": (
                        f"{oauth}.OAuthBearerLoginModule required;"
                    ),
                    f"{prefix}.oauthbearer.sasl.server.callback.handler.class": (
                        f"{oauth}.OAuthBearerValidatorCallbackHandler"
                    ),
                    "sasl.oauthbearer.jwks.endpoint.url": self.sasl.jwks_url,
                    # Kafka 4.1's default validator (DefaultJwtValidator, built without a key
                    # resolver) falls back to ClientJwtValidator, which checks no signature.
                    "sasl.oauthbearer.jwt.validator.class": f"{oauth}.BrokerJwtValidator",
                    "sasl.oauthbearer.jwks.endpoint.refresh.ms": "10000",
                }
            )
            if self.sasl.issuer is not None:
                config["sasl.oauthbearer.expected.issuer"] = self.sasl.issuer
            if self.sasl.audience is not None:
                config["sasl.oauthbearer.expected.audience"] = self.sasl.audience
        config[f"{prefix}.sasl.enabled.mechanisms"] = ",".join(mechanisms)
        config["sasl.enabled.mechanisms"] = ",".join(mechanisms)
        return config

    def _jvm_options(self, node: KafkaNode) -> list[str]:
        options = [
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node.directory}",
        ]
        if self.sasl is not None and self.sasl.jwks_url is not None:
            options.append(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.sasl.jwks_url}")
        return options

    def _prepare_storage(self) -> None:
        """Copy formatted storage from the cache, formatting (slow: a JVM per node) only once.

        The formatted data holds the cluster id, node ids and feature levels, but no ports
        (the quorum is static, in the config), so one template per cluster size serves every run.
        """
        template = kafka_home() / "storage-templates" / f"{STORAGE_FORMAT}-{self.size}-nodes"
        if not (template / "complete").exists():
            self._format_all()
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=template.parent.parent))
            for node in self._nodes():
                shutil.copytree(node.directory / "data", staging / f"node-{node.node_id}")
            (staging / "complete").write_text(self.cluster_id)
            template.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(template)
            except OSError:  # another run cached it first
                shutil.rmtree(staging, ignore_errors=True)
            return
        self.cluster_id = (template / "complete").read_text().strip()
        for node in self._nodes():
            shutil.copytree(template / f"node-{node.node_id}", node.directory / "data")

    def _format_all(self) -> None:
        """Run the storage tool for every node in parallel (one JVM each)."""
        running = []
        for node in self._nodes():
            command = java_command(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                self.cluster_id,
                "--config",
                str(node.config_path),
                "--ignore-formatted",
                jvm_options=[
                    "-Xmx256m",
                    f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
                ],
            )
            running.append(
                (
                    node,
                    subprocess.Popen(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    ),
                )
            )
        for node, process in running:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise KafkaHarnessError(
                    f"formatting node {node.node_id} failed ({process.returncode}):\n"
                    + output.decode("utf-8", "replace")[-4000:]
                )

    def _launch(self, node: KafkaNode) -> None:
        command = java_command(
            "kafka.Kafka", str(node.config_path), jvm_options=self._jvm_options(node)
        )
        node.process = SupervisedProcess(
            command, log_path=node.stdout_path, cwd=node.directory, grace=30.0
        )

    def _wait_ready(self, node_ids: set[int]) -> None:
        """Poll with a real client until the cluster lists every wanted node as a live broker."""
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for node_id in node_ids:
                node = self.node_by_id[node_id]
                if not node.running:
                    raise KafkaHarnessError(
                        f"Kafka node {node_id} exited during startup\n{self.log_tails()}"
                    )
            if all(_listening(self.node_by_id[i].port) for i in node_ids):
                try:
                    if node_ids <= self._live_brokers(node_ids):
                        return
                except Exception as error:  # not up yet: keep polling
                    last_error = error
            time.sleep(0.3)
        raise KafkaHarnessError(
            f"Kafka nodes {sorted(node_ids)} not ready after {START_TIMEOUT_S:.0f}s "
            f"(last error: {last_error!r})\n{self.log_tails()}"
        )

    def _live_brokers(self, via: set[int]) -> set[int]:
        """Ids of the unfenced brokers, as DescribeCluster reports them."""
        admin = KafkaAdminClient(
            bootstrap_servers=[f"127.0.0.1:{self.node_by_id[i].port}" for i in via],
            request_timeout_ms=5_000,
        )
        try:
            brokers = admin.describe_cluster()["brokers"]
        finally:
            admin.close()
        return {
            int(b.get("broker_id", b.get("node_id", -1)))
            for b in brokers
            if not b.get("is_fenced", False)
        }

    def _create_scram_user(self) -> None:
        """Add the SCRAM-SHA-512 user through the admin API (the password never goes in argv)."""
        admin = self.admin()
        try:
            result = admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        self.scram_user,
                        ScramMechanism.SCRAM_SHA_512,
                        self.scram_password,
                        iterations=4096,
                    )
                ]
            )
        finally:
            admin.close()
        errors = {user: error for user, error in result.items() if error}
        if errors:
            raise KafkaHarnessError(f"creating the SCRAM user failed: {errors}")
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_sasl,
                    security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="SCRAM-SHA-512",
                    sasl_plain_username=self.scram_user,
                    sasl_plain_password=self.scram_password,
                    request_timeout_ms=5_000,
                )
                probe.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
