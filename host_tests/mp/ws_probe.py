# MicroPython driver for host_tests/test_ws.py: runs lib/ws.py against a real
# server and prints one line per event for the test to assert on.
#   ws_probe.py URL [options] STEP...
# options: --ca PEM  --cert PEM --key PEM  --auth USER:PASS  --proto A,B  --max N  --timeout S
#          --linger S (after a failed connect: wait, then print open file descriptor counts)
# steps:   send:TEXT  sendn:N (N-byte text)  sendu (non-ASCII text)  sendb:HEX  recv  recvall
#          ping  sleep:S  close[:CODE[:REASON]]  bgclose (close() while another task is in recv())
#          conc:TASKS:COUNT:SIZE (concurrent senders, server pings answered meanwhile)
#          sendp:N (one text message from N pieces via send_parts, the last non-ASCII)
#          sendchanging (send_parts whose pieces differ between its two passes)
#          fill:N (hold all but about N bytes of the heap, so big frames must go in chunks)  free
import sys
import asyncio
import hashlib
import os
import socket
import binascii
import time
import ws

UNI = "h\u00e9\u20ac\U0001f600 ocpp"


def digest(b):
    return str(binascii.hexlify(hashlib.sha1(b).digest())[:12], "ascii")


def show(m, w):
    if m is None:
        print("RECV None", w.close_code, repr(w.close_reason), "closed" if w.closed else "open")
    elif isinstance(m, str):
        print("RECV str", len(m.encode()), digest(m.encode()), m if len(m) <= 40 else "")
    else:
        print("RECV bytes", len(m), digest(m))


def nfds():
    return len(os.listdir("/proc/self/fd"))


def pem(path):
    with open(path) as f:
        return ws.pem_to_der(f.read())


async def step(w, s):
    cmd, _, arg = s.partition(":")
    if cmd == "send":
        await w.send(arg)
    elif cmd == "sendn":
        await w.send("0123456789abcdef" * (int(arg) // 16) + "x" * (int(arg) % 16))
    elif cmd == "sendu":
        await w.send(UNI)
    elif cmd == "fill":
        import gc
        gc.collect()
        global _ballast
        _ballast = []
        while gc.mem_free() > int(arg) + 2048:
            _ballast.append(bytearray(1024))
    elif cmd == "sendchanging":
        calls = []

        def parts():
            calls.append(1)
            yield "x" * (100 * len(calls))
        await w.send_parts(parts)
    elif cmd == "free":
        _ballast.clear()
    elif cmd == "sendp":
        n = int(arg)
        await w.send_parts(lambda: (("piece-%d;" % i) if i < n - 1 else UNI for i in range(n)))
    elif cmd == "sendb":
        await w.send(binascii.unhexlify(arg))
    elif cmd == "recv":
        show(await w.recv(), w)
    elif cmd == "recvall":
        while True:
            m = await w.recv()
            show(m, w)
            if m is None:
                break
    elif cmd == "ping":
        await w.ping(b"probe")
    elif cmd == "sleep":
        await asyncio.sleep(float(arg))
    elif cmd == "close":
        a = arg.split(":", 1)
        t = time.ticks_ms()
        await w.close(int(a[0]) if a[0] else 1000, a[1] if len(a) > 1 else "")
        print("CLOSED", w.closed, "ms", time.ticks_diff(time.ticks_ms(), t))
    elif cmd == "bgclose":
        async def reader():
            show(await w.recv(), w)
        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)
        t = time.ticks_ms()
        await w.close(1000, "bye")
        print("CLOSED", w.closed, "ms", time.ticks_diff(time.ticks_ms(), t))
        await asyncio.wait_for(task, 1)
    elif cmd == "conc":
        # a small send buffer (Linux SO_SNDBUF = 7) makes writes partial: frames queue in drain()
        w._s.s.setsockopt(socket.SOL_SOCKET, 7, 4096)
        n, count, size = [int(x) for x in arg.split(":")]
        async def sender(k):
            body = chr(65 + k) * size
            for j in range(count):
                await w.send(body)
        async def reader():  # answers the server's pings meanwhile
            while await w.recv() is not None:
                pass
        r = asyncio.create_task(reader())
        await asyncio.gather(*[sender(k) for k in range(n)])
        print("SENT", n * count)
        await w.close()
        await asyncio.wait_for(r, 2)
        print("CLOSED", w.closed, w.close_code)


async def main(argv):
    url, kw, steps, ca, cert, key, linger = argv[0], {}, [], None, None, None, 0
    i = 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            v = argv[i + 1]
            i += 1
            if a == "--ca":
                ca = pem(v)
            elif a == "--cert":
                cert = pem(v)[0]
            elif a == "--key":
                key = pem(v)[0]
            elif a == "--auth":
                kw["auth"] = tuple(v.split(":", 1))
            elif a == "--proto":
                kw["protocols"] = tuple(p for p in v.split(",") if p)
            elif a == "--max":
                kw["max_size"] = int(v)
            elif a == "--timeout":
                kw["timeout"] = float(v)
            elif a == "--linger":
                linger = float(v)
        else:
            steps.append(a)
        i += 1
    if ca is not None or cert is not None:
        kw["ssl_context"] = ws.tls_context(ca, cert, key)
    fds = nfds()
    t0 = time.ticks_ms()
    try:
        w = await ws.connect(url, **kw)
    except ws.WSError as e:
        print("WSERROR", e, "after_ms", time.ticks_diff(time.ticks_ms(), t0))
        if linger:  # keep the loop running a while, then count open sockets
            n = nfds()
            await asyncio.sleep(linger)
            print("FDS", fds, n, nfds())
        return
    print("CONNECTED", w.protocol)
    for s in steps:
        try:
            await step(w, s)
        except ws.WSError as e:
            print("WSERROR", e, "closed" if w.closed else "open")
    print("END closed" if w.closed else "END open")


asyncio.run(main(sys.argv[1:]))
