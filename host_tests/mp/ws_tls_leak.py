# A failed TLS handshake leaves no socket open: argv[1] is a wss:// URL, argv[2]
# a CA that did not sign the server's certificate (DER).
import sys
import os
import asyncio
import ws


def fds():
    return len(os.listdir("/proc/self/fd"))


async def main():
    with open(sys.argv[2], "rb") as f:
        ctx = ws.tls_context([f.read()])
    before = fds()
    for _ in range(3):
        try:
            await ws.connect(sys.argv[1], ssl_context=ctx, timeout=5)
            print("connected?!")
        except ws.WSError as e:
            print("refused:", e)
    print("open descriptors before %d after %d" % (before, fds()))


asyncio.run(main())
