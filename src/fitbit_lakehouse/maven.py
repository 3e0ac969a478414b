"""Jars from Maven Central, resolved once into the project's own repository (.cache/m2).

Both the Kafka broker and Spark's extra packages (Delta, the Kafka connector) come through here.
Maven runs with `-Dmaven.repo.local=.cache/m2`, so a user's ~/.m2 (which often holds a pom without
its jar after a version mediation) is never consulted, and a broken cache there cannot break a run.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """Something to install or fix before the pipeline can run; the message says what."""


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    path: Path


def local_repository(project_root: Path) -> Path:
    return project_root / ".cache" / "m2"


def resolve(pom: Path, local_repo: Path, properties: dict[str, str] | None = None) -> list[Artifact]:
    """Every runtime jar the pom depends on (transitively), downloaded into local_repo."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SetupError("Maven (mvn) not found: it fetches the Kafka broker's and Spark's jars from Maven "
                         "Central once; install it (e.g. `apt-get install maven`).")
    local_repo.mkdir(parents=True, exist_ok=True)
    listing = local_repo / f"{pom.parent.name}-dependencies.txt"
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:list", f"-Dmaven.repo.local={local_repo}",
           "-DincludeScope=runtime", f"-DoutputFile={listing}", "-DoutputAbsoluteArtifactFilename=true",
           *[f"-D{k}={v}" for k, v in (properties or {}).items()]]
    log.warning("Resolving %s from Maven Central into %s (first run only) ...", pom.parent.name, local_repo)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        error = next((line for line in detail if "ERROR" in line), detail[-1] if detail else "")
        raise SetupError(f"Maven could not resolve {pom} ({error.strip()[:300]}); check access to Maven "
                         f"Central (a proxy goes in ~/.m2/settings.xml).")
    return parse_listing(listing.read_text())


def parse_listing(text: str) -> list[Artifact]:
    """Lines of `dependency:list -DoutputAbsoluteArtifactFilename=true`:
    group:artifact:jar:version:scope:/abs/path.jar [-- module ...]."""
    artifacts = []
    for line in text.splitlines():
        line = line.strip().split(" -- ")[0]
        parts = line.split(":")
        if len(parts) < 6 or parts[2] != "jar":
            continue
        group, artifact, _, version, _scope = parts[:5]
        artifacts.append(Artifact(group, artifact, version, Path(":".join(parts[5:]))))
    return artifacts
