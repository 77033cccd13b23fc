# Modem identity on the unix port against the CPython AT-command simulator on a
# pty (or a silent pty):  dev_modem.py TTY
# Prints one JSON line: identify()'s result, its duration, the longest stall.
import sys
import json
import time
import asyncio
import dev_tty
from dev_tty import Ticker
from hw.modem import Modem


async def main(path):
    ticker = Ticker()
    await asyncio.sleep_ms(5)
    t = time.ticks_ms()
    ident = await Modem(dev_tty.uart(path)).identify()
    print("RESULT " + json.dumps({
        "uart": dev_tty.KIND, "ident": ident, "ms": time.ticks_diff(time.ticks_ms(), t),
        "stall_ms": ticker.worst, "ticks": ticker.ticks}))


asyncio.run(main(sys.argv[1]))
