"""Run folders, atomic writes, content hashes and provenance.

Layout: ``<runs>/<recipe>/<NN>_<stage>/`` holds ``config.yaml`` (the resolved config), ``provenance.json``
(package versions, git sha, input hashes, seed), ``metrics.jsonl`` (one JSON object per logged step),
``result.json`` (written last: its presence with a matching fingerprint means the stage is complete) and
the stage's artefacts. Every file here is written to a temporary name and renamed into place, so an
interrupted write leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PROVENANCE_PACKAGES = ("slmkit", "torch", "transformers", "accelerate", "tokenizers", "safetensors")


@dataclasses.dataclass(frozen=True)
class Result:
    """What a stage returns: headline metrics and the paths of its named outputs."""

    metrics: dict[str, Any]
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)


def is_main_process() -> bool:
    """False on the non-zero ranks of an ``accelerate launch``/torchrun job: only rank 0 writes run files."""
    if "RANK" not in os.environ and "LOCAL_RANK" not in os.environ:
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def barrier() -> None:
    """Wait for every process of a distributed job (no-op in a single process)."""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def check_name(name: str, what: str) -> str:
    """Refuse names that could escape the run folder (``..``, slashes) or are not plain words."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise ConfigError(
            f"{what} '{name}' is not a valid name: use letters, digits, '_', '-', '.' (no '..', no slashes)"
        )
    return name


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, indented for people to read."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    The old folder is kept until the new one is in place, so a crash at any point leaves one complete
    version (the old or the new) under ``path`` or its ``.old`` sibling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write plain records as JSON Lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSON Lines written by :func:`write_jsonl`; a corrupt line is an error naming file and line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path} line {number}: invalid JSON ({err.msg})") from err
    return rows


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a corrupt file is an error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from err


def hash_path(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 over a file, or over every file below a folder (relative names included, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file.name.startswith("."):
            continue
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def hash_input(value: str) -> str:
    """Hash an input reference: the content if it is a local path, else the string (a hub id)."""
    return hash_path(value) if Path(value).exists() else "id:" + hashlib.sha256(value.encode()).hexdigest()


def fingerprint(config: dict[str, Any], input_hashes: dict[str, str]) -> str:
    """Identity of a stage run: its resolved config plus the content of its inputs."""
    blob = json.dumps({"config": config, "inputs": input_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_fingerprint(run_dir: str | Path) -> str:
    """The fingerprint the runner recorded for the stage running in ``run_dir`` ("" outside a recipe).

    Checkpoints carry it, so a resumed run never continues from a checkpoint of another config.
    """
    path = Path(run_dir) / "provenance.json"
    return str(read_json(path).get("fingerprint", "")) if path.exists() else ""


def provenance(config: dict[str, Any], input_hashes: dict[str, str]) -> dict[str, Any]:
    """Who/what/when of a stage: versions, git sha, inputs, seed, command line."""
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_sha": git_sha(),
        "inputs": input_hashes,
        "seed": config.get("seed"),
        "argv": sys.argv,
    }


def git_sha() -> str | None:
    """The git commit of the slmkit source in use, if it runs from a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class MetricsLog:
    """Append-only ``metrics.jsonl``; each line is one JSON object (step, metrics, wall time)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = time.time()

    def log(self, **values: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {**values, "time": round(time.time() - self.start, 3)}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=float) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (used on resume so curves have no duplicated tail)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``metrics.jsonl`` (empty if absent)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
