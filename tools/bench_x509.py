"""Speed, heap and code size of lib/der.py and lib/x509.py on the MicroPython unix port.

    python tools/bench_x509.py [--runs 7] [--no-frozen32]

Times (median of --runs in one process, ticks_us): parse an EC and an RSA-2048 leaf, check a
2-link chain (leaf <- intermediate <- root) of EC P-256 and of RSA-2048 certificates (signatures
included, parsing not), hash_data, csr (keygen apart; the ECDSA signature included). Heap: the
smallest -X heapsize (1K steps, 3 runs pass) for host_tests/mp/x509_budget.py (parse + both chains
+ hash_data + keygen + CSR). Both on the venv's port with the modules as .mpy (loaded into the
heap) and, when tools/build_firmware.py can build it, on the 32-bit port with lib/ frozen in (the
board's shape). Code size: .mpy bytes for xtensawin and armv6m. Certificates come from `cryptography`.
"""
import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tools"))
NOW = 1780000000

TIMING = r"""
import sys, time, x509, p256
d = sys.argv[1]
def raw(n):
    with open(d + "/" + n + ".der", "rb") as f:
        return f.read()
c = {}
for n in ("ec-root", "ec-sub", "ec-leaf", "rsa-root", "rsa-sub", "rsa-leaf"):
    c[n] = x509.Cert(raw(n))
k = p256.keygen()
ops = (("parse EC leaf", lambda: x509.Cert(c["ec-leaf"].der)), ("parse RSA leaf", lambda: x509.Cert(c["rsa-leaf"].der)),
       ("chain EC, 2 links", lambda: x509.chain([c["ec-leaf"], c["ec-sub"]], [c["ec-root"]], %(now)d)),
       ("chain RSA-2048, 2 links", lambda: x509.chain([c["rsa-leaf"], c["rsa-sub"]], [c["rsa-root"]], %(now)d)),
       ("hash_data", lambda: x509.hash_data(c["ec-leaf"], c["ec-sub"])),
       ("csr (with the signature)", lambda: x509.csr(k[0], k[1], "CP0001", "Example CPO")))
ops[2][1]()  # p256's tables are built on first use: not in the figures
for name, f in ops:
    ts = []
    for _ in range(%(runs)d):
        t0 = time.ticks_us()
        f()
        ts.append(time.ticks_diff(time.ticks_us(), t0))
    print(name + "\t" + " ".join(str(t) for t in ts))
"""


def make_pki(d):
    t0 = datetime.datetime(2025, 1, 1)
    keys, certs = {}, {}
    for kind in ("ec", "rsa"):
        for name, issuer in (("root", None), ("sub", "root"), ("leaf", "sub")):
            key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
            subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "%s %s" % (kind, name))])
            b = (x509.CertificateBuilder().subject_name(subj).public_key(key.public_key())
                 .issuer_name(certs[kind + issuer].subject if issuer else subj).serial_number(x509.random_serial_number())
                 .not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=3650))
                 .add_extension(x509.BasicConstraints(name != "leaf", None), critical=True))
            if name == "leaf":
                b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("cp.example.com")]), critical=False)
            keys[kind + name], certs[kind + name] = key, b.sign(keys[kind + issuer] if issuer else key, hashes.SHA256())
            (d / ("%s-%s.der" % (kind, name))).write_bytes(certs[kind + name].public_bytes(serialization.Encoding.DER))


def run(binary, path, args, heap=None, env=None):
    cmd = [str(binary)] + (["-X", "heapsize=%dK" % heap] if heap else []) + [str(a) for a in args]
    return subprocess.run(cmd, cwd=ROOT, env=dict(env or {}, MICROPYPATH=path), capture_output=True, text=True, timeout=300)


def smallest_heap(binary, path, certs, env=None):
    def ok(h):
        return all(run(binary, path, [ROOT / "host_tests/mp/x509_budget.py", certs, NOW], h, env).stdout == "ok\n"
                   for _ in range(3))

    lo, hi = 8, 256  # lo fails, hi passes
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-frozen32", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_pki(tmp)
        (tmp / "timing.py").write_text(TIMING % {"runs": args.runs, "now": NOW})
        mpy = tmp / "mpy"
        mpy.mkdir()
        for m in ("der", "x509", "p256", "rsa"):
            subprocess.run([BIN / "mpy-cross", "-march=x64", "-o", mpy / (m + ".mpy"), ROOT / "lib" / (m + ".py")], check=True)
        ports = [("64-bit unix, .mpy", BIN / "micropython", "%s:.frozen" % mpy, None)]
        if not args.no_frozen32:
            import build_firmware
            src, why = build_firmware.available("x86")
            if why:
                print("(no 32-bit frozen build: %s)" % why)
            else:
                b = build_firmware.build(arch="x86", src=src, log=lambda *a: None)
                ports.append(("32-bit unix, frozen", b["path"], ".frozen", b["env"]))
        for label, binary, path, env in ports:
            p = run(binary, path, [tmp / "timing.py", tmp], env=env)
            if p.returncode:
                sys.exit(p.stdout + p.stderr)
            print("%s:" % label)
            for line in p.stdout.splitlines():
                name, ts = line.split("\t")
                ts = [int(t) for t in ts.split()]
                print("  %-26s %9.2f ms  (fastest %.2f)" % (name, statistics.median(ts) / 1000, min(ts) / 1000))
            print("  %-26s %6sK" % ("smallest heap (budget run)", smallest_heap(binary, path, tmp, env)))
        for arch in ("xtensawin", "armv6m"):
            sizes = []
            for m in ("der", "x509"):
                out = tmp / ("%s-%s.mpy" % (m, arch))
                subprocess.run([BIN / "mpy-cross", "-march=" + arch, "-o", out, ROOT / "lib" / (m + ".py")], check=True)
                sizes.append("%s.mpy %d B" % (m, out.stat().st_size))
            print("%s: %s" % (arch, ", ".join(sizes)))


if __name__ == "__main__":
    main()
