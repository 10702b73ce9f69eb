"""Run a harness server by hand: `python -m tests.harness kafka [--nodes 3] [--sasl]`,
`python -m tests.harness postgres`.

The first line on stdout is the address (Kafka bootstrap or SQLAlchemy URL), so scripts can
read it; notes go to stderr. The server stays up until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading

from tests.harness.kafka import KafkaCluster, SaslSettings
from tests.harness.postgres import PostgresServer


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _wait_for_ctrl_c() -> None:
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        _note("stopping...")


def run_kafka(args: argparse.Namespace) -> int:
    """Start a cluster, print its bootstrap, keep it up until interrupted."""
    sasl = None
    if args.sasl or args.jwks_url:
        sasl = SaslSettings(jwks_url=args.jwks_url, issuer=args.issuer, audience=args.audience)
    cluster = KafkaCluster(args.nodes, sasl=sasl)
    _note(f"starting {args.nodes}-node Kafka in {cluster.workdir} ...")
    try:
        cluster.start()
        print(cluster.bootstrap, flush=True)
        _note(f"ready in {cluster.startup_seconds:.1f}s; nodes {cluster.nodes}")
        for node_id, path in cluster.log_paths.items():
            _note(f"node {node_id} log: {path}")
        if sasl is not None:
            handle, name = tempfile.mkstemp(prefix="streamctl-scram-", suffix=".json")
            with os.fdopen(handle, "w") as out:
                json.dump({"username": cluster.scram_user, "password": cluster.scram_password}, out)
            os.chmod(name, 0o600)
            _note(f"SASL_PLAINTEXT bootstrap: {cluster.bootstrap_sasl}")
            _note(f"SCRAM-SHA-512 credentials (0600): {name}")
        _note("Ctrl-C to stop")
        _wait_for_ctrl_c()
    finally:
        cluster.stop()
    return 0


def run_postgres(args: argparse.Namespace) -> int:
    """Start PostgreSQL, print its URL, keep it up until interrupted."""
    server = PostgresServer()
    _note(f"starting PostgreSQL in {server.workdir} ...")
    try:
        server.start()
        print(server.url, flush=True)
        _note(f"ready in {server.startup_seconds:.1f}s; libpq DSN: {server.dsn}")
        _note("Ctrl-C to stop")
        _wait_for_ctrl_c()
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    # A shell may start us with SIGINT ignored (background job); Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    servers = parser.add_subparsers(dest="server", required=True)
    kafka = servers.add_parser("kafka", help="a KRaft Kafka cluster on loopback ports")
    kafka.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    kafka.add_argument("--sasl", action="store_true", help="add a SCRAM-SHA-512 listener")
    kafka.add_argument("--jwks-url", help="also accept OAUTHBEARER tokens checked against this")
    kafka.add_argument("--issuer", help="expected token issuer (with --jwks-url)")
    kafka.add_argument("--audience", help="expected token audience (with --jwks-url)")
    kafka.set_defaults(run=run_kafka)
    postgres = servers.add_parser("postgres", help="a throwaway PostgreSQL cluster")
    postgres.set_defaults(run=run_postgres)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
