"""One readable line, fast, for the set-up problems a user meets first (no broker needed)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from fitbit_lakehouse.kafka_broker import BrokerError, ensure_broker, parse_bootstrap
from fitbit_lakehouse.maven import SetupError
from fitbit_lakehouse.spark import java_major_version, require_java


def _settings(base_settings, bootstrap, **overrides):
    return base_settings.with_overrides(**{"kafka.bootstrap_servers": bootstrap, **overrides})


def test_unreachable_remote_broker_fails_fast_with_advice(base_settings):
    # 127.0.0.2 is loopback but not "localhost": treated as someone else's broker, never started here
    started = time.monotonic()
    with pytest.raises(BrokerError) as err:
        ensure_broker(_settings(base_settings, "127.0.0.2:1"))
    assert time.monotonic() - started < 30
    message = str(err.value)
    assert "No Kafka broker answers at 127.0.0.2:1" in message and "\n" not in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message


def test_port_taken_by_something_else_is_named(base_settings, caplog):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_http():   # a web server, not Kafka: it answers garbage and hangs up
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_http, daemon=True).start()
    try:
        with pytest.raises(BrokerError) as err:
            # a short probe: garbage never turns into Kafka, however long it is waited for
            ensure_broker(_settings(base_settings, f"localhost:{port}", **{"kafka.probe_timeout_s": 2}))
        assert f"Port {port}" in str(err.value) and "not Kafka" in str(err.value) and "\n" not in str(err.value)
        # that line alone: the Kafka client's own errors about the garbage (Bootstrap failed, ...) stay out
        assert not [r.getMessage() for r in caplog.records if r.name.startswith("kafka")]
    finally:
        server.close()


def test_bad_bootstrap_address_is_explained():
    with pytest.raises(BrokerError, match="not host:port"):
        parse_bootstrap("localhost")


def test_missing_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(SetupError) as err:
        require_java()
    assert "Java not found" in str(err.value) and "JDK 17" in str(err.value) and "\n" not in str(err.value)


def _fake_jdk(monkeypatch, home, version_line: str) -> None:
    """JAVA_HOME at a `java` that only prints this `java -version` line (to stderr, as java does)."""
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    (home / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))


def test_too_old_java_is_refused(monkeypatch, tmp_path):
    _fake_jdk(monkeypatch, tmp_path / "jdk8", 'openjdk version "1.8.0_392"')
    with pytest.raises(SetupError, match="Java 8 is too old"):
        require_java()


def test_too_new_java_is_refused_with_the_versions_to_install(monkeypatch, tmp_path):
    """Spark 4.1's JVM exits at start on Java 25 (its Hadoop client calls Subject.getSubject): one line
    that says which JDK to install, not PySpark's JAVA_GATEWAY_EXITED."""
    _fake_jdk(monkeypatch, tmp_path / "jdk25", 'openjdk version "25.0.3" 2026-04-21 LTS')
    with pytest.raises(SetupError, match="Java 25 is too new") as err:
        require_java()
    assert "JDK 17 or 21" in str(err.value)


def test_java_21_is_accepted(monkeypatch, tmp_path):
    _fake_jdk(monkeypatch, tmp_path / "jdk21", 'openjdk version "21.0.9" 2025-10-21')
    assert java_major_version() == 21
    require_java()   # raises SetupError when refused


def test_a_free_port_for_a_later_server_is_outside_the_kernels_ephemeral_range():
    """Spark, Jupyter and every outgoing socket take ports from the ephemeral range: a port picked
    there for a broker started later can be gone by then (a Spark block manager answered the probe)."""
    from fitbit_lakehouse.kafka_broker import _ephemeral_ports, free_port

    ports = {free_port() for _ in range(20)}
    assert not ports & set(_ephemeral_ports()) and min(ports) >= 1024
    assert len(ports) > 1   # picked at random: two test workers do not walk the same sequence
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))   # and free


def test_the_broker_jvm_uses_the_class_data_archive_setup_made_for_its_java_and_jars(base_settings, tmp_path):
    import dataclasses

    from fitbit_lakehouse.kafka_broker import broker_cds_archive, java_command

    settings = dataclasses.replace(base_settings, project_root=tmp_path)
    classpath = [str(tmp_path / "kafka_2.13-4.1.1.jar")]
    archive = broker_cds_archive(settings, classpath)
    uses_archive = lambda s: any(o.startswith("-XX:SharedArchiveFile=") for o in  # noqa: E731
                                 java_command(s, tmp_path, classpath, "kafka.Kafka"))
    assert not uses_archive(settings)   # none made yet: the broker starts without
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    command = java_command(settings, tmp_path, classpath, "kafka.Kafka", "server.properties")
    assert command.index(f"-XX:SharedArchiveFile={archive}") < command.index("kafka.Kafka")
    assert not uses_archive(settings.with_overrides(**{"kafka.broker.class_data_sharing": False}))
    assert broker_cds_archive(settings, classpath + [str(tmp_path / "another.jar")]) != archive
    home = tmp_path / "kafka"   # its temp files (the native libraries it unpacks) stay in its home, not /tmp
    assert f"-Djava.io.tmpdir={home / 'tmp'}" in java_command(settings, home, classpath, "kafka.Kafka")
    assert (home / "tmp").is_dir()
