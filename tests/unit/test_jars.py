"""Jars come from the project's own files into its own Maven repository (.cache/m2), never from ~/.m2."""
from __future__ import annotations

from pathlib import Path

import pytest

from fitbit_lakehouse.maven import parse_listing, resolve
from fitbit_lakehouse.spark import _pyspark_jars_dir, extra_jars

PROBE_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.test</groupId><artifactId>probe</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.13</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version>
  </plugin></plugins></build>
</project>
"""


def test_a_users_m2_holding_a_pom_without_its_jar_is_not_consulted(tmp_path, monkeypatch):
    """What a `mvn` run that mediates versions leaves behind, and what broke Spark's Ivy resolution
    (`download failed: org.slf4j#slf4j-api;2.0.13!slf4j-api.jar`): a pom without its jar in ~/.m2."""
    home = tmp_path / "home"
    broken = home / ".m2" / "repository" / "org" / "slf4j" / "slf4j-api" / "2.0.13"
    broken.mkdir(parents=True)
    (broken / "slf4j-api-2.0.13.pom").write_text(
        '<project><modelVersion>4.0.0</modelVersion><groupId>org.slf4j</groupId>'
        '<artifactId>slf4j-api</artifactId><version>2.0.13</version></project>')
    monkeypatch.setenv("HOME", str(home))
    pom = tmp_path / "probe" / "pom.xml"
    pom.parent.mkdir()
    pom.write_text(PROBE_POM)
    [artifact] = resolve(pom, tmp_path / "project-m2")
    assert (artifact.group, artifact.artifact, artifact.version) == ("org.slf4j", "slf4j-api", "2.0.13")
    assert artifact.path.is_file() and artifact.path.is_relative_to(tmp_path / "project-m2")
    assert not (broken / "slf4j-api-2.0.13.jar").exists()      # ~/.m2 was left alone


def test_parse_listing():
    text = ("The following files have been resolved:\n"
            "   io.delta:delta-spark_4.1_2.13:jar:4.4.0:compile:/r/io/delta/delta-spark_4.1_2.13-4.4.0.jar\n"
            "   org.lz4:lz4-java:jar:1.8.0:runtime:/r/lz4-java-1.8.0.jar -- module org.lz4.java [auto]\n"
            "   org.example:thing:pom:1:compile:/r/thing-1.pom\n")
    got = [(a.artifact, a.version, str(a.path)) for a in parse_listing(text)]
    assert got == [("delta-spark_4.1_2.13", "4.4.0", "/r/io/delta/delta-spark_4.1_2.13-4.4.0.jar"),
                   ("lz4-java", "1.8.0", "/r/lz4-java-1.8.0.jar")]


def test_spark_gets_delta_and_kafka_but_no_second_copy_of_its_own_jars(base_settings):
    jars = [Path(j) for j in extra_jars(base_settings, resolve_missing=False)]
    names = {j.name for j in jars}
    assert all(j.is_file() and ".cache/m2" in str(j) for j in jars)
    assert any(n.startswith("delta-spark_") for n in names)
    assert any(n.startswith("spark-sql-kafka-0-10_") for n in names)
    assert any(n.startswith("kafka-clients-") for n in names)
    shipped = {p.name for p in _pyspark_jars_dir().glob("*.jar")}
    for artifact in ("jackson-databind", "parquet-hadoop", "hadoop-client-api", "slf4j-api", "log4j-core"):
        assert any(n.startswith(artifact + "-") for n in shipped)
        assert not any(n.startswith(artifact + "-") for n in names), artifact


def test_unresolved_jars_say_what_to_run(base_settings, tmp_path):
    from fitbit_lakehouse.config import Settings
    from fitbit_lakehouse.maven import SetupError

    elsewhere = Settings(raw=base_settings.raw, project_root=tmp_path, env=base_settings.env)
    with pytest.raises(SetupError, match="make setup"):
        extra_jars(elsewhere, resolve_missing=False)
