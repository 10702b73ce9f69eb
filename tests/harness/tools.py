"""The Java console producer and consumer from the cached Kafka jars, as a fourth real client.

Tool logs go to stderr at WARN so stdout carries only records. Extra client properties (which
may hold SASL secrets) go through a 0600 properties file, never through argv.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.harness.kafka import java_command

TOOL_JVM_OPTIONS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


class ConsoleToolError(RuntimeError):
    """A console tool exited with an error (the message carries its stderr)."""


class KafkaTools:
    """Runs ConsoleProducer / ConsoleConsumer against any bootstrap (broker or tunnel)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="streamctl-tools-"))
        self.log_config = self.workdir / "tools-log4j2.properties"
        self.log_config.write_text(
            "\n".join(
                [
                    "status = error",
                    "appender.err.type = Console",
                    "appender.err.name = STDERR",
                    "appender.err.target = SYSTEM_ERR",
                    "appender.err.layout.type = PatternLayout",
                    "appender.err.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = WARN",
                    "rootLogger.appenderRef.err.ref = STDERR",
                    "",
                ]
            )
        )

    def console_producer(
        self,
        bootstrap: str,
        topic: str,
        lines: Iterable[str],
        extra_props: Mapping[str, str] | None = None,
        reader_props: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        """Send one record per line (reader_props e.g. {"parse.key": "true", "key.separator": ":"})."""
        args = ["--bootstrap-server", bootstrap, "--topic", topic]
        if extra_props:
            args += ["--producer.config", str(self._properties_file("producer", extra_props))]
        for key, value in (reader_props or {}).items():
            args += ["--property", f"{key}={value}"]
        payload = "".join(f"{line}\n" for line in lines)
        self._run(PRODUCER, args, stdin=payload, timeout=timeout)

    def console_consumer(
        self,
        bootstrap: str,
        topic: str,
        max_messages: int,
        extra_props: Mapping[str, str] | None = None,
        *,
        from_beginning: bool = True,
        formatter_props: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> list[str]:
        """Read up to max_messages records and return the printed lines (values by default)."""
        args = [
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--max-messages",
            str(max_messages),
            "--timeout-ms",
            str(int(timeout * 1000 * 0.8)),
        ]
        if from_beginning:
            args.append("--from-beginning")
        if extra_props:
            args += ["--consumer.config", str(self._properties_file("consumer", extra_props))]
        for key, value in (formatter_props or {}).items():
            args += ["--property", f"{key}={value}"]
        output = self._run(CONSUMER, args, stdin="", timeout=timeout)
        return output.splitlines()

    def _properties_file(self, kind: str, props: Mapping[str, str]) -> Path:
        handle, name = tempfile.mkstemp(prefix=f"{kind}-", suffix=".properties", dir=self.workdir)
        with os.fdopen(handle, "w") as out:
            for key, value in props.items():
                out.write(f"{key}={_escape(value)}\n")
        os.chmod(name, 0o600)
        return Path(name)

    def _run(self, main_class: str, args: list[str], *, stdin: str, timeout: float) -> str:
        command = java_command(
            main_class,
            *args,
            jvm_options=[*TOOL_JVM_OPTIONS, f"-Dlog4j2.configurationFile={self.log_config}"],
        )
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise ConsoleToolError(
                f"{main_class.rsplit('.', 1)[-1]} exited {result.returncode}:\n"
                + result.stderr[-4000:]
            )
        return result.stdout


def _escape(value: str) -> str:
    """Escape a value for a Java properties file (backslashes and line breaks)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
