"""Which BLAS serves the model: a portable OpenBLAS from pip, proven on this CPU, then preloaded.

MLX's Linux CPU wheel links reference BLAS (20-36x slower for a 1024 matmul). On Linux x86_64 the
project depends on ``ngsolve-openblas``: a ``DYNAMIC_ARCH`` build, which picks its kernels for the
CPU at run time (a build for one CPU, such as cmeel-openblas' SKYLAKEX, dies with SIGILL on every
CPU without AVX-512). It exports the unprefixed ``cblas_*`` symbols MLX calls and needs
``libgfortran.so.5``, which MLX's CPU wheel bundles under a hashed name in ``mlx_cpu.libs``: a
folder of symlinks in the cache goes on ``LD_LIBRARY_PATH`` and the library on ``LD_PRELOAD``.
Debian's ``libopenblas0-pthread`` (also DYNAMIC_ARCH) is used when the pip one is missing.

A native library must never void a run: before it is preloaded, a child process loads it, reads
``openblas_get_config()`` and checks MLX matmuls against a result computed without BLAS. The
verdict is remembered per library file and CPU in the cache. A library that dies (SIGILL,
SIGSEGV) or computes wrong numbers is not preloaded; the run goes on with reference BLAS and says
why. ``PUNIE_OPENBLAS=0`` opts out; ``PUNIE_OPENBLAS=/path/to/libopenblas.so`` chooses the
library. macOS uses Accelerate and needs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from pytest_punie.system.files import atomic_write_text, cache_dir

__all__ = [
    "DEBIAN_OPENBLAS",
    "PIP_OPENBLAS",
    "THREADS_ENV",
    "BlasChoice",
    "Proof",
    "blas_in_process",
    "choose_blas",
    "find_openblas",
    "gfortran_folder",
    "matmul_gflops",
    "preload_openblas",
    "prove",
    "record_crash",
    "signal_name",
    "threads",
    "usable_cores",
]

PIP_OPENBLAS = "ngsolve-openblas"
DEBIAN_OPENBLAS = "/usr/lib/{arch}-linux-gnu/openblas-pthread/libblas.so.3"
ENV = "PUNIE_OPENBLAS"
THREADS_ENV = "OPENBLAS_NUM_THREADS"
_OFF = {"0", "false", "no", "off"}
PROOF_TIMEOUT_S = 60.0
"""How long the child that proves a library may take (importing MLX dominates: about 2 s)."""
_PROOFS_FILE = "proofs.json"


@dataclass(frozen=True)
class Proof:
    """What a child process found a library does on this CPU."""

    ok: bool
    config: str | None = None  # openblas_get_config(), e.g. "OpenBLAS 0.3.33 DYNAMIC_ARCH ..."
    reason: str | None = None  # why it is not used: "died with SIGILL on this CPU", ...
    seconds: float = 0.0


@dataclass(frozen=True)
class BlasChoice:
    """The BLAS an MLX process started with the prepared environment uses."""

    description: str  # for the summary, the results and the report
    library: Path | None = None  # the preloaded library; None: reference BLAS or Accelerate


def opted_out() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in _OFF


def _chosen_by_user() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    if not value or value.lower() in _OFF or value.lower() in {"1", "true", "yes", "on"}:
        return None
    return Path(value).expanduser()


def _pip_openblas() -> Path | None:
    """The pip OpenBLAS's library, located without importing its package (which loads it)."""
    try:
        dist = metadata.distribution(PIP_OPENBLAS)
    except metadata.PackageNotFoundError:
        return None
    for file in sorted(dist.files or (), key=str):
        if file.name.startswith("libopenblas") and ".so" in file.name:
            library = Path(str(dist.locate_file(file)))
            if library.is_file():
                return library
    return None


def find_openblas() -> tuple[Path, str] | None:
    """The OpenBLAS library to preload and where it comes from, or None."""
    chosen = _chosen_by_user()
    if chosen is not None:
        return chosen, f"{ENV}={chosen}"
    pip = _pip_openblas()
    if pip is not None:
        return pip, f"pip {PIP_OPENBLAS} {metadata.version(PIP_OPENBLAS)}"
    debian = Path(DEBIAN_OPENBLAS.format(arch=platform.machine()))
    if debian.is_file():
        return debian, "Debian libopenblas0-pthread"
    return None


def _mlx_libs() -> Path | None:
    """``mlx_cpu.libs``, the folder of libraries bundled with MLX's Linux CPU wheel."""
    try:
        dist = metadata.distribution("mlx-cpu")
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("mlx_cpu.libs")))
    return folder if folder.is_dir() else None


def gfortran_folder(cache: Path) -> Path | None:
    """A folder in ``cache`` where ``libgfortran.so.5`` (and the hashed libquadmath it needs)
    resolve to MLX's bundled copies; None when MLX bundles no libgfortran."""
    libs = _mlx_libs()
    if libs is None:
        return None
    gfortran = sorted(libs.glob("libgfortran-*.so.5*"))
    if not gfortran:
        return None
    links = {"libgfortran.so.5": gfortran[0]}
    links.update({p.name: p for p in libs.iterdir() if p.name.startswith("libquadmath-")})
    key = hashlib.sha256(str(libs.resolve()).encode()).hexdigest()[:12]
    folder = cache / "blas" / f"gfortran-{key}"
    if all((folder / name).resolve() == target.resolve() for name, target in links.items()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, folder / name)  # atomic: a concurrent process sees the old or new link
    return folder


def _prepend(env: dict[str, str], key: str, value: str, sep: str) -> None:
    env[key] = sep.join(v for v in (value, env.get(key, "")) if v)


def _with_preload(env: dict[str, str], library: Path, cache: Path) -> dict[str, str]:
    """``env`` plus what makes a process load ``library`` (and find libgfortran for it)."""
    prepared = dict(env)
    if not str(library).startswith("/usr/lib"):  # a system library resolves its own
        folder = gfortran_folder(cache)
        if folder is not None:
            _prepend(prepared, "LD_LIBRARY_PATH", str(folder), ":")
    _prepend(prepared, "LD_PRELOAD", str(library), " ")
    return prepared


def signal_name(returncode: int) -> str:
    """``SIGILL`` for a process that ended with -4."""
    with contextlib.suppress(ValueError):
        return signal.Signals(-returncode).name
    return f"signal {-returncode}"


def cpu_signature() -> str:
    """What tells CPUs apart for native code: the machine, the model name and the flags."""
    model, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model name", "CPU part") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    return f"{platform.machine()}|{model}|{flags}"


def _proof_key(library: Path) -> str:
    try:
        stat = library.resolve().stat()
        identity = f"{library.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        identity = str(library)
    return hashlib.sha256(f"{identity}|{cpu_signature()}".encode()).hexdigest()[:24]


def _proofs_path(cache: Path) -> Path:
    return cache / "blas" / _PROOFS_FILE


def _remembered(cache: Path, key: str) -> Proof | None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        data = json.loads(_proofs_path(cache).read_text()).get(key)
        if isinstance(data, dict):
            return Proof(**data)
    return None


def _remember(cache: Path, key: str, proof: Proof) -> None:
    path = _proofs_path(cache)
    with contextlib.suppress(OSError, ValueError):
        known: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                known = loaded
        known[key] = asdict(proof)
        atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True))


# Runs in the child: the library is preloaded; every matmul is checked against the same product
# computed by MLX's own elementwise kernels (no BLAS). Small integers make both exact.
_PROBE = """
import ctypes, os, sys
library = ctypes.CDLL(os.environ["PUNIE_BLAS_PROBE"])
config = getattr(library, "openblas_get_config", None)
if config is not None:
    config.restype = ctypes.c_char_p
    print("CONFIG", config().decode("ascii", "replace"), flush=True)
import mlx.core as mx
for n, k, m in ((64, 48, 80), (1, 200, 300), (300, 200, 1), (320, 256, 288)):
    a = (mx.arange(n * k) % 7 - 3).reshape(n, k).astype(mx.float32)
    b = (mx.arange(k * m) % 5 - 2).reshape(k, m).astype(mx.float32)
    for x, y in ((a, b), (b.T, a.T)):
        got = x @ y
        want = (x[:, :, None] * y[None, :, :]).sum(axis=1)
        if not mx.array_equal(got, want).item():
            print("WRONG", x.shape, y.shape, flush=True)
            sys.exit(3)
print("OK", flush=True)
"""


def prove(library: Path, env: dict[str, str] | None = None, cache: Path | None = None) -> Proof:
    """Whether ``library``, preloaded into a fresh MLX process, computes right on this CPU.

    The verdict is remembered per library file and CPU in ``cache``; a probe that timed out is
    not remembered (the machine may only have been busy)."""
    cache = cache or cache_dir()
    key = _proof_key(library)
    known = _remembered(cache, key)
    if known is not None:
        return known
    child_env = _with_preload(dict(os.environ if env is None else env), library, cache)
    child_env["PUNIE_BLAS_PROBE"] = str(library)
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=PROOF_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Proof(False, None, f"its check did not finish in {PROOF_TIMEOUT_S:.0f} s")
    seconds = round(time.monotonic() - start, 2)
    found = re.search(r"^CONFIG (.*)$", done.stdout, re.MULTILINE)
    config = found.group(1).strip() if found else None
    if done.returncode < 0:
        died = f"died with {signal_name(done.returncode)} on this CPU"
        proof = Proof(False, config, died, seconds)
    elif "WRONG" in done.stdout:
        proof = Proof(False, config, "computed wrong numbers on this CPU", seconds)
    elif done.returncode != 0 or "OK" not in done.stdout:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        proof = Proof(False, config, f"failed its check (exit {done.returncode}: {tail})", seconds)
    else:
        proof = Proof(True, config, None, seconds)
    _remember(cache, key, proof)
    return proof


def record_crash(library: Path, reason: str, cache: Path | None = None) -> None:
    """Remember that ``library`` killed a real process on this CPU (it is not tried again)."""
    cache = cache or cache_dir()
    _remember(cache, _proof_key(library), Proof(False, None, reason))


def _name(library: Path, config: str | None) -> str:
    """``OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX`` when known, else the file's name."""
    return config if config else f"OpenBLAS {library.name}"


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def threads(processes: int = 1, *, spare: int = 0, cores: int | None = None) -> int:
    """OpenBLAS threads for each of ``processes`` model processes on this machine: the cores,
    less ``spare`` kept for other work, shared among them; at least one.

    OpenBLAS's threads wait for each other at every matmul, spinning: a process with more
    threads than it has cores to itself slows down 4-5x as soon as anything else runs (measured:
    `benchmarks/blas_threads.py`). A server gets ``spare=1`` (pytest scores and talks beside
    it); training processes have the machine to themselves."""
    return max(1, ((cores or usable_cores()) - spare) // max(1, processes))


def choose_blas(
    env: dict[str, str],
    cache: Path | None = None,
    *,
    processes: int = 1,
    spare: int = 0,
) -> BlasChoice:
    """Set ``env`` up so an MLX process started with it uses a proven OpenBLAS; say which BLAS
    it will use and why (a library that failed its proof is left out, with the reason).

    Its threads: ``OPENBLAS_NUM_THREADS`` as ``env`` sets it, else :func:`threads` for
    ``processes`` such processes with ``spare`` cores left for other work."""
    if not sys.platform.startswith("linux"):
        return BlasChoice("Accelerate (macOS)" if sys.platform == "darwin" else "platform default")
    if opted_out():
        return BlasChoice(f"reference ({ENV}=0)")
    found = find_openblas()
    if found is None:
        return BlasChoice(
            f"reference: no OpenBLAS found for {platform.machine()} (pip install "
            f"{PIP_OPENBLAS} on x86_64, or apt-get install libopenblas0-pthread); "
            "expect a slow run"
        )
    library, origin = found
    if not library.is_file():
        return BlasChoice(f"reference ({origin}: no such file)")
    cache = cache or cache_dir()
    proof = prove(library, env, cache)
    if not proof.ok:
        name = _name(library, proof.config)
        return BlasChoice(f"reference ({name} from {origin} {proof.reason})")
    env.update(_with_preload(env, library, cache))
    given = THREADS_ENV in env
    count = env.setdefault(THREADS_ENV, str(threads(processes, spare=spare)))
    plural = "" if count.strip() == "1" else "s"
    how = f" ({THREADS_ENV})" if given else ""
    return BlasChoice(
        f"{_name(library, proof.config)} ({origin}: {library}), {count} thread{plural}{how}",
        library,
    )


def preload_openblas(env: dict[str, str], cache: Path | None = None) -> str:
    """``choose_blas``'s description: what an MLX process started with ``env`` uses."""
    return choose_blas(env, cache).description


def without_preload(env: dict[str, str], library: Path) -> dict[str, str]:
    """``env`` with ``library`` taken off ``LD_PRELOAD`` (for a start again without it)."""
    cleaned = dict(env)
    kept = [p for p in cleaned.get("LD_PRELOAD", "").split() if p != str(library)]
    if kept:
        cleaned["LD_PRELOAD"] = " ".join(kept)
    else:
        cleaned.pop("LD_PRELOAD", None)
    return cleaned


def blas_in_process(pid: int, described: str, library: Path | None) -> str:
    """``described``, checked against the libraries mapped in process ``pid`` (Linux):
    ``library``, the one preloaded (None: nothing was), must be among them."""
    if library is None:
        return described
    maps = Path(f"/proc/{pid}/maps")
    try:
        mapped = maps.read_text()
    except OSError:
        return described
    if str(library) in mapped or os.path.realpath(library) in mapped:
        return described
    return f"reference: {library} was preloaded but is not loaded in the server"


_MATMUL = """
import time, mlx.core as mx
a = mx.random.normal((1024, 1024)); b = mx.random.normal((1024, 1024))
mx.eval(a @ b)
n, start = 0, time.perf_counter()
while n < 3 or time.perf_counter() - start < 0.5:
    mx.eval(a @ b); n += 1
print(2 * 1024**3 * n / (time.perf_counter() - start) / 1e9)
"""


def matmul_gflops(env: dict[str, str] | None = None, timeout: float = 300.0) -> float:
    """GFLOP/s of a float32 1024x1024 matmul in MLX, in a fresh process started with ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", _MATMUL],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    match = re.search(r"[\d.]+(?:e[+-]?\d+)?\s*$", done.stdout.strip())
    if match is None:
        raise RuntimeError(f"no GFLOP/s figure in {done.stdout!r}")
    return float(match.group(0))
