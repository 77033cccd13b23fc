# MicroPython side of test_x509.py's TLS case: a key made here, its CSR out
# (one JSON line), the certificate a CA made for it in (one JSON line: cert,
# ca, port), then a TLS connection that presents it with x509.ec_key_der.
import sys
import json
import binascii
import socket
import ssl
import p256
import x509

d, pub = p256.keygen()
print(json.dumps({"csr": x509.csr(d, pub, "CP-TLS-1", "Test CPO")}))
got = json.loads(sys.stdin.readline())
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=binascii.unhexlify(got["ca"]))
ctx.load_cert_chain(binascii.unhexlify(got["cert"]), x509.ec_key_der(d, pub))
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", got["port"])[0][-1])
s = ctx.wrap_socket(s, server_hostname="localhost")
s.write(b"ping\n")
print(json.dumps({"answer": s.read(5).decode()}))
s.close()
