"""Speed and memory of lib/p256.py and lib/rsa.py on the MicroPython unix port.

    python tools/bench_crypto.py [--micropython BIN] [--frozen] [--runs 7] [--out build/bench_crypto.json]

Prints one table and writes the same figures as JSON:
1. Time, the median of --runs runs in one process (ticks_us): the G comb table's build (once, on
   first use), keygen, public, sign (RFC 6979), verify (65-byte and 33-byte keys), RSA-2048/3072/4096
   PKCS#1 v1.5 and PSS verify (e = 65537). Inputs are the committed test vectors.
2. Heap: the smallest `-X heapsize` (bisection, 1K steps, a size passes when 3 runs of 3 pass) at
   which each operation completes, with the modules loaded as .mpy (as on a board: compiling from
   .py costs more heap than the operation), the inputs as constants of a compiled module. The
   "import only" row is the same without the operation: the operation's own need is the difference.
3. Code size: .mpy bytes of each module for xtensawin (ESP32) and armv6m (RP2040).
4. An ESP32 estimate: the 64-bit unix times x 20..50 (the brief's ratio for big-int-heavy MicroPython
   code on an ESP32 at 240 MHz against this x86 host); mpz uses 16-bit digits on 32-bit ports
   (32-bit on x86-64), so the 32-bit build (--micropython build/firmware/unix-x86/micropython
   --frozen, tools/build_firmware.py) is the better base when there is one.
--frozen: the binary has lib/ frozen in (tools/build_firmware.py): no .mpy files, MICROPYPATH=.frozen
(the timing and heap scripts still load from a temporary directory first).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VECTORS = ROOT / "host_tests" / "vectors"
MODULES = ("p256", "rsa")
ESP32_FACTOR = (20, 50)

TIMING = r"""
import time, gc, json, p256, rsa
from binascii import unhexlify as b
RUNS = %(runs)d
D = int("%(d)s", 16)
DIGEST = b("%(digest)s")
PUB = b("%(pub)s")
PUBC = b("%(pubc)s")
R, S = int("%(r)s", 16), int("%(s)s", 16)
RSA = %(rsa)s

def med(f):
    ts = []
    for _ in range(RUNS):
        gc.collect()
        t = time.ticks_us()
        f()
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    return ts[len(ts) // 2]

def comb():
    p256._comb = None
    p256._g_comb()

out = [("comb table (first use)", med(comb))]
out.append(("keygen", med(p256.keygen)))
out.append(("public", med(lambda: p256.public(D))))
out.append(("sign", med(lambda: p256.sign(D, DIGEST))))
assert p256.verify(PUB, DIGEST, R, S) and p256.verify(PUBC, DIGEST, R, S)
out.append(("verify", med(lambda: p256.verify(PUB, DIGEST, R, S))))
out.append(("verify (compressed key)", med(lambda: p256.verify(PUBC, DIGEST, R, S))))
for name, n, e, dg, sig, scheme in RSA:
    n = int(n, 16)
    dg, sig = b(dg), b(sig)
    f = rsa.verify_pkcs1 if scheme == "pkcs1" else rsa.verify_pss
    assert f(n, e, dg, sig)
    out.append((name, med(lambda: f(n, e, dg, sig))))
print(json.dumps(out))
"""

# one operation per compiled module; `ok` must end up True
OPS = {
    "import only": "ok = True",
    "keygen": "ok = len(p256.keygen()[1]) == 65",
    "public": "ok = len(p256.public(D)) == 65",
    "sign": "ok = p256.sign(D, DIGEST) == (R, S)",
    "verify": "ok = p256.verify(PUB, DIGEST, R, S)",
    "sign + verify": "ok = p256.verify(PUB, DIGEST, *p256.sign(D, DIGEST))",
}
OP_MODULE = """
import p256, rsa
D = %(d)s
DIGEST = %(digest)r
PUB = %(pub)r
R, S = %(r)s, %(s)s
N, E, RDIGEST, SIG = %(n)s, %(e)d, %(rdigest)r, %(sig)r
%(op)s
print("OK" if ok else "BAD")
"""


def inputs():
    v = json.loads((VECTORS / "p256_rfc6979.json").read_text())
    sig = v["signatures"][0]
    import hashlib
    uy = int(v["Uy"], 16)
    p = {"d": v["x"], "digest": hashlib.sha256(sig["message"].encode()).hexdigest(),
         "pub": "04" + v["Ux"] + v["Uy"], "pubc": ("03" if uy & 1 else "02") + v["Ux"], "r": sig["r"], "s": sig["s"]}
    keys = {k["key"]: k for k in json.loads((VECTORS / "rsa_sig.json").read_text())["keys"]}
    rsa = []
    for bits in (2048, 3072, 4096):
        k = keys["rsa%d" % bits]
        for scheme, case in (("pkcs1", "valid"), ("pss", "valid, salt 32")):
            c = [c for c in k["cases"] if c["name"] == case][0]
            rsa.append(("RSA-%d %s verify" % (bits, "PKCS#1" if scheme == "pkcs1" else "PSS"),
                        k["n"], k["e"], c["digest"], c["sig"], scheme))
    return p, rsa


def compile_to(dst, src, arch=None):
    cmd = [str(BIN / "mpy-cross")] + (["-march=" + arch] if arch else []) + ["-o", str(dst), str(src)]
    subprocess.run(cmd, check=True, capture_output=True)


def run(mp, path, code, heap=None):
    cmd = [mp] + (["-X", "heapsize=%dK" % heap] if heap else []) + ["-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, env={"MICROPYPATH": path}, timeout=300)


def smallest_heap(mp, path, module, lo=2, hi=256, tries=3):
    def passes(k):
        for _ in range(tries):
            p = run(mp, path, "import " + module, k)
            if p.returncode or p.stdout.strip() != "OK":
                return False
        return True
    if not passes(hi):
        return None
    while hi - lo > 1:  # lo fails (or is the floor), hi passes
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", default=str(BIN / "micropython"))
    ap.add_argument("--frozen", action="store_true", help="the binary has lib/ frozen in: no .mpy files")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-heap", action="store_true")
    ap.add_argument("--heap", type=int, help="heap size in K for the timing run (default: the binary's)")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench_crypto.json"))
    args = ap.parse_args()
    p, rsa_inputs = inputs()
    res = {"binary": args.micropython, "frozen": args.frozen}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mods = tmp / "mods"
        mods.mkdir()
        if not args.frozen:
            for m in MODULES:
                compile_to(mods / (m + ".mpy"), ROOT / "lib" / (m + ".py"))
        path = "%s:%s" % (mods, ".frozen")
        # 1. time
        (mods / "bench_time.py").write_text(TIMING % dict(p, runs=args.runs, rsa=repr(
            [(name, n, e, dg, sig, scheme) for name, n, e, dg, sig, scheme in rsa_inputs])))
        t = run(args.micropython, path, "import bench_time", args.heap)
        if t.returncode:
            sys.exit("timing run failed:\n" + t.stdout + t.stderr)
        res["time_us"] = dict(json.loads(t.stdout))
        # 2. heap
        if not args.no_heap:
            ops = dict(OPS)
            for name, n, e, dg, sig, scheme in rsa_inputs:
                ops[name] = "ok = rsa.%s(N, E, RDIGEST, SIG)" % ("verify_pkcs1" if scheme == "pkcs1" else "verify_pss")
            res["heap_k"] = {}
            for i, (name, op) in enumerate(ops.items()):
                rn = [r for r in rsa_inputs if r[0] == name] or [rsa_inputs[0]]
                _, n, e, dg, sig, _ = rn[0]
                src = tmp / ("op%d.py" % i)
                src.write_text(OP_MODULE % dict(
                    d="0x" + p["d"], digest=bytes.fromhex(p["digest"]), pub=bytes.fromhex(p["pub"]),
                    r="0x" + p["r"], s="0x" + p["s"], n="0x" + n, e=e, rdigest=bytes.fromhex(dg),
                    sig=bytes.fromhex(sig), op=op))
                compile_to(mods / ("op%d.mpy" % i), src)
                res["heap_k"][name] = smallest_heap(args.micropython, path, "op%d" % i)
        # 3. code size
        res["mpy_bytes"] = {}
        for arch in ("xtensawin", "armv6m"):
            for m in MODULES:
                compile_to(tmp / ("%s-%s.mpy" % (m, arch)), ROOT / "lib" / (m + ".py"), arch)
                res["mpy_bytes"]["%s.mpy %s" % (m, arch)] = (tmp / ("%s-%s.mpy" % (m, arch))).stat().st_size
    # table
    print("MicroPython: %s%s" % (args.micropython, " (frozen)" if args.frozen else " (.mpy)"))
    print("%-28s %12s %22s" % ("operation", "time (ms)", "ESP32 estimate (ms)"))
    for name, us in res["time_us"].items():
        print("%-28s %12.2f %12.0f - %5.0f" % (name, us / 1000, us * ESP32_FACTOR[0] / 1000,
                                               us * ESP32_FACTOR[1] / 1000))
    if "heap_k" in res:
        print("%-28s %12s" % ("smallest heap", "-X heapsize"))
        for name, k in res["heap_k"].items():
            print("%-28s %11sK" % (name, k if k else ">256"))
    for name, size in res["mpy_bytes"].items():
        print("%-28s %12d bytes" % (name, size))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
