"""A Python interpreter for the guest: the host's own, its libraries, its stdlib and writepath.

The semantics replay runs the oracle's own code inside the guest, so the guest needs the
interpreter that runs writepath on the host (``sys._base_executable``: the same version, so the
bytecode compiled here loads there), the shared libraries ``ldd`` names for it and for the
extension modules kept, the standard library as compiled bytecode in ``lib/pythonXY.zip`` (where
the interpreter looks for it under ``PYTHONHOME``), and writepath itself as a second zip.

Both zips are *stored*, not deflated: zipimport inflates through ``zlib``, which is an extension
module of its own here and cannot be imported before the stdlib it would unpack. The initramfs
as a whole is gzip-compressed instead (the kernel's RD_GZIP).

Nothing here runs in the guest; ``writepath.lab.guest`` does.
"""

from __future__ import annotations

import importlib.util
import io
import marshal
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Where the interpreter and its stdlib go in the guest (PYTHONHOME=/usr).
GUEST_HOME = "/usr"
GUEST_PYTHON = "/usr/bin/python3"
#: Where writepath's own bytecode goes (on PYTHONPATH).
GUEST_WRITEPATH_ZIP = "/wp/writepath.zip"

#: Parts of the stdlib the oracle never imports: tests, GUIs, installers, the 2to3 tool.
EXCLUDED_STDLIB = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "distutils",
        "venv",
        "sqlite3",
        "curses",
        "dbm",
        "__phello__",
    }
)
#: Extension modules left out: tests, terminals, databases, and those that pull in large
#: libraries (OpenSSL: hashlib falls back to its own builtin digests without _hashlib).
EXCLUDED_EXTENSION = re.compile(
    r"^(_test|_xx|xx|_ctypes_test|_tkinter|_curses|readline|_dbm|_gdbm|nis|ossaudiodev|"
    r"_sqlite3|_ssl|_hashlib|_crypt|audioop)"
)


class GuestPythonError(Exception):
    """The host's interpreter cannot be packed for the guest (the reason says why)."""


@dataclass(frozen=True)
class GuestFile:
    """One file of the guest tree: its absolute path in the guest and its bytes."""

    path: str
    data: bytes
    mode: int = 0o644


def host_interpreter() -> Path:
    """The real interpreter binary running writepath (a venv's python is a symlink to it)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return Path(os.path.realpath(base))


_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def parse_ldd(text: str) -> list[str]:
    """The absolute library paths in ``ldd`` output (vdso lines have none; "not found" fails)."""
    out: list[str] = []
    for line in text.splitlines():
        if "not found" in line:
            raise GuestPythonError(f"ldd: {line.strip()}")
        m = _LDD_LINE.match(line)
        if m:
            out.append(m.group(2))
    return out


def shared_libraries(binaries: list[Path]) -> list[str]:
    """Every library the binaries need, by the path the dynamic loader will look for."""
    found: dict[str, None] = {}
    for b in binaries:
        try:
            r = subprocess.run(
                ["ldd", str(b)], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GuestPythonError(f"ldd {b}: {e}") from e
        if r.returncode and "not a dynamic executable" not in (r.stdout + r.stderr):
            raise GuestPythonError(f"ldd {b}: {r.stderr.strip() or r.returncode}")
        for lib in parse_ldd(r.stdout):
            found[lib] = None
    return list(found)


def elf_bytes(path: Path) -> bytes:
    """The binary's bytes without its debug sections when ``strip`` is there (libpython shrinks
    from about 22 MiB to 6 MiB: less for the guest to unpack under TCG), else as it is."""
    strip = shutil.which("strip")
    if strip is None:
        return path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="writepath-strip.") as d:
        out = Path(d) / path.name
        try:
            r = subprocess.run(
                [strip, "--strip-debug", "-o", str(out), str(path)],
                capture_output=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return path.read_bytes()
        return out.read_bytes() if r.returncode == 0 and out.exists() else path.read_bytes()


def pyc_bytes(source: Path, arcname: str) -> bytes:
    """Bytecode for ``source`` as a sourceless .pyc: zipimport loads it without a .py beside.

    The cached ``__pycache__`` file is used when its header matches the source (the same
    interpreter compiled it); otherwise the source is compiled here.
    """
    tag = sys.implementation.cache_tag
    cached = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
    st = source.stat()
    try:
        data = cached.read_bytes()
        if (
            data[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(data[4:8], "little") == 0
            and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF
        ):
            return data
    except OSError:
        pass
    code = compile(source.read_bytes(), arcname, "exec", dont_inherit=True)
    # Flags 0 (timestamp-based) and a zero timestamp: with no source in the zip, nothing checks it.
    return importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)


def _python_sources(top: Path, skip_top: frozenset[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        rel = Path(dirpath).relative_to(top)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in skip_top and not d.startswith("config-")]
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "lib-dynload"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def bytecode_zip(top: Path, prefix: str = "", skip_top: frozenset[str] = frozenset()) -> bytes:
    """A stored zip of sourceless bytecode for every .py below ``top`` (fixed dates)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for source in _python_sources(top, skip_top):
            rel = source.relative_to(top).as_posix()
            arc = f"{prefix}{rel[:-3]}.pyc"
            info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, pyc_bytes(source, f"{prefix}{rel}"))
    return buf.getvalue()


def stdlib_dirs() -> tuple[Path, Path]:
    """The running interpreter's stdlib and its extension-module directory."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    if not (stdlib / "os.py").exists() or not dynload.is_dir():
        raise GuestPythonError(f"no stdlib at {stdlib} (or no {dynload})")
    return stdlib, dynload


def extension_modules(dynload: Path) -> list[Path]:
    return sorted(
        p
        for p in dynload.iterdir()
        if p.name.endswith(".so") and not EXCLUDED_EXTENSION.match(p.name)
    )


def writepath_package_dir() -> Path:
    """The installed (or checked-out) writepath package: what the guest imports."""
    import writepath

    return Path(writepath.__file__).resolve().parent


def guest_python(cache: Path | None = None) -> list[GuestFile]:
    """The files that make the host's interpreter run writepath in the guest.

    The stdlib zip takes a while to build (a few thousand files), so it is kept in ``cache``
    under a name holding the interpreter's version and path; writepath's zip is rebuilt every
    time (it is small and changes).
    """
    python = host_interpreter()
    stdlib, dynload = stdlib_dirs()
    modules = extension_modules(dynload)
    libs = shared_libraries([python, *modules])
    ver = f"{sys.version_info.major}{sys.version_info.minor}"
    lib_dir = f"python{sys.version_info.major}.{sys.version_info.minor}"
    files = [GuestFile(GUEST_PYTHON, elf_bytes(python), 0o755)]
    # Each library at the path the loader looks for (ldd's answer: RUNPATHs resolved).
    files += [GuestFile(lib, elf_bytes(Path(lib)), 0o755) for lib in libs]
    files += [
        GuestFile(f"{GUEST_HOME}/lib/{lib_dir}/lib-dynload/{m.name}", elf_bytes(m), 0o755)
        for m in modules
    ]
    stdlib_zip: bytes | None = None
    if cache is not None:
        key = re.sub(r"[^A-Za-z0-9.]+", "_", f"{sys.version.split()[0]}-{python}")
        cached = cache / f"stdlib-{key}.zip"
        if cached.exists():
            stdlib_zip = cached.read_bytes()
    if stdlib_zip is None:
        stdlib_zip = bytecode_zip(stdlib, skip_top=EXCLUDED_STDLIB)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(stdlib_zip)
            tmp.replace(cached)
    files.append(GuestFile(f"{GUEST_HOME}/lib/python{ver}.zip", stdlib_zip))
    files.append(
        GuestFile(GUEST_WRITEPATH_ZIP, bytecode_zip(writepath_package_dir(), prefix="writepath/"))
    )
    return files


def guest_environment() -> dict[str, str]:
    """The environment the guest's interpreter runs with."""
    return {
        "PYTHONHOME": GUEST_HOME,
        "PYTHONPATH": GUEST_WRITEPATH_ZIP,
        # A fixed hash seed: no getrandom() wait at start-up, the same run every boot.
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/bin:/usr/bin",
    }
