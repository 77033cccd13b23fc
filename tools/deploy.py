"""Put the firmware on a board over its USB serial REPL, and configure it there.

    python tools/deploy.py --board esp32 --port /dev/ttyUSB0 [--dry-run] [--no-reset]
    python tools/deploy.py --port /dev/ttyACM0 --set CsmsUrl wss://csms.example.com/ocpp [--set KEY VALUE]...
    python tools/deploy.py --port /dev/ttyACM0 --show

Deploy: compiles firmware/ and lib/ with mpy-cross for the board's CPU
(tools/build_mpy.py), stages what the board needs in build/deploy/<board>/
(the modules its boards/<board>/manifest.py lists, as .mpy; main.py as source;
the board's board.json), then copies the staged tree to the flash root with
mpremote. --dry-run stages and prints the mpremote command without a device.

Configure: runs cfg.set(KEY, VALUE) on the board through `mpremote exec`,
prints its answer (Accepted / RebootRequired / Rejected / NotSupported), then
restarts the board so the firmware runs again (mpremote stops it to get the
REPL).
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_mpy  # noqa: E402

# Board -> mpy-cross architecture. ESP32 (Xtensa LX6, also the S2/S3's LX7) ->
# xtensawin; RP2040 (Cortex-M0+) -> armv6m. Pure bytecode .mpy files carry no
# architecture (the header says "any"), so the arch only matters for native
# code, but compiling for the right one keeps that true if any is added.
ARCH = {"esp32": "xtensawin", "rp2040": "armv6m"}
SOURCES = ("firmware", "lib")
MPY_CROSS_ARCH_CODES = {"xtensawin": 10, "armv6m": 4}  # .mpy header byte 2 >> 2, native code only


def mpremote():
    exe = Path(sys.executable).parent / "mpremote"
    return str(exe) if exe.exists() else "mpremote"


# ---- manifests: the same boards/<board>/manifest.py the firmware build freezes ----

def read_manifest(path):
    """Executes a MicroPython manifest.py with stand-ins for the manifest
    functions; -> (files, external): files is a list of (source path, target
    path on the device), external the includes/requires that live in the
    MicroPython tree ($(PORT_DIR), $(BOARD_DIR)..., require())."""
    files, external = [], []

    def resolve(p):
        return os.path.abspath(p)

    def add(src, target):
        if not os.path.isfile(src):
            raise FileNotFoundError("manifest %s: no such file %s" % (path, src))
        files.append((src, target.replace(os.sep, "/")))

    def walk(base, sub, exts):
        for d, _, fs in os.walk(os.path.join(base, sub) if sub else base):
            for f in sorted(fs):
                if os.path.splitext(f)[1] in exts:
                    full = os.path.join(d, f)
                    add(full, os.path.relpath(full, base))

    def include(p, **kw):
        if not isinstance(p, str):
            for x in p:
                include(x, **kw)
            return
        if "$(" in p:
            external.append("include " + p)
            return
        p = resolve(p)
        if os.path.isdir(p):
            p = os.path.join(p, "manifest.py")
        run(p, kw)

    def freeze(p, script=None, opt=None):
        if "$(" in p:
            external.append("freeze " + p)
            return
        base = resolve(p)
        if script is None:
            walk(base, None, (".py", ".mpy"))
        elif isinstance(script, str) and os.path.isdir(os.path.join(base, script)):
            walk(base, script, (".py", ".mpy"))
        else:
            for s in ([script] if isinstance(script, str) else script):
                add(os.path.join(base, s), s)

    def package(package_path, files=None, base_path=".", opt=None):
        base = resolve(base_path)
        if files is None:
            walk(base, package_path, (".py",))
        else:
            for f in files:
                t = os.path.join(package_path, f)
                add(os.path.join(base, t), t)

    def module(module_path, base_path=".", opt=None):
        if not module_path.endswith(".py"):
            raise ValueError("manifest %s: module() needs a .py file, not %s" % (path, module_path))
        add(os.path.join(resolve(base_path), module_path), module_path)

    def require(name, *a, **kw):
        external.append("require " + name)

    class Options:
        def __init__(self, kw):
            self._kw, self._defaults = kw, {}

        def defaults(self, **kw):
            self._defaults = kw

        def __getattr__(self, name):
            return self._kw.get(name, self._defaults.get(name))

    def run(p, kw):
        with open(p) as f:
            code = f.read()
        g = {"include": include, "freeze": freeze, "freeze_as_mpy": freeze, "freeze_mpy": freeze,
             "freeze_as_str": freeze, "package": package, "module": module, "require": require,
             "metadata": lambda **k: None, "add_library": lambda *a, **k: None,
             "c_module": lambda p: external.append("c_module " + p), "options": Options(kw)}
        cwd = os.getcwd()
        os.chdir(os.path.dirname(p))  # relative paths are relative to the manifest, as in MicroPython
        try:
            exec(compile(code, p, "exec"), g)
        finally:
            os.chdir(cwd)

    run(os.path.abspath(path), {})
    return files, external


# ---- deploy ----

def stage(board, out=None, log=print):
    """Compiles and stages the files for `board` in build/deploy/<board>/;
    -> (stage dir, [device paths, sorted])."""
    if board not in ARCH:
        raise SystemExit("deploy: no deployment over mpremote for board %r (boards: %s). The unix and linux "
                         "boards run the MicroPython unix port: copy firmware/, lib/ and boards/<board>/ to "
                         "the machine instead (README, \"Flashing a board\")." % (board, ", ".join(sorted(ARCH))))
    arch = ARCH[board]
    board_dir = ROOT / "boards" / board
    with open(board_dir / "board.json") as f:
        json.load(f)  # a broken board file stops here, not on the board
    files, _ = read_manifest(board_dir / "manifest.py")
    out = Path(out or ROOT / "build" / "deploy" / board)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        total, sizes, failed = build_mpy.build(arch, tmp)
        if failed:
            raise SystemExit("deploy: mpy-cross failed:\n" + "\n".join(failed))
        compiled = Path(tmp) / arch
        staged = []
        for src, target in files:
            src = Path(src).resolve()
            if not any(src.is_relative_to(ROOT / s) for s in SOURCES):
                raise SystemExit("deploy: %s lists %s, outside firmware/ and lib/" % (board_dir / "manifest.py", src))
            mpy = str(Path(target).with_suffix(".mpy"))
            dst = out / mpy
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(compiled / mpy, dst)
            staged.append(mpy)
    shutil.copyfile(ROOT / "firmware" / "main.py", out / "main.py")
    shutil.copyfile(board_dir / "board.json", out / "board.json")
    staged += ["main.py", "board.json"]
    size = sum((out / p).stat().st_size for p in staged)
    log("deploy: %s (%s): %d files, %d bytes staged in %s" % (board, arch, len(staged), size, out.relative_to(ROOT)
                                                                if out.is_relative_to(ROOT) else out))
    return out, sorted(staged)


def keep_watchdog_fed(timeout_ms):
    # REPL code: a running firmware armed a watchdog that nothing stops, and
    # mpremote has just stopped the firmware that fed it. A timer feeds it until
    # the board is reset at the end. (Arms one if none ran; the reset clears it.)
    return ("try:\n"
            " from machine import WDT, Timer\n"
            " _w = WDT(timeout=%d)\n"
            " try:\n  _t = Timer(-1)\n except Exception:\n  _t = Timer(0)\n"
            " _t.init(period=1000, callback=lambda t: _w.feed())\n"
            "except Exception as e:\n"
            " print('deploy: watchdog not kept fed:', e)\n" % timeout_ms)


def remove_shadowing_sources(paths):
    # REPL code: a .py next to a .mpy of the same name is imported instead of
    # it, so sources from an earlier deployment would shadow the new modules.
    return ("import os\n"
            "for _p in %r:\n"
            " try:\n  os.remove(_p)\n except OSError:\n  pass\n" % (tuple(p[:-4] + ".py" for p in paths if p.endswith(".mpy")),))


def rel(p):
    # Paths in the printed commands: relative to the project root (the commands run there).
    p = Path(p)
    return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else str(p)


def deploy_command(port, out, staged, reset=True, resume=False):
    """-> the mpremote command line. Writes the REPL code it runs first to
    <out>-prepare.py, next to the staging directory."""
    with open(out / "board.json") as f:
        wd = json.load(f).get("watchdog")
    prep = remove_shadowing_sources(staged)
    if wd:
        prep = keep_watchdog_fed(min(int(wd.get("timeout_ms", 8000)), 8000)) + prep
    prep_file = out.parent / (out.name + "-prepare.py")
    prep_file.write_text(prep)
    tops = sorted({p.split("/")[0] for p in staged})
    cmd = [rel(mpremote()), "connect", port]
    if resume:  # tests: a unix-port "device" that must not soft-reset
        cmd.append("resume")
    cmd += ["run", rel(prep_file), "+", "fs", "cp", "-r"] + [rel(out / t) for t in tops] + [":"]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def show(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def configure_command(port, pairs=(), show_all=False, reset=True, resume=False):
    code = ["import cfg"]
    for key, value in pairs:
        code.append("cfg.set(%r, %r)" % (key, value))
    if show_all or not pairs:
        code.append("cfg.show()")
    cmd = [rel(mpremote()), "connect", port] + (["resume"] if resume else []) + ["exec", "; ".join(code)]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", help="esp32 or rp2040 (deploy)")
    ap.add_argument("--port", help="the board's serial device, e.g. /dev/ttyUSB0 (ESP32) or /dev/ttyACM0 (Pico W)")
    ap.add_argument("--dry-run", action="store_true", help="stage and print the mpremote command, touch no device")
    ap.add_argument("--out", help="staging directory (default build/deploy/<board>)")
    ap.add_argument("--set", nargs=2, action="append", metavar=("KEY", "VALUE"), help="configure: cfg.set(KEY, VALUE)")
    ap.add_argument("--show", action="store_true", help="configure: print every key (secrets hidden)")
    ap.add_argument("--no-reset", action="store_true", help="leave the board at the REPL instead of restarting it")
    ap.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    reset = not args.no_reset

    if args.set or args.show:
        if not args.port and not args.dry_run:
            ap.error("configure needs --port")
        cmd = configure_command(args.port or "PORT", args.set or (), args.show, reset, args.resume)
    else:
        if not args.board:
            ap.error("deploy needs --board (esp32 or rp2040)")
        if not args.port and not args.dry_run:
            ap.error("deploy needs --port (or --dry-run)")
        out, staged = stage(args.board, args.out)
        cmd = deploy_command(args.port or "PORT", out, staged, reset, args.resume)
    print(("would run: " if args.dry_run else "running: ") + show(cmd), flush=True)
    if args.dry_run:
        return 0
    try:
        return subprocess.call(cmd, cwd=ROOT)
    except FileNotFoundError:
        print("deploy: mpremote not found (make venv installs it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
