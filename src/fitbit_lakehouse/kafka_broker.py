"""The local Apache Kafka broker: single node, KRaft, jars from Maven Central.

ensure_broker() uses whatever answers at KAFKA_BOOTSTRAP_SERVERS; when nothing does and the
address is a localhost one, it fetches the jars (Maven), formats storage under the lake and starts
a broker on that port. Errors are one readable line that says what to do.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .maven import local_repository, resolve
from .spark import CDS_QUIET, cds_options, java_version_text, record_cds_archive, require_java

log = logging.getLogger(__name__)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


class BrokerError(RuntimeError):
    """A broker problem the user can fix; the message says how."""


@dataclass
class BrokerHandle:
    bootstrap_servers: str
    started_here: bool
    pid: int | None = None


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not host:port; "
                          f"use e.g. localhost:9092")
    return host.strip("[]"), int(port)


def client_options(settings: Settings) -> dict:
    """kafka-python security options: the protocol, and for SASL the credentials from the secrets."""
    protocol = (settings.get("kafka.security_protocol") or "PLAINTEXT").upper()
    options: dict = {"security_protocol": protocol}
    if "SSL" in protocol and settings.get("kafka.ssl_cafile"):
        options["ssl_cafile"] = settings.get("kafka.ssl_cafile")
    if protocol.startswith("SASL"):
        username, password = _sasl_credentials(settings)
        options.update(sasl_mechanism=settings.get("kafka.sasl_mechanism"), sasl_plain_username=username,
                       sasl_plain_password=password)
    return options


def spark_options(settings: Settings) -> dict:
    """The same security settings as options of Spark's Kafka source (`kafka.`-prefixed)."""
    protocol = (settings.get("kafka.security_protocol") or "PLAINTEXT").upper()
    options = {"kafka.security.protocol": protocol}
    if "SSL" in protocol and settings.get("kafka.ssl_cafile"):
        options.update({"kafka.ssl.truststore.type": "PEM",
                        "kafka.ssl.truststore.location": settings.get("kafka.ssl_cafile")})
    if protocol.startswith("SASL"):
        username, password = _sasl_credentials(settings)
        mechanism = settings.get("kafka.sasl_mechanism")
        module = "scram.ScramLoginModule" if mechanism.startswith("SCRAM") else "plain.PlainLoginModule"
        # Databricks shades the Kafka client: its classes live under `kafkashaded.`
        prefix = settings.get("kafka.shaded_class_prefix") or ""
        quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in (username, password)]
        options.update({
            "kafka.sasl.mechanism": mechanism,
            "kafka.sasl.jaas.config": f'{prefix}org.apache.kafka.common.security.{module} required '
                                      f'username="{quoted[0]}" password="{quoted[1]}";'})
    return options


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    from .secrets import secret, where

    username, password = secret(settings, "kafka_username"), secret(settings, "kafka_password")
    if not username or not password:
        raise BrokerError(f"kafka.security_protocol is {settings.get('kafka.security_protocol')}, but the "
                          f"credentials are missing: put them in {where(settings, 'kafka_username')} and "
                          f"{where(settings, 'kafka_password')}.")
    return username, password


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def speaks_kafka(bootstrap: str, timeout_s: float, **security) -> bool:
    """True when a Kafka broker answers an ApiVersions/metadata request at the address."""
    return kafka_probe(bootstrap, timeout_s, **security) is None


def kafka_probe(bootstrap: str, timeout_s: float, **security) -> Exception | None:
    """None when a Kafka broker answers a metadata request at the address within timeout_s (conf:
    kafka.probe_timeout_s), else why not."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    client_log = logging.getLogger("kafka")
    level = client_log.level
    # the caller says in one line what a failed probe means; the client's own ERROR lines (an HTTP
    # server's reply, a timed-out bootstrap) would come before it
    client_log.setLevel(logging.CRITICAL + 1)
    try:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fitbit-healthcheck",
                                     request_timeout_ms=int(timeout_s * 1000),
                                     bootstrap_timeout_ms=int(timeout_s * 1000), **security)
        except (KafkaError, OSError, ValueError) as exc:
            return exc
        try:
            admin.list_topics()
            return None
        except (KafkaError, OSError) as exc:
            return exc
        finally:
            admin.close()
    finally:
        client_log.setLevel(level)


def _command_line(pid: int) -> str:
    """The command line of a running process ('' when there is none); /proc on Linux, ps elsewhere."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    try:
        return subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _ephemeral_ports() -> range:
    """The ports the kernel hands to port-0 and outgoing sockets (Linux: ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return range(low, high + 1)
    except (OSError, ValueError):
        return range(32768, 61000)   # Linux's default; macOS uses 49152..65535


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1, for a server started a little later. Picked below the
    kernel's ephemeral range: a port from that range can be handed to any other process's port-0 or
    outgoing socket (Spark's RPC and block manager, Jupyter kernels) before the server binds it."""
    ephemeral = _ephemeral_ports()
    pick = random.SystemRandom()
    low = max(1024, ephemeral.start - 12000)
    for port in pick.sample(range(low, max(low + 1, ephemeral.start)), min(200, max(1, ephemeral.start - low))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:   # nothing free below the range: any port the kernel gives
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kraft_properties(settings: Settings, node_id: int, controllers: dict[int, int], port: int, advertised_host: str,
                     data_dir: Path, replication: int) -> dict[str, str]:
    """server.properties of a combined broker + controller node of a KRaft cluster (`controllers`:
    node id -> controller port, on 127.0.0.1). Internal topics get `replication` copies, of which all
    but one must be in sync."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(controllers.items())),
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controllers[node_id]}",
        "advertised.listeners": f"PLAINTEXT://{advertised_host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(settings.get("kafka.partitions")),
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(max(1, replication - 1)),
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(max(1, replication - 1)),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(max(1, replication - 1)),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(settings.get("producer.max_request_size") + 65536),
        "log.retention.hours": "-1",     # the topic is the replay log of the lake
    }


def write_log4j(path: Path, log_file: Path) -> None:
    path.write_text(
        "status = error\nappender.f.type = File\nappender.f.name = F\n"
        f"appender.f.fileName = {log_file}\nappender.f.layout.type = PatternLayout\n"
        "appender.f.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.f.ref = F\n")


def java_tmp_dir(home: Path) -> Path:
    """A broker JVM's temp dir, in its home rather than /tmp: a broker killed with -9 leaves the native
    libraries it unpacked there (lz4, snappy), and its next start clears them (`clear_java_tmp`)."""
    return home / "tmp"


def clear_java_tmp(home: Path) -> None:
    """Before a broker starts in this home: what an earlier one, killed, left in its temp dir."""
    shutil.rmtree(java_tmp_dir(home), ignore_errors=True)


def java_command(settings: Settings, home: Path, classpath: list[str], main: str, *args: str,
                 jvm_options: tuple[str, ...] = ()) -> list[str]:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    tmp = java_tmp_dir(home)
    tmp.mkdir(parents=True, exist_ok=True)
    return [java, f"-Xmx{settings.get('kafka.broker.heap')}", "-Xms128m", *_cds_options(settings, classpath),
            *jvm_options, f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}", f"-Dkafka.logs.dir={home}",
            f"-Djava.io.tmpdir={tmp}",
            "-cp", os.pathsep.join(classpath), main, *args]


# --- class-data sharing: a faster broker start ---------------------------------------------

def broker_cds_archive(settings: Settings, classpath: list[str]) -> Path:
    """The broker's class-data archive for this Java and these jars (another of either is another
    file: a JVM would refuse a stale archive anyway, and start without it)."""
    fingerprint = hashlib.sha256(json.dumps(
        [java_version_text(os.environ.get("JAVA_HOME")), classpath]).encode()).hexdigest()[:16]
    return settings.project_root / ".cache" / f"kafka-cds-{fingerprint}.jsa"


def _cds_options(settings: Settings, classpath: list[str]) -> list[str]:
    return cds_options(broker_cds_archive(settings, classpath)) if settings.get("kafka.broker.class_data_sharing") \
        else []


def build_broker_cds_archive(settings: Settings) -> Path | None:
    """`make setup`: the classes of a broker at work (topics created, idempotent and transactional
    produce, a consumer group) recorded into the archive by a broker of its own, in a lake of its own.
    None when switched off; an archive already in place is kept."""
    if not settings.get("kafka.broker.class_data_sharing"):
        return None

    def record(dumped: Path, work: Path) -> str | None:
        recording = settings.with_overrides(**{
            "paths.lake_dir": str(work / "lake"), "kafka.bootstrap_servers": f"localhost:{free_port()}",
            "kafka.broker.class_data_sharing": False, "kafka.security_protocol": "PLAINTEXT"})
        broker = LocalBroker(recording)
        broker.start(jvm_options=(f"-XX:ArchiveClassesAtExit={dumped}", *CDS_QUIET))
        try:
            _exercise_broker(recording)
        finally:
            broker.stop(timeout_s=120)   # the archive is written as the JVM exits
        if dumped.is_file():
            return None
        log_lines = broker.log_file.read_text().strip().splitlines() if broker.log_file.exists() else []
        return (log_lines or ["the broker wrote no log"])[-1][:300]   # the log goes with the work folder

    archive = broker_cds_archive(settings, LocalBroker(settings).classpath())
    return record_cds_archive(archive, record, "the Kafka broker", "kafka.broker.class_data_sharing")


def _exercise_broker(settings: Settings) -> None:
    """What a pipeline run asks of the broker, in small."""
    from kafka import KafkaConsumer

    ensure_topics(settings)
    producer = make_producer(settings, client_id="fitbit-cds")
    for i in range(100):
        producer.send(settings.events_topic, key=b"k", value=b"v%d" % i)
    producer.flush()
    producer.close()
    publisher = make_producer(settings, client_id="fitbit-cds-tx", transactional_id="fitbit-cds")
    publisher.init_transactions()
    publisher.begin_transaction()
    publisher.send(settings.alerts_topic, key=b"k", value=b"alert")
    publisher.commit_transaction()
    publisher.close()
    consumer = KafkaConsumer(settings.events_topic, bootstrap_servers=settings.bootstrap_servers,
                             group_id="fitbit-cds", auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             isolation_level="read_committed")
    sum(1 for _ in consumer)
    consumer.close()


class LocalBroker:
    """Files of the local broker: jars in .cache/, config, data and pid file under the lake."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.version = settings.get("kafka.broker.version")
        self.home = settings.lake_dir / settings.get("kafka.broker.log_dir")
        self.data_dir = self.home / "data"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "broker.log"
        self.host, self.port = parse_bootstrap(settings.bootstrap_servers)

    # --- jars ---------------------------------------------------------------------------
    def classpath(self) -> list[str]:
        """The broker's jars, resolved with Maven into .cache/m2 the first time."""
        listing = self.settings.project_root / ".cache" / f"kafka-{self.version}-classpath.json"
        if listing.is_file():
            jars = json.loads(listing.read_text())
            if jars and all(Path(j).is_file() for j in jars):
                return jars
        pom = self.settings.project_root / "tools" / "kafka" / "pom.xml"
        artifacts = resolve(pom, local_repository(self.settings.project_root), {"kafka.version": self.version})
        jars = [str(a.path) for a in artifacts]
        listing.write_text(json.dumps(jars, indent=1))
        return jars

    # --- config and storage -------------------------------------------------------------
    def _write_config(self, controller_port: int) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        advertised = self.host if self.host != "0.0.0.0" else "localhost"
        props = kraft_properties(self.settings, 1, {1: controller_port}, self.port, advertised, self.data_dir,
                                 replication=1)
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        write_log4j(self.home / "log4j2.properties", self.log_file)
        return path

    def _java(self, main: str, *args: str, jvm_options: tuple[str, ...] = (), **popen) -> subprocess.Popen:
        return subprocess.Popen(java_command(self.settings, self.home, self.classpath(), main, *args,
                                             jvm_options=jvm_options), **popen)

    def format_storage(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        proc = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise BrokerError(f"Formatting Kafka storage in {self.data_dir} failed: {out.strip()[-400:]}")

    # --- lifecycle ----------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """The pid in the pid file, if that process is this lake's broker (a stale file may name
        a pid that the system has since given to another process)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        command = _command_line(pid)
        return pid if "kafka.Kafka" in command and str(self.home / "server.properties") in command else None

    def start(self, jvm_options: tuple[str, ...] = ()) -> int:
        require_java()
        clear_java_tmp(self.home)
        self.classpath()
        config = self._write_config(free_port())
        self.format_storage(config)
        with open(self.log_file.with_suffix(".out"), "ab") as out:
            proc = self._java("kafka.Kafka", str(config), jvm_options=jvm_options, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.settings.get("kafka.broker.startup_timeout_s")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_file.read_text()[-800:] if self.log_file.exists() else ""
                raise BrokerError(f"The local Kafka broker exited at start (code {proc.returncode}); "
                                  f"see {self.log_file}. {tail.strip().splitlines()[-1] if tail else ''}")
            if port_open("127.0.0.1", self.port) and speaks_kafka(self.settings.bootstrap_servers, 5):
                return proc.pid
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"The local Kafka broker did not answer within "
                          f"{self.settings.get('kafka.broker.startup_timeout_s')} s; see {self.log_file}.")

    def stop(self, timeout_s: float = 15) -> bool:
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def why_it_stopped(self, tail_bytes: int = 65536) -> str | None:
        """The line of its log that says why this lake's broker stopped, when it was started and is no
        longer running and its log ends on a full disk (Kafka stops once its only log dir fails); else None.
        Only the log's end: a later start writes far more than this after an earlier run's lines."""
        if not self.pid_file.exists() or self.running_pid() is not None or not self.log_file.exists():
            return None
        with open(self.log_file, "rb") as log_file:
            log_file.seek(max(0, self.log_file.stat().st_size - tail_bytes))
            tail = log_file.read().decode(errors="replace")
        return next((line.strip() for line in reversed(tail.splitlines()) if "No space left on device" in line), None)


def _alive(pid: int) -> bool:
    """Whether the process still runs. A broker that this process started and that has exited stays
    a zombie until reaped: reap it here rather than wait for it to vanish."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:   # not our child: its parent reaps it
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def make_producer(settings: Settings, client_id: str = "fitbit-producer", **transactional):
    """An idempotent kafka-python producer (acks=all); an unreachable broker fails fast and clearly.
    `transactional_id=...` makes it a transactional one."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeout_ms = int(settings.get("producer.connect_timeout_s") * 1000)
    try:
        return KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.get("producer.linger_ms"),
            batch_size=settings.get("producer.batch_size_bytes"),
            max_request_size=settings.get("producer.max_request_size"),
            compression_type=settings.get("producer.compression") or None,
            bootstrap_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **client_options(settings),
            **transactional,
        )
    except KafkaError as exc:
        raise BrokerError(f"No Kafka broker answers at {settings.bootstrap_servers} ({type(exc).__name__}): "
                          f"start one (`make kafka-up`) or set KAFKA_BOOTSTRAP_SERVERS.") from exc


def ensure_broker(settings: Settings) -> BrokerHandle:
    """A broker answering at the configured address: the existing one, or a local one started now
    (only where conf allows it: a Databricks cluster never starts a broker)."""
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        raise BrokerError("No Kafka address: set the bundle variable kafka_bootstrap_servers (job parameter "
                          "bootstrap_servers), or the secret bootstrap_servers, or KAFKA_BOOTSTRAP_SERVERS.")
    host, port = parse_bootstrap(bootstrap)
    addresses = [parse_bootstrap(a) for a in bootstrap.split(",") if a.strip()]
    timeout_s = float(settings.get("kafka.probe_timeout_s"))
    if len(addresses) > 1:   # a cluster: any live node will do, and a local broker is never started for it
        if any(port_open(h, p) for h, p in addresses) and kafka_probe(bootstrap, timeout_s, **client_options(settings)) is None:
            return BrokerHandle(bootstrap, started_here=False)
        raise BrokerError(f"No broker of the Kafka cluster {bootstrap} answers: start it (make cluster-up for the "
                          f"local one), or point KAFKA_BOOTSTRAP_SERVERS at a cluster that runs.")
    if port_open(host, port):
        security = client_options(settings)
        failure = kafka_probe(bootstrap, timeout_s, **security)
        if failure is None:
            return BrokerHandle(bootstrap, started_here=False)
        if security["security_protocol"] != "PLAINTEXT":
            from .secrets import where

            raise BrokerError(
                f"The broker at {bootstrap} did not accept this client over {security['security_protocol']}"
                f"{' (' + security['sasl_mechanism'] + ')' if 'sasl_mechanism' in security else ''}: "
                f"{type(failure).__name__}. Check the credentials in {where(settings, 'kafka_username')} / "
                f"{where(settings, 'kafka_password')} and the CA in kafka.ssl_cafile.")
        raise BrokerError(f"Port {port} on {host} is taken by something that is not Kafka (or that refused "
                          f"this client's kafka.security_protocol): stop it, or set "
                          f"KAFKA_BOOTSTRAP_SERVERS=localhost:<free port> to run a local broker there.")
    if host not in LOCAL_HOSTS or not settings.get("kafka.start_local_broker"):
        raise BrokerError(f"No Kafka broker answers at {bootstrap}: start it, or point the pipeline at one "
                          f"(KAFKA_BOOTSTRAP_SERVERS locally; on Databricks the bundle variable "
                          f"kafka_bootstrap_servers, i.e. the job parameter bootstrap_servers).")
    broker = LocalBroker(settings)
    log.info("No Kafka at %s: starting a local KRaft broker (Kafka %s), data in %s",
             bootstrap, broker.version, broker.data_dir)
    pid = broker.start()
    ensure_topics(settings)
    return BrokerHandle(bootstrap, started_here=True, pid=pid)


def project_brokers_on(port: int) -> list[Path]:
    """The folders (config, data, pid file) of the brokers this project started that listen on the port,
    found by the server.properties their command line names (Linux's /proc; elsewhere none are found)."""
    listening = re.compile(rf"^listeners=PLAINTEXT://[^,]*:{port}(,|$)", re.MULTILINE)
    homes = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" not in args:
            continue
        for config in (Path(a.decode(errors="replace")) for a in args if a.endswith(b"/server.properties")):
            try:
                if listening.search(config.read_text()):
                    homes.append(config.parent)
            except OSError:
                pass
    return homes


def refuse_another_lakes_topic(settings: Settings) -> None:
    """A fresh lake must not send into the events topic of the broker this project started for another
    lake (left running by `make kafka-up`, `make stream`, ...): that lake would take its rows, and its own
    bronze that lake's. A lake that has already sent or read goes on, and so does a bronze that reads
    a topic on purpose (a new lake built from another's stream)."""
    host, port = parse_bootstrap(settings.bootstrap_servers)
    if host not in LOCAL_HOSTS or "," in settings.bootstrap_servers:
        return
    own = LocalBroker(settings)
    if own.running_pid() is not None or (settings.lake_dir / "_producer").is_dir() \
            or (settings.checkpoints_dir / "bronze").is_dir():
        return
    others = [home for home in project_brokers_on(port) if home.resolve() != own.home.resolve()]
    if not others:
        return
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="fitbit-admin",
                             **client_options(settings))
    try:
        taken = settings.events_topic in admin.list_topics()
    finally:
        admin.close()
    if taken:
        raise BrokerError(
            f"The broker at {settings.bootstrap_servers} is the one this project started for another lake (its "
            f"files in {others[0]}), and its topic {settings.events_topic} is that lake's: stop it first "
            f"(make kafka-down with that lake's FITBIT_LAKE_DIR), or give this lake a broker of its own "
            f"(KAFKA_BOOTSTRAP_SERVERS=localhost:<free port>).")


def stop_local_broker(settings: Settings) -> bool:
    return LocalBroker(settings).stop()


def ensure_topics(settings: Settings) -> dict[str, str]:
    """The events and alerts topics (created with the configured partitions and retention if
    missing); returns their Kafka topic ids, which change when a topic is deleted and recreated."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topics = (settings.events_topic, settings.alerts_topic)
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="fitbit-admin",
                             **client_options(settings))
    try:
        existing = set(admin.list_topics())
        configs = {k: str(v) for k, v in (settings.get("kafka.topic_config") or {}).items()}
        replication = settings.get("kafka.replication_factor")
        if replication == "auto":   # as many copies as the cluster allows, up to 3; all but one in sync
            replication = min(3, len(admin.describe_cluster()["brokers"]))
            configs.setdefault("min.insync.replicas", str(max(1, replication - 1)))
        wanted = [NewTopic(t, settings.get("kafka.partitions"), int(replication), topic_configs=configs)
                  for t in topics if t not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        # a topic just created is unknown to a describe for a moment (no id yet): the ids key the producer's
        # ledger and bronze's check, so a missing one would make the next run send everything again
        deadline = time.monotonic() + float(settings.get("kafka.probe_timeout_s"))
        while True:
            ids = {t["name"]: t.get("topic_id") for t in admin.describe_topics(list(topics)) if not t.get("error_code")}
            if all(ids.get(t) for t in topics) or time.monotonic() > deadline:
                return ids
            time.sleep(0.1)
    finally:
        admin.close()


def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of a topic, as the broker has them."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="fitbit-admin",
                             **client_options(settings))
    try:
        described = admin.describe_topics([topic])
        return sorted(p["partition_index"] for t in described for p in t.get("partitions", []))
    finally:
        admin.close()
