# MicroPython driver for host_tests/test_transfer.py and tools/bench.py: one
# lib/http.py or lib/ftp.py transfer against a real server, one line per fact.
#   transfer_probe.py get|put|post URL [options]       (ftp:// URLs: get = RETR, put = STOR)
# options: --buf N (default 1024)  --timeout S  --ca PEM  --out FILE (download to)
#          --in FILE (upload from)  --max N (the size check refuses more than N bytes)
#          --rewind (uploads may be sent again after a redirect)  --ticker (a 1 ms task beside)
#          --sinkfail (the sink raises OSError ENOSPC)  --cancel MS (the caller cancels the
#          transfer's task after MS ms)  --linger S (the loop runs S s more after the transfer)
# prints:  SIZE n|None (before any DATA)  DATA k (the first block)  DONE result bytes sha256 us
#          ERROR message code=N ms  OSERROR errno  CANCELLED  STALL longest_gap_us ticks
#          ALLOC bytes allocated per block, blocks  FDS open before, after  END
import asyncio
import binascii
import hashlib
import micropython
import os
import sys
import time
import http

args = sys.argv[1:]
op, url = args[0], args[1]
opt = {}
i = 2
while i < len(args):
    k = args[i][2:]
    if k in ("rewind", "ticker", "sinkfail"):
        opt[k] = True
    else:
        opt[k] = args[i + 1]
        i += 1
    i += 1

buf = bytearray(int(opt.get("buf", 1024)))
h = hashlib.sha256()
count = [0, 0]  # bytes, blocks
gap = [0, 0]  # longest ticker gap in us, ticks
stop = [False]


def hexd():
    return str(binascii.hexlify(h.digest()), "ascii")


async def ticker():
    # A 1 ms task beside the transfer: its longest gap shows how long the loop was blocked.
    t = time.ticks_us()
    while not stop[0]:
        await asyncio.sleep_ms(1)
        n = time.ticks_us()
        gap[0] = max(gap[0], time.ticks_diff(n, t))
        gap[1] += 1
        t = n


async def main():
    fds = len(os.listdir("/proc/self/fd"))
    kw = {"timeout": float(opt.get("timeout", 30))}
    ftp = url.startswith("ftp:")
    if ftp:
        import ftp as mod
    else:
        mod = http
        if "ca" in opt:
            import ws
            with open(opt["ca"]) as f:
                kw["ssl_context"] = ws.tls_context(ws.pem_to_der(f.read()))
    out = src = None
    if "out" in opt:
        out = open(opt["out"], "wb")
    if "in" in opt:
        src = open(opt["in"], "rb")

    def size(n):
        print("SIZE", n)
        if "max" in opt and (n is None or n > int(opt["max"])):
            raise http.TransferError("not enough room: %s bytes offered, %s free" % (n, opt["max"]))

    def sink(mv):
        if not count[1]:
            print("DATA", len(mv))
        if "sinkfail" in opt:
            raise OSError(28)
        h.update(mv)
        if out:
            out.write(mv)
        count[0] += len(mv)
        count[1] += 1

    def source(mv):
        k = src.readinto(mv)
        h.update(mv if k == len(mv) else mv[:k])
        count[0] += k
        count[1] += 1
        return k

    async def transfer():
        if op == "get":
            return await mod.download(url, buf, sink, size, **kw)
        if ftp:
            return await mod.upload(url, buf, source, **kw)
        rw = (lambda: src.seek(0)) if "rewind" in opt else None
        return await mod.upload(url, buf, source, os.stat(opt["in"])[6], method=op.upper(), rewind=rw, **kw)

    tk = asyncio.create_task(ticker()) if "ticker" in opt else None
    await asyncio.sleep_ms(5)
    a0 = micropython.mem_total()
    t0, u0 = time.ticks_ms(), time.ticks_us()
    try:
        if "cancel" in opt:
            task = asyncio.create_task(transfer())
            await asyncio.sleep_ms(int(opt["cancel"]))
            task.cancel()
            r = await task
        else:
            r = await transfer()
        print("DONE", r, count[0], hexd(), "us", time.ticks_diff(time.ticks_us(), u0))
    except http.TransferError as e:
        print("ERROR", e, "code=%d" % e.code, "ms", time.ticks_diff(time.ticks_ms(), t0))
    except OSError as e:
        print("OSERROR", e.args[0])
    except asyncio.CancelledError:
        print("CANCELLED")
    a1 = micropython.mem_total()
    stop[0] = True
    if tk:
        await tk
        print("STALL", gap[0], gap[1])
    if count[1]:
        print("ALLOC", (a1 - a0) // count[1], count[1])
    if out:
        out.close()
    if src:
        src.close()
    await asyncio.sleep(float(opt.get("linger", 0.02)))  # no stray cancel from the watchdog meanwhile
    print("FDS", fds, len(os.listdir("/proc/self/fd")))
    print("END")


asyncio.run(main())
