# maintenance.signature_ok over cases written by host_tests/test_signed_update.py:
# [[name, key, base64 signature, hex SHA-256], ...] -> "name: True|False|<exception>" lines.
import sys
import json
import binascii
import maintenance

with open(sys.argv[1]) as f:
    cases = json.load(f)
for name, key, sig, digest in cases:
    try:
        got = maintenance.signature_ok(key, binascii.unhexlify(digest), sig)
    except Exception as e:
        got = type(e).__name__
    print("%s: %s" % (name, got))
