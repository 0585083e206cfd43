"""Where the official files are: a --data-dir (or its per-dataset sub-folder), a Debian package
(``dpkg-query -L``), or the download hosts if they can be reached; and, when none has them, one
message naming what is expected, where it looked and how to supply it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .errors import DataError, DatasetNotFoundError
from .info import DATASETS
from .verify import alternatives, builder_class, official_files, tfds_name, verify_file

OS_PACKAGES = {'fashion_mnist': 'dataset-fashion-mnist'}

# Sub-directory names tried when ``data_dir`` is a parent of per-dataset
# folders (e.g. shared/datasets with fashion-mnist/ and mnist/ inside).
_SUBDIR_NAMES = {
    'fashion_mnist': ('fashion-mnist', 'fashion_mnist', 'FashionMNIST'),
    'mnist': ('mnist', 'MNIST'),
    'cifar10': ('cifar-10', 'cifar10', 'CIFAR10'),
}

_PROXY_VARS = ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy')


def _locate_dir(name: str, data_dir: Path) -> Path:
    """``data_dir`` itself, or its per-dataset sub-folder if only that holds the files."""
    names = {f.filename for f in official_files(name) + alternatives(name)}
    if any((data_dir / n).exists() for n in names):
        return data_dir
    for sub in _SUBDIR_NAMES.get(tfds_name(name), ()):
        if any((data_dir / sub / n).exists() for n in names):
            return data_dir / sub
    return data_dir


def find_official_files(
    name: str,
    data_dir: os.PathLike | str,
    *,
    extra_checksums: Mapping[str, tuple[int, str]] | None = None,
) -> dict[str, Path]:
    """Verified official files in ``data_dir``: key -> path (see :func:`verify_file`)."""
    root = Path(data_dir).expanduser()
    expected = official_files(name)
    if not root.exists():
        raise DatasetNotFoundError(not_found_message(name, [f'--data-dir {root}: does not exist']))
    if not root.is_dir():
        raise DataError(
            f'--data-dir {root} is not a directory; pass the directory that '
            f'holds {", ".join(f.filename for f in expected)}'
        )
    d = _locate_dir(name, root)
    if not any(d.iterdir()):
        raise DatasetNotFoundError(not_found_message(name, [f'--data-dir {d}: is empty']))
    missing = [f.filename for f in expected if not (d / f.filename).is_file()]
    for alt in alternatives(name):  # e.g. the python CIFAR-10 archive for the binary one
        if (
            missing == [f.filename for f in expected if f.key == alt.key]
            and (d / alt.filename).is_file()
        ):
            verify_file(d / alt.filename, alt, extra_checksums=extra_checksums)
            return {alt.key: d / alt.filename}
    if missing:
        present = sorted(p.name for p in d.iterdir())[:20]
        raise DatasetNotFoundError(
            not_found_message(
                name,
                [f'--data-dir {d}: missing {", ".join(missing)} (it holds: {", ".join(present)})'],
            )
        )
    for f in expected:
        verify_file(d / f.filename, f, extra_checksums=extra_checksums)
    return {f.key: d / f.filename for f in expected}


def find_os_package_files(name: str) -> tuple[dict[str, Path] | None, str]:
    """Verified files of the OS package for ``name`` (Debian), or None and why not."""
    tname = tfds_name(name)
    pkg = OS_PACKAGES.get(tname)
    if pkg is None:
        return None, f'no OS package ships {tname}'
    exe = shutil.which('dpkg-query')
    if exe is None:
        return None, f'OS package {pkg}: dpkg-query not found (not a Debian-like system)'
    try:
        res = subprocess.run([exe, '-L', pkg], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f'OS package {pkg}: dpkg-query failed ({e})'
    if res.returncode != 0:
        return None, f'OS package {pkg}: not installed'
    listed = {
        Path(line).name: Path(line) for line in res.stdout.splitlines() if line.endswith('.gz')
    }
    files = {}
    for f in official_files(tname):
        p = listed.get(f.filename)
        if p is None or not p.is_file():
            return None, f'OS package {pkg}: installed but {f.filename} is missing'
        verify_file(p, f)  # a damaged system copy is an error worth stopping for
        files[f.key] = p
    return files, f'OS package {pkg}'


def not_found_message(name: str, looked: list[str]) -> str:
    """What is expected, where it was looked for (``looked``) and how to supply it."""
    tname = tfds_name(name)
    cls = builder_class(tname)
    files = official_files(tname)
    lines = [
        f'{DATASETS[tname].display_name} (tfds {tname!r} {cls.VERSION}) was not found.',
        'Expected files (the official release; checked against the sha256 and size '
        'registered by tensorflow-datasets):',
    ]
    lines += [f'  {f.filename}  ({f.size} bytes, {f.url})' for f in files]
    lines += [f'  or {f.filename}  ({f.size} bytes, {f.url})' for f in alternatives(tname)]
    lines.append('Looked in:')
    lines += [f'  - {x}' for x in looked]
    lines.append('To supply it, do one of:')
    lines.append(
        f'  - pass --data-dir DIR (load_split(..., data_dir=DIR)), DIR holding '
        f'the file{"s" if len(files) > 1 else ""} above;'
    )
    if tname in OS_PACKAGES:
        lines.append(f'  - sudo apt-get install {OS_PACKAGES[tname]}  (Debian/Ubuntu);')
    lines.append(
        '  - run once with network access: tensorflow-datasets then downloads and '
        'prepares it into the tfds data dir.'
    )
    return '\n'.join(lines)


def download_unreachable(name: str, timeout: float = 5.0) -> str | None:
    """Why the download hosts cannot be reached, or None if they can (or a proxy is set).

    Without this, tfds retries a failing download with back-off for minutes before giving up
    (benchmarks/README.md, "Data").
    """
    import socket
    import threading
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None  # only requests knows how to go through the proxy: let tfds try
    hosts = sorted(
        {
            (u.hostname, u.port or (443 if u.scheme == 'https' else 80))
            for u in (urlsplit(f.url) for f in official_files(name))
        }
    )
    for host, port in hosts:
        result: list[str | None] = []

        def probe(host=host, port=port, result=result):
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(None)
            except OSError as e:
                result.append(f'{type(e).__name__}: {e}')

        t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout
        t.start()
        t.join(timeout + 1)
        reason = result[0] if result else 'timed out'
        if reason is not None:
            return f'no network: cannot reach {host}:{port} ({reason})'
    return None
