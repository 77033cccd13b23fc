# The costs of the security extension's crypto on this port (tools/bench_signed.py):
#   signed_probe.py keygen              a new P-256 key pair (as certsign.request)
#   signed_probe.py csr                 key pair + the PKCS#10 CSR (x509.csr, signed by the key)
#   signed_probe.py verify FILE CASE    the firmware check of maintenance.FirmwareUpdate._verify:
#                                       SHA-256 of FILE in 1 KB blocks + maintenance.signature_ok
#                                       (CASE: a JSON file [key, base64 signature])
#   signed_probe.py sha FILE            the SHA-256 of FILE in 1 KB blocks alone
#   signed_probe.py maint               import maintenance only (the baseline of verify)
#   signed_probe.py none                nothing (the interpreter's own baseline)
# Prints "<op> ok <ms> ms" (the operation alone, imports included), or "<op> FAILED ...".
import sys
import time
import json
import gc

op = sys.argv[1]
gc.collect()
t = time.ticks_ms()
try:
    if op == "keygen":
        import p256
        d, pub = p256.keygen()
        ok = len(pub) == 65
    elif op == "csr":
        import p256
        import x509
        d, pub = p256.keygen()
        ok = x509.csr(d, pub, "CP001", "Test CPO").startswith("-----BEGIN CERTIFICATE REQUEST-----")
    elif op == "verify" or op == "sha":
        import hashlib
        import maintenance
        if op == "verify":
            with open(sys.argv[3]) as f:
                key, sig = json.load(f)
        h = hashlib.sha256()
        buf = bytearray(1024)
        mv = memoryview(buf)
        with open(sys.argv[2], "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(mv[:n])
        ok = maintenance.signature_ok(key, h.digest(), sig) if op == "verify" else len(h.digest()) == 32
    elif op == "maint":
        import hashlib
        import maintenance
        ok = True
    else:
        ok = True
    print("%s %s %d ms" % (op, "ok" if ok else "FAILED (wrong result)", time.ticks_diff(time.ticks_ms(), t)))
except MemoryError as e:
    print("%s FAILED MemoryError" % op)
