"""sha256 manifests for model directories: write them, and verify files before loading.

Why by hand: ``huggingface_hub`` checks the hashes of files it downloads itself, but not of a
directory copied from elsewhere, and it has no manifest format users can pin in a config. The
hashing itself is ``hashlib``; this module only decides which files to hash and how to report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from llama_lora.errors import IntegrityError

#: Suffixes of files that hold weights. Every such file in a directory must be in the manifest.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
#: Weight formats that are Python pickles: loading one can execute arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_CHUNK_BYTES = 1 << 20

Manifest = Mapping[str, str]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed in 1 MiB chunks so a 10 GB shard never sits in RAM."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def weight_files(directory: str | Path) -> list[str]:
    """Relative paths (POSIX) of every weight file under ``directory``, sorted."""
    root = Path(directory)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith(".")
    )


def write_manifest(path: str | Path, output: str | Path | None = None) -> dict[str, str]:
    """Hash every regular file under ``path`` and return ``{relative_path: sha256}``.

    Args:
        path: A model or adapter directory.
        output: Where to write the manifest. ``*.json`` gets JSON; anything else gets
            ``sha256sum`` format (``<hash>  <file>``), which ``sha256sum -c`` can check too.

    Returns:
        The manifest as a dict, sorted by file name.

    Raises:
        NotADirectoryError: ``path`` is not a directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"write_manifest: {str(root)!r} is not a directory")
    skip = {Path(output).resolve()} if output is not None else set()
    manifest = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.resolve() not in skip and not p.name.startswith(".")
    }
    if output is not None:
        out = Path(output)
        if out.suffix == ".json":
            out.write_text(json.dumps(manifest, indent=2) + "\n")
        else:
            out.write_text("".join(f"{digest}  {name}\n" for name, digest in manifest.items()))
    return manifest


def load_manifest(manifest: str | Path | Manifest) -> dict[str, str]:
    """Read a manifest given as a dict, a JSON file, or a ``sha256sum`` file.

    Raises:
        FileNotFoundError: the manifest file does not exist.
        ValueError: a line or entry is not ``<64 hex digits>  <file name>``.
    """
    if isinstance(manifest, Mapping):
        entries = dict(manifest)
        origin = "manifest dict"
    else:
        origin = str(manifest)
        text = Path(manifest).read_text(encoding="utf-8")
        entries = _parse_json(text, origin) if text.lstrip().startswith("{") else {}
        if not entries:
            entries = _parse_sha256sum(text, origin)
    for name, digest in entries.items():
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            raise ValueError(f"{origin}: entry {name!r} has {digest!r}, not a 64-digit sha256")
    return {name: digest.lower() for name, digest in entries.items()}


def _parse_json(text: str, origin: str) -> dict[str, str]:
    data = json.loads(text)
    # Accept both {"file": "hash"} and {"files": {"file": "hash"}}.
    data = data.get("files", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a JSON object of {{file: sha256}}")
    return data


def _parse_sha256sum(text: str, origin: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{origin}, line {number}: expected '<sha256>  <file>', got {line!r}")
        digest, name = parts
        entries[name.lstrip("*")] = digest  # "*" marks binary mode in sha256sum output
    return entries


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def verify_checkpoint(path: str | Path, manifest: str | Path | Manifest) -> dict[str, str]:
    """Check the files of ``path`` against ``manifest`` before anything loads them.

    Every file the manifest names must exist with the same sha256, and every weight file in the
    directory must be named by the manifest (an unlisted shard is as unverified as a tampered one).

    Returns:
        The verified ``{file: sha256}``.

    Raises:
        IntegrityError: a file is missing, unlisted, or its hash differs (names the file and
            both hashes).
    """
    root = Path(path)
    expected = load_manifest(manifest)
    unlisted = [name for name in weight_files(root) if name not in expected]
    if unlisted:
        raise IntegrityError(
            f"{root}: weight file(s) {unlisted} are not in the manifest, so they cannot be verified"
        )
    for name, digest in sorted(expected.items()):
        file = root / name
        if not file.is_file():
            raise IntegrityError(f"{file}: listed in the manifest (sha256 {digest}) but missing")
        actual = sha256_file(file)
        if actual != digest:
            raise IntegrityError(f"{file}: sha256 mismatch: expected {digest}, got {actual}")
    return expected
