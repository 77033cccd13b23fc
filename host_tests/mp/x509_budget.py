# The heap a certificate operation needs (test_x509.py runs it under -X heapsize):
# parse an EC and an RSA-2048 2-link chain from DIR/*.der, check both, hash
# one, make a CSR with a new key. Prints "ok" and nothing else.
import sys
import gc
import x509

d = sys.argv[1]


def load(name):
    with open(d + "/" + name + ".der", "rb") as f:
        return x509.Cert(f.read())


for kind in ("ec", "rsa"):
    root = load(kind + "-root")
    assert x509.chain([load(kind + "-leaf"), load(kind + "-sub")], [root], int(sys.argv[2])) is root
    gc.collect()
x509.hash_data(load("ec-leaf"), load("ec-sub"))
import p256

d, pub = p256.keygen()
x509.csr(d, pub, "CP0001", "Example CPO")
print("ok")
