"""`make firmware`: a MicroPython unix-port binary with a board's manifest frozen in.

    python tools/build_firmware.py [--board unix|linux] [--arch x86|x64] [--tls-heap]
                                   [--src TREE_OR_TAR_XZ] [-j N] [--check]

Builds ports/unix of a MicroPython source tree (a checkout, or a .tar.xz of one,
extracted under build/mpy-src/) with FROZEN_MANIFEST=boards/<board>/manifest.py,
MPY_CROSS_FLAGS=-march=<arch>, MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 and SSL on
(without mbedTLS there is no hashlib.sha1 for the WebSocket handshake). x86 is the
real target's shape: 32-bit objects (CFLAGS_EXTRA=-m32 LDFLAGS_EXTRA=-m32, Debian's
gcc-multilib) and the firmware's bytecode and names in the binary, as in a board's
flash. --tls-heap adds -DMICROPY_TRACKED_ALLOC=1 and boards/unix/mbedtls_config_heap.h,
which sends mbedTLS's calloc/free to m_tracked_calloc/m_tracked_free: TLS then
allocates from the MicroPython heap, as on an RP2040 (the ESP32's mbedTLS uses the
IDF heap, outside MicroPython's).

The binary lands in build/firmware/<board>-<arch>[-tls]/micropython, with build.json
beside it. It is cached: the key hashes the source (the archive's bytes, or a tree's
file names, sizes and times), the manifest, every .py file of firmware/ and lib/ (what
the manifests freeze), the mbedTLS config and the make arguments; a second run with
the same key costs nothing, a changed module rebuilds (incrementally: the object
files stay in build/firmware/obj/). Run it with MICROPYPATH=.frozen and the copy of
firmware/main.py it puts beside the binary (see _main):
    MICROPYPATH=.frozen build/firmware/unix-x86/micropython build/firmware/unix-x86/main.py \
        --board boards/unix --data DIR --csms URL --cp ID

The source: --src, else $MPY_SRC, else ../shared/toolchain/micropython-src.tar.xz
beside the repository. Exit codes: 0 built or cached, 1 the build failed, 2 it
cannot be built here (no source, no 32-bit compiler): the reason is printed.
--check prints the reason (or the source) and builds nothing.
"""
import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "firmware"
SRC_CACHE = ROOT / "build" / "mpy-src"
SHARED_ARCHIVE = ROOT.parent / "shared" / "toolchain" / "micropython-src.tar.xz"
MBEDTLS_HEAP_CONFIG = ROOT / "boards" / "unix" / "mbedtls_config_heap.h"
ARCHES = ("x86", "x64")
BOARDS = ("unix", "linux")  # the boards whose manifest builds with ports/unix
FROZEN = ("firmware", "lib")  # what the manifests freeze from this repository
RECIPE = 1  # bump when the build below changes in a way the make arguments do not show


class Unavailable(Exception):
    """The firmware cannot be built on this machine (the message says why)."""


class BuildFailed(Exception):
    """make failed; the message ends with the last lines of its output."""


def find_source(src=None):
    """-> Path of the MicroPython source (tree or .tar.xz), or raise Unavailable."""
    if src is None:
        src = os.environ.get("MPY_SRC") or None
    if src is not None:
        p = Path(src).expanduser().resolve()
        if not p.exists():
            raise Unavailable("MPY_SRC=%s does not exist" % src)
        if p.is_dir() and not (p / "ports" / "unix" / "Makefile").is_file():
            raise Unavailable("MPY_SRC=%s is not a MicroPython source tree (no ports/unix/Makefile)" % src)
        return p
    if SHARED_ARCHIVE.is_file():
        return SHARED_ARCHIVE
    raise Unavailable("no MicroPython source: set MPY_SRC to a MicroPython checkout or a .tar.xz of one "
                      "(none at %s either)" % SHARED_ARCHIVE)


def check_compiler(arch):
    """Raise Unavailable unless gcc can compile and link a program for `arch`."""
    if not shutil.which("gcc") or not shutil.which("make"):
        raise Unavailable("no gcc or make on PATH")
    flags = ["-m32"] if arch == "x86" else []
    with tempfile.TemporaryDirectory() as d:
        c = Path(d) / "t.c"
        c.write_text("#include <stdio.h>\nint main(void) { puts(\"ok\"); return 0; }\n")
        p = subprocess.run(["gcc"] + flags + [str(c), "-o", str(Path(d) / "t")], capture_output=True, text=True)
        if p.returncode:
            why = (p.stderr.strip().splitlines() or ["?"])[0]
            raise Unavailable("gcc %s cannot build a program (%s)%s" % (
                " ".join(flags), why, ": install gcc-multilib (apt-get install gcc-multilib)" if flags else ""))


def available(arch="x86", src=None):
    """-> (source Path, None) when the firmware can be built, else (None, reason)."""
    try:
        s = find_source(src)
        check_compiler(arch)
        return s, None
    except Unavailable as e:
        return None, str(e)


def _sha(h, path):
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def source_id(src):
    """A hash of the source: the archive's bytes, or a tree's names, sizes and mtimes
    (build output, .git and __pycache__ left out)."""
    h = hashlib.sha256()
    if src.is_file():
        _sha(h, src)
        return "archive " + h.hexdigest()
    for d, dirs, files in os.walk(src):
        dirs[:] = sorted(x for x in dirs if not (x.startswith("build") or x in (".git", "__pycache__")))
        for f in sorted(files):
            st = os.stat(os.path.join(d, f))
            h.update(("%s %d %d\n" % (os.path.relpath(os.path.join(d, f), src), st.st_size, st.st_mtime_ns)).encode())
    return "tree " + h.hexdigest()


def frozen_files(board):
    """The repository files a board's build depends on: its manifest, every .py file of
    firmware/ and lib/ (a superset of what it freezes), the TLS-in-heap mbedTLS config."""
    files = [ROOT / "boards" / board / "manifest.py", MBEDTLS_HEAP_CONFIG]
    for top in FROZEN:
        files += sorted((ROOT / top).rglob("*.py"))
    return files


def make_args(board, arch, tls_heap, obj_dir):
    cflags = ["-m32"] if arch == "x86" else []
    ldflags = ["-m32"] if arch == "x86" else []
    args = ["MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MPY_CROSS_FLAGS=-march=" + arch,
            "FROZEN_MANIFEST=" + str(ROOT / "boards" / board / "manifest.py"), "BUILD=" + str(obj_dir)]
    if tls_heap:
        cflags += ["-DMICROPY_TRACKED_ALLOC=1", "-I" + str(MBEDTLS_HEAP_CONFIG.parent)]
        args.append('MBEDTLS_CONFIG_FILE=\\"%s\\"' % MBEDTLS_HEAP_CONFIG.name)
    if cflags:
        args.append("CFLAGS_EXTRA=" + " ".join(cflags))
    if ldflags:
        args.append("LDFLAGS_EXTRA=" + " ".join(ldflags))
    return args


def variant(board, arch, tls_heap):
    return "%s-%s%s" % (board, arch, "-tls" if tls_heap else "")


def cache_key(src_id, board, arch, tls_heap):
    h = hashlib.sha256()
    h.update(("recipe %d\n%s\n%s\n" % (RECIPE, src_id, " ".join(make_args(board, arch, tls_heap, "OBJ")))).encode())
    for f in frozen_files(board):
        h.update(("%s\n" % f.relative_to(ROOT)).encode())
        _sha(h, f)
    return h.hexdigest()[:20]


def extract(archive, log):
    """The archive extracted once under build/mpy-src/<its hash>/ -> the tree's root."""
    h = hashlib.sha256()
    _sha(h, archive)
    dest = SRC_CACHE / h.hexdigest()[:16]
    done = dest / ".extracted"
    if not done.exists():
        log("extracting %s into %s" % (archive, dest.relative_to(ROOT)))
        shutil.rmtree(dest, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=SRC_CACHE, prefix=".x-"))
        with tarfile.open(archive) as t:
            try:
                t.extractall(tmp, filter="data")
            except TypeError:  # Python before 3.11.4 / 3.10.12: no extraction filters
                t.extractall(tmp)
        tmp.rename(dest)
        done.write_text(str(archive) + "\n")
    tops = [p for p in dest.iterdir() if (p / "ports" / "unix" / "Makefile").is_file()]
    if (dest / "ports" / "unix" / "Makefile").is_file():
        return dest
    if len(tops) != 1:
        raise Unavailable("%s holds no MicroPython source tree (no ports/unix/Makefile)" % archive)
    return tops[0]


def _run(cmd, cwd, log_file):
    with open(log_file, "a") as out:
        out.write("$ %s\n" % " ".join(cmd))
        out.flush()
        p = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if p.returncode:
        tail = Path(log_file).read_text().splitlines()[-25:]
        raise BuildFailed("%s failed (exit %d); the end of %s:\n%s" % (
            " ".join(cmd[:3]), p.returncode, log_file, "\n".join(tail)))


def _main(out_dir):
    # main.py stays a file on a board; beside the binary it is alone in its directory
    # (MicroPython puts the script's directory first on sys.path: firmware/main.py
    # would import firmware/*.py instead of the frozen modules).
    main = out_dir / "main.py"
    text = (ROOT / "firmware" / "main.py").read_bytes()
    if not main.is_file() or main.read_bytes() != text:
        main.write_bytes(text)
    return main


def board_env(tls_heap):
    # The environment that gives a run the board's shape beside the build's:
    # the emulated flash mounted with the ESP32's LittleFS units (32 B: an
    # open file holds 280 B) for the build whose TLS is outside the heap, as
    # on an ESP32, and with the RP2040's (256 B: 1.1 KB per file) for the one
    # whose mbedTLS allocates in the heap, as on an RP2040 (hw/unixflash.py).
    return {"FLASH_UNIT": "256" if tls_heap else "32"}


def build(board="unix", arch="x86", tls_heap=False, src=None, jobs=2, log=print):
    """Build (or take from the cache) the firmware binary -> {"path", "main", "env", "cached",
    "seconds", "key", "source", ...}; run it with "env" added to the environment (board_env).
    Raises Unavailable or BuildFailed."""
    if board not in BOARDS:
        raise Unavailable("BOARD=%s: make firmware builds the unix port (BOARD=%s); an ESP32 or RP2040 "
                          "image is built in its port with its toolchain (README, Freezing)" % (board, "|".join(BOARDS)))
    if arch not in ARCHES:
        raise Unavailable("ARCH=%s: the unix port builds for %s" % (arch, " or ".join(ARCHES)))
    src = find_source(src)
    check_compiler(arch)
    t0 = time.time()
    BUILD.mkdir(parents=True, exist_ok=True)
    SRC_CACHE.mkdir(parents=True, exist_ok=True)
    name = variant(board, arch, tls_heap)
    out_dir = BUILD / name
    binary = out_dir / "micropython"
    stamp = out_dir / "build.json"
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (bench threads, parallel makes)
        key = cache_key(source_id(src), board, arch, tls_heap)
        try:
            info = json.loads(stamp.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("key") == key and binary.is_file():
            info.update(cached=True, seconds=round(time.time() - t0, 2), path=str(binary), main=str(_main(out_dir)),
                        env=board_env(tls_heap))
            return info
        tree = extract(src, log) if src.is_file() else src
        obj = BUILD / "obj" / name
        log_file = out_dir / "build.log"
        out_dir.mkdir(parents=True, exist_ok=True)
        log_file.write_text("")
        log("building %s (boards/%s/manifest.py frozen in; source %s; log in %s)" % (
            name, board, src, log_file.relative_to(ROOT)))
        py = "PYTHON=" + sys.executable
        _run(["make", "-C", "mpy-cross", "-j%d" % jobs, py], tree, log_file)
        args = make_args(board, arch, tls_heap, obj)
        _run(["make", "-C", "ports/unix", "-j%d" % jobs, py] + args, tree, log_file)
        built = obj / "micropython"
        if not built.is_file():
            raise BuildFailed("make succeeded but %s is missing" % built)
        tmp = binary.with_suffix(".new")
        shutil.copyfile(built, tmp)
        tmp.chmod(0o755)
        tmp.rename(binary)
        info = {"key": key, "board": board, "arch": arch, "tls_heap": tls_heap, "source": str(src),
                "source_tree": str(tree), "make_args": args, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                "build_seconds": round(time.time() - t0, 1), "jobs": jobs}
        stamp.write_text(json.dumps(info, indent=1) + "\n")
        info.update(cached=False, seconds=info["build_seconds"], path=str(binary), main=str(_main(out_dir)),
                    env=board_env(tls_heap))
        log("built %s in %.1f s" % (binary.relative_to(ROOT), info["seconds"]))
        return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="unix")
    ap.add_argument("--arch", default="x86")
    ap.add_argument("--tls-heap", action="store_true", help="mbedTLS allocates from the MicroPython heap (RP2040)")
    ap.add_argument("--src", help="MicroPython source tree or .tar.xz (default: $MPY_SRC, then the shared archive)")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2, help="parallel make jobs")
    ap.add_argument("--check", action="store_true", help="say whether it can be built here; build nothing")
    args = ap.parse_args()
    try:
        if args.check:
            src = find_source(args.src)
            check_compiler(args.arch)
            print("can build: source %s" % src)
            return 0
        info = build(args.board, args.arch, args.tls_heap, args.src, args.j)
    except Unavailable as e:
        print("build_firmware: cannot build here: %s" % e, file=sys.stderr)
        return 2
    except BuildFailed as e:
        print("build_firmware: %s" % e, file=sys.stderr)
        return 1
    print("%s (%s, %.1f s)" % (os.path.relpath(info["path"], ROOT),
                               "cached" if info["cached"] else "built", info["seconds"]))
    print("run it: MICROPYPATH=.frozen %s %s --board boards/%s --data DIR --csms URL --cp ID" % (
        os.path.relpath(info["path"], ROOT), os.path.relpath(info["main"], ROOT), args.board))
    return 0


if __name__ == "__main__":
    sys.exit(main())
