"""Shared fixtures: real Kafka brokers, PostgreSQL and the Java console tools, started lazily.

Every server is session scoped and started the first time a test asks for it, so a run that
needs no three-node cluster never pays for one. When a test that used a broker fails, the end
of that broker's log is added to the failure report.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.harness.kafka import KafkaCluster, SaslSettings
from tests.harness.postgres import PostgresServer
from tests.harness.tools import KafkaTools

BROKER_FIXTURES = ("kafka", "kafka_cluster", "kafka_sasl_factory")
_started: dict[str, list[KafkaCluster]] = {name: [] for name in BROKER_FIXTURES}
_postgres: list[PostgresServer] = []

SaslFactory = Callable[..., KafkaCluster]


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaCluster]:
    """A single-node KRaft broker shared by the whole run."""
    with KafkaCluster(1) as cluster:
        _started["kafka"].append(cluster)
        yield cluster


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A three-node KRaft cluster (nodes 1, 2, 3) shared by the whole run."""
    with KafkaCluster(3) as cluster:
        _started["kafka_cluster"].append(cluster)
        yield cluster


@pytest.fixture(scope="session")
def kafka_sasl_factory() -> Iterator[SaslFactory]:
    """Brokers with a SASL_PLAINTEXT listener (SCRAM-SHA-512, OAUTHBEARER with a JWKS URL).

    One broker per distinct (jwks_url, issuer, audience), started on first request.
    """
    brokers: dict[SaslSettings, KafkaCluster] = {}

    def factory(
        jwks_url: str | None = None, issuer: str | None = None, audience: str | None = None
    ) -> KafkaCluster:
        settings = SaslSettings(jwks_url=jwks_url, issuer=issuer, audience=audience)
        if settings not in brokers:
            cluster = KafkaCluster(1, sasl=settings)
            _started["kafka_sasl_factory"].append(cluster)
            cluster.start()
            brokers[settings] = cluster
        return brokers[settings]

    try:
        yield factory
    finally:
        for cluster in brokers.values():
            cluster.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster; use `postgres.new_database()` for an isolated database."""
    with PostgresServer() as server:
        _postgres.append(server)
        yield server


@pytest.fixture(scope="session")
def kafka_tools() -> Iterator[KafkaTools]:
    """The Java console producer and consumer."""
    tools = KafkaTools()
    yield tools
    shutil.rmtree(tools.workdir, ignore_errors=True)


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (not created: brokers auto-create, or call create_topic)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Attach the tail of each broker (and PostgreSQL) log the test used when it fails."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    used = set(getattr(item, "fixturenames", ()))
    for name in BROKER_FIXTURES:
        if name not in used:
            continue
        for cluster in _started[name]:
            report.sections.append((f"{name} broker log (tail)", cluster.log_tails()))
    if "postgres" in used:
        for server in _postgres:
            report.sections.append(("postgres log (tail)", server.log_tail()))
