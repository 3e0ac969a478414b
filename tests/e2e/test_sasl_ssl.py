"""Kafka over SASL_SSL (SCRAM-SHA-512 over TLS), as an external broker would require.

A broker of the project's own Kafka jars is started here with a TLS listener (a self-signed
certificate made with the JDK's keytool) and a SCRAM user. A slice of the pipeline runs through it:
the kafka-python producer, Spark's Kafka source and the transactional alert publisher, all configured
once by `kafka.*` settings, with the credentials as secrets (FITBIT_SECRET_FITBIT_KAFKA_*).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.kafka_broker import BrokerError, LocalBroker, client_options, free_port, speaks_kafka
from tests.kafka_topics import topic_messages

pytestmark = pytest.mark.e2e

USER, PASSWORD = "fitbit-pipeline", "scram-test-password"
FILES = "dailyActivity,hourlySteps"


def _java_tool(name: str) -> str:
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", name) if home else (shutil.which(name) or name)


@pytest.fixture(scope="module")
def tls_broker(base_settings, test_root):
    home = test_root / "tls_broker"
    home.mkdir()
    keystore, ca = home / "broker.p12", home / "ca.pem"
    keytool = _java_tool("keytool")
    subprocess.run([keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
                    "-validity", "2", "-dname", "CN=localhost", "-ext", "SAN=dns:localhost,ip:127.0.0.1",
                    "-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", "changeit",
                    "-keypass", "changeit"], check=True, capture_output=True)
    subprocess.run([keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(keystore),
                    "-storepass", "changeit", "-file", str(ca)], check=True, capture_output=True)
    internal, tls, controller = free_port(), free_port(), free_port()
    props = {
        "process.roles": "broker,controller", "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        # the broker talks to itself in plaintext on loopback; clients only get the TLS listener
        "listeners": f"INTERNAL://127.0.0.1:{internal},SASL_SSL://127.0.0.1:{tls},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"INTERNAL://127.0.0.1:{internal},SASL_SSL://localhost:{tls}",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL", "controller.listener.names": "CONTROLLER",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        # the broker's side of SCRAM: users come from the metadata log (added at format time)
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.location": str(keystore), "ssl.keystore.password": "changeit",
        "ssl.keystore.type": "PKCS12", "ssl.key.password": "changeit",
        "log.dirs": str(home / "data"), "num.partitions": "1",
        "offsets.topic.replication.factor": "1", "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1", "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1", "group.initial.rebalance.delay.ms": "0",
    }
    config = home / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j2.properties").write_text(
        "status = error\nappender.f.type = File\nappender.f.name = F\n"
        f"appender.f.fileName = {home / 'broker.log'}\nappender.f.layout.type = PatternLayout\n"
        "appender.f.layout.pattern = [%d] %p %m (%c)%n\nrootLogger.level = INFO\nrootLogger.appenderRef.f.ref = F\n")
    classpath = os.pathsep.join(LocalBroker(base_settings).classpath())
    java = [_java_tool("java"), "-Xmx384m", f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            f"-Djava.io.tmpdir={home}", "-cp", classpath]   # it is killed at the end: what it unpacks stays here
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(config),
                    "--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
                   check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    bootstrap = f"localhost:{tls}"
    security = {"security_protocol": "SASL_SSL", "ssl_cafile": str(ca), "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": USER, "sasl_plain_password": PASSWORD}
    deadline = time.monotonic() + 90
    while not speaks_kafka(bootstrap, timeout_s=5, **security):
        assert proc.poll() is None, (home / "broker.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the TLS broker did not come up"
        time.sleep(1)
    yield {"bootstrap": bootstrap, "ca": str(ca)}
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def settings(base_settings, tls_broker, month2, test_root):
    return base_settings.with_overrides(**{
        "paths.raw_dir": str(month2), "paths.lake_dir": str(test_root / "sasl_lake"),
        "kafka.bootstrap_servers": tls_broker["bootstrap"], "kafka.start_local_broker": False,
        "kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "SCRAM-SHA-512",
        "kafka.ssl_cafile": tls_broker["ca"], "kafka.events_topic": "e2e_sasl_events",
        "kafka.alerts_topic": "e2e_sasl_alerts"})


@pytest.fixture
def credentials(monkeypatch):
    def use(password):
        monkeypatch.setenv("FITBIT_SECRET_FITBIT_KAFKA_USERNAME", USER)
        monkeypatch.setenv("FITBIT_SECRET_FITBIT_KAFKA_PASSWORD", password)
    return use


def test_the_pipeline_runs_over_sasl_ssl(settings, credentials, spark, month2):
    from fitbit_lakehouse.tables import Lake

    credentials(PASSWORD)
    produced = pipeline.produce_step(settings, file_filter=FILES)
    rows = sum(len(pd.read_csv(month2 / f"{name}_merged.csv")) for name in FILES.split(","))
    assert produced["rows"] == rows
    assert pipeline.bronze_step(settings)["records"] == rows          # Spark's Kafka source over TLS
    assert all(r["holds"] for r in pipeline.silver_step(settings))
    pipeline.gold_step(settings)                                      # the transactional alert sink
    alerts = Lake(spark, settings).count("gold", "goal_alerts")
    assert len(topic_messages(settings.bootstrap_servers, settings.alerts_topic, **client_options(settings))) \
        == alerts > 0


def test_a_wrong_password_fails_fast_with_one_clear_line(settings, credentials):
    credentials("not-the-password")
    started = time.monotonic()
    with pytest.raises(BrokerError) as failure:
        pipeline.produce_step(settings, file_filter=FILES)
    message = str(failure.value)
    assert "\n" not in message and "kafka_password" in message.lower() and "SCRAM-SHA-512" in message
    assert PASSWORD not in message and "not-the-password" not in message
    assert time.monotonic() - started < 60
