# PN532 driver scenarios on the unix port, against the CPython PN532 simulator
# on a pty:  dev_pn532.py TTY POLLS GAP_MS [RETRY_MS]
# Polls POLLS times (GAP_MS apart), prints one JSON line with every poll's
# result, the time each poll took and the longest event-loop stall.
import sys
import json
import time
import asyncio
import dev_tty
from dev_tty import Ticker
from hw.pn532 import PN532


async def main(path, polls, gap, retry_ms):
    ticker = Ticker()
    await asyncio.sleep_ms(5)
    reader = PN532(dev_tty.uart(path), retry_ms=retry_ms)
    results = []
    slowest = 0
    t0 = time.ticks_ms()
    for _ in range(polls):
        t = time.ticks_ms()
        tag = await reader.poll()
        d = time.ticks_diff(time.ticks_ms(), t)
        slowest = max(slowest, d)
        results.append(tag)
        await asyncio.sleep_ms(gap)
    print("RESULT " + json.dumps({
        "uart": dev_tty.KIND, "tags": results, "slowest_poll_ms": slowest, "stall_ms": ticker.worst,
        "ticks": ticker.ticks, "ms": time.ticks_diff(time.ticks_ms(), t0), "firmware": reader.firmware}))


a = sys.argv
asyncio.run(main(a[1], int(a[2]), int(a[3]), int(a[4]) if len(a) > 4 else 10000))
