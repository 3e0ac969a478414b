"""`make cluster-up` / `make cluster-down`: real clusters on this machine, for a pipeline that outgrows
one JVM and one broker.

- Spark standalone: a master and workers started from the Spark that the venv installs (pyspark's
  `spark-class`), each worker with its own work dir and a bounded share of cores and memory. The
  pipeline uses it when SPARK_MASTER=spark://host:port.
- Kafka: a KRaft cluster of combined broker + controller nodes from the project's Maven jars, distinct
  ports and log dirs; internal topics with 3 copies, min.insync.replicas 2. The pipeline uses it when
  KAFKA_BOOTSTRAP_SERVERS lists its nodes (its topics then get 3 copies too: kafka.replication_factor auto).

Everything lives under <lake>/<cluster.dir>; pid files are checked against the process before a stop.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .kafka_broker import (LocalBroker, _alive, _command_line, clear_java_tmp, java_command, kafka_probe,
                           kraft_properties, port_open, write_log4j)

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """A cluster that does not start; the message says where to look."""


def _home(settings: Settings) -> Path:
    return settings.lake_dir / settings.get("cluster.dir")


def _start(cmd: list[str], log_file: Path, pid_file: Path, env: dict | None = None) -> int:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _running(pid_file: Path, marker: str) -> int | None:
    """The pid of the pid file, if that process is still the one we started (its command line holds
    `marker`): a stale file may name a pid the system has given to another process."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and marker in _command_line(pid) else None


def _stop(pid_file: Path, marker: str, sig: int = signal.SIGTERM, timeout_s: float = 20) -> bool:
    pid = _running(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


# --- Kafka ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"


class KafkaCluster:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = _home(settings) / "kafka"
        first, first_controller = settings.get("cluster.kafka.first_port"), settings.get("cluster.kafka.first_controller_port")
        self.nodes = [KafkaNode(i + 1, first + i, first_controller + i, self.home / f"node-{i + 1}")
                      for i in range(int(settings.get("cluster.kafka.nodes")))]
        self.classpath = LocalBroker(settings).classpath

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:22])
        return path.read_text().strip()

    def _prepare(self, node: KafkaNode) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        controllers = {n.node_id: n.controller_port for n in self.nodes}
        props = kraft_properties(self.settings, node.node_id, controllers, node.port, "127.0.0.1",
                                 node.home / "data", replication=min(3, len(self.nodes)))
        node.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        write_log4j(node.home / "log4j2.properties", node.home / "broker.log")
        if not (node.home / "data" / "meta.properties").exists():
            out = subprocess.run(java_command(self.settings, node.home, self.classpath(), "kafka.tools.StorageTool",
                                              "format", "-t", self._cluster_id(), "-c", str(node.config)),
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise ClusterError(f"Formatting {node.home} failed: {(out.stdout + out.stderr).strip()[-300:]}")

    def running(self, node: KafkaNode) -> int | None:
        return _running(node.pid_file, str(node.config))

    def start_node(self, node: KafkaNode) -> None:
        if self.running(node):
            return
        if port_open("127.0.0.1", node.port) or port_open("127.0.0.1", node.controller_port):
            raise ClusterError(f"Port {node.port} or {node.controller_port} is taken: stop what holds it, or set "
                               f"cluster.kafka.first_port / first_controller_port to free ones.")
        clear_java_tmp(node.home)
        self._prepare(node)
        _start(java_command(self.settings, node.home, self.classpath(), "kafka.Kafka", str(node.config)),
               node.home / "broker.out", node.pid_file)

    def kill_node(self, node: KafkaNode) -> None:
        """SIGKILL: a broker lost, not shut down."""
        pid = self.running(node)
        if pid:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)

    def up(self, timeout_s: float = 120) -> None:
        for node in self.nodes:
            self.start_node(node)
        self.wait_for(len(self.nodes), timeout_s)

    def wait_for(self, brokers: int, timeout_s: float = 120) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if kafka_probe(self.bootstrap_servers, timeout_s=5) is None:
                try:
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="fitbit-cluster")
                    try:
                        if len(admin.describe_cluster()["brokers"]) >= brokers:
                            return
                    finally:
                        admin.close()
                except KafkaError:
                    pass
            dead = [n for n in self.nodes if self.running(n) is None]
            if len(dead) > len(self.nodes) - brokers:
                raise ClusterError(f"Kafka node {dead[0].node_id} exited at start: see {dead[0].home / 'broker.log'}")
            time.sleep(1)
        raise ClusterError(f"The Kafka cluster did not reach {brokers} brokers within {timeout_s:.0f} s: see "
                           f"{self.home}/node-*/broker.log")

    def down(self) -> bool:
        return any([_stop(n.pid_file, str(n.config)) for n in self.nodes])


# --- Spark ---------------------------------------------------------------------------------

def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class SparkCluster:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = _home(settings) / "spark"
        self.host = "127.0.0.1"
        self.port = int(settings.get("cluster.spark.master_port"))
        self.webui_port = int(settings.get("cluster.spark.webui_port"))
        self.workers = int(settings.get("cluster.spark.workers"))

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def webui(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    def _env(self) -> dict:
        return dict(os.environ, SPARK_HOME=str(_spark_home()), PYSPARK_PYTHON=sys.executable,
                    SPARK_LOG_DIR=str(self.home / "logs"), SPARK_NO_DAEMONIZE="1")

    def _class(self, main: str, *args: str) -> list[str]:
        return [str(_spark_home() / "bin" / "spark-class"), main, *args]

    def status(self) -> dict | None:
        """The master's /json: workers (with state) and applications; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.webui}/json/", timeout=3) as reply:
                return json.loads(reply.read())
        except (OSError, ValueError):
            return None

    def up(self, timeout_s: float = 90) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        master_pid = self.home / "master.pid"
        if not _running(master_pid, "deploy.master.Master"):
            if port_open(self.host, self.port) or port_open(self.host, self.webui_port):
                raise ClusterError(f"Port {self.port} or {self.webui_port} is taken: stop what holds it, or set "
                                   f"cluster.spark.master_port / webui_port to free ones.")
            _start(self._class("org.apache.spark.deploy.master.Master", "--host", self.host, "--port",
                               str(self.port), "--webui-port", str(self.webui_port)),
                   self.home / "master.log", master_pid, self._env())
        cores, memory = str(self.settings.get("cluster.spark.worker_cores")), self.settings.get("cluster.spark.worker_memory")
        for i in range(1, self.workers + 1):
            pid_file, work_dir = self.home / f"worker-{i}.pid", self.home / f"worker-{i}"
            if _running(pid_file, "deploy.worker.Worker"):
                continue
            work_dir.mkdir(parents=True, exist_ok=True)
            _start(self._class("org.apache.spark.deploy.worker.Worker", "--host", self.host, "--cores", cores,
                               "--memory", memory, "--work-dir", str(work_dir), "--webui-port", "0", self.master_url),
                   self.home / f"worker-{i}.log", pid_file, self._env())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status() or {}
            if sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE") >= self.workers:
                return
            if not _running(master_pid, "deploy.master.Master"):
                raise ClusterError(f"The Spark master exited at start: see {self.home / 'master.log'}")
            time.sleep(1)
        raise ClusterError(f"The Spark cluster did not get {self.workers} workers within {timeout_s:.0f} s: see "
                           f"{self.home}/*.log")

    def down(self) -> bool:
        stopped = [_stop(self.home / f"worker-{i}.pid", "deploy.worker.Worker") for i in range(1, self.workers + 1)]
        return any(stopped + [_stop(self.home / "master.pid", "deploy.master.Master")])


def cluster_up(settings: Settings) -> str:
    """Both clusters, started (or found running); returns the lines a user pastes to use them."""
    kafka, spark = KafkaCluster(settings), SparkCluster(settings)
    kafka.up()
    spark.up()
    return "\n".join([
        "Spark standalone and Kafka clusters are up. To run the pipeline on them:",
        f"export SPARK_MASTER={spark.master_url}",
        f"export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}",
        f"Spark master web UI: {spark.webui} (workers and applications: {spark.webui}/json/)",
        "Stop them with: make cluster-down"])


def cluster_down(settings: Settings) -> bool:
    return any([SparkCluster(settings).down(), KafkaCluster(settings).down()])

