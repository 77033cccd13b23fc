"""The costs of the security extension's crypto on the MicroPython unix port (issue #13):

    python tools/bench_signed.py [--runs 3] [--no-frozen32]

- time of a P-256 key generation, of a CSR (key generation + x509.csr, signed by the key),
  and of the firmware signature check over a 1 MB file (its SHA-256 streamed from the file in
  1 KB blocks, then RSA-2048 PSS or ECDSA P-256 verification: maintenance.signature_ok), as
  host_tests/mp/signed_probe.py measures them (median of --runs);
- the smallest -X heapsize each passes with, the modules loaded as .mpy (x64, as `make deploy`
  gives a board), next to that of nothing and of importing maintenance.py alone;
- the same on the 32-bit unix port with the firmware frozen in (tools/build_firmware.py --arch x86,
  cached), the real target's shape, unless --no-frozen32;
- the .mpy size (xtensawin) of the modules these operations load.
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "host_tests"))
import build_mpy  # noqa: E402
import pki  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

MICROPYTHON = str(Path(sys.executable).parent / "micropython")
PROBE = "host_tests/mp/signed_probe.py"
MODULES = ("lib/p256.py", "lib/rsa.py", "lib/der.py", "lib/x509.py", "firmware/ocpp/v16/certsign.py",
           "firmware/ocpp/signedfw.py", "firmware/certs.py")


def run(mpy, op, *args, heap=None):
    # mpy: the .mpy tree for the venv's port, or (binary,) for a build with the firmware frozen in
    binary, path = (mpy[0], ".frozen") if isinstance(mpy, tuple) else (MICROPYTHON, "%s:.frozen" % mpy)
    cmd = [binary] + (["-X", "heapsize=%d" % heap] if heap else []) + [str(ROOT / PROBE), op] + list(args)
    env = dict(os.environ, MICROPYPATH=path)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout.strip().splitlines()
    last = out[-1] if out else p.stderr.strip()[-200:]
    if p.returncode == 0 and " ok " in last:
        return int(last.split()[-2])
    return None


def smallest_heap(mpy, op, *args):
    lo, hi = 2 * 1024, 512 * 1024  # lo fails, hi passes
    if run(mpy, op, *args, heap=hi) is None:
        return None
    while hi - lo > 1024:
        mid = (lo + hi) // 2 // 512 * 512
        if run(mpy, op, *args, heap=mid) is None:
            lo = mid
        else:
            hi = mid
    return hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-frozen32", action="store_true", help="skip the 32-bit frozen build")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        total, sizes, failed = build_mpy.build("x64", tmp / "mpy")
        assert not failed, failed
        mpy = tmp / "mpy" / "x64"
        data = os.urandom(1024 * 1024)
        (tmp / "fw.bin").write_bytes(data)
        maker = pki.root("Maker", "rsa3072")
        rsa_signer, ec_signer = pki.leaf("rsa", maker, "rsa2048"), pki.leaf("ec", maker, "ec")
        n = rsa_signer.key.public_key().public_numbers()
        point = ec_signer.key.public_key().public_bytes(serialization.Encoding.X962,
                                                        serialization.PublicFormat.UncompressedPoint).hex()
        cases = {"rsa": (["rsa", "%x" % n.n, n.e], pki.sign_file(rsa_signer.key, data, 32)),
                 "ec": (["ec", point], pki.sign_file(ec_signer.key, data))}
        for k, (key, sig) in cases.items():
            (tmp / (k + ".json")).write_text(json.dumps([key, base64.b64encode(sig).decode()]))
        ops = [("nothing (the interpreter)", "none", ()), ("import maintenance (verify's base)", "maint", ()),
               ("P-256 key generation", "keygen", ()),
               ("CSR (key generation + x509.csr)", "csr", ()),
               ("1 MB file: SHA-256 alone", "sha", (str(tmp / "fw.bin"),)),
               ("1 MB file: SHA-256 + RSA-2048 PSS", "verify", (str(tmp / "fw.bin"), str(tmp / "rsa.json"))),
               ("1 MB file: SHA-256 + ECDSA P-256", "verify", (str(tmp / "fw.bin"), str(tmp / "ec.json")))]
        ports = [("64-bit unix port, .mpy", mpy)]
        if not args.no_frozen32:
            import build_firmware
            try:
                binary = build_firmware.build(arch="x86", log=lambda t: None)["path"]
                ports.append(("32-bit unix port, frozen", (binary,)))
            except (build_firmware.Unavailable, build_firmware.BuildFailed) as e:
                print("(no 32-bit frozen build: %s)" % str(e).splitlines()[0])
        for title, where in ports:
            print("%-36s %10s %12s" % (title, "median ms", "min heap"))
            for label, op, a in ops:
                times = [run(where, op, *a) for _ in range(args.runs)]
                if None in times:
                    print("%-36s FAILED" % label)
                    continue
                heap = smallest_heap(where, op, *a)
                print("%-36s %10d %11dK" % (label, statistics.median(times), heap // 1024 if heap else -1))
            print()
        _, sizes, _ = build_mpy.build("xtensawin", tmp / "mpy")
        shown = {m: sizes.get(m) for m in MODULES}
        print(".mpy (xtensawin) of the modules loaded on demand:")
        for m, s in shown.items():
            print("%7s  %s" % (s if s is not None else "-", m))
        print("%7d  total" % sum(s for s in shown.values() if s))


if __name__ == "__main__":
    main()
