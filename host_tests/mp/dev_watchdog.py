# Watchdog scenarios on the unix port:  dev_watchdog.py SCENARIO [DEVICE]
#   device  feeder every 50 ms into DEVICE (a FIFO), the loop hangs 700 ms
#           (a blocking call), feeding resumes, then a deliberate stop()
#   crash   feeds, then the firmware dies with an exception (no stop())
#   none    no device and no machine.WDT: a no-op that still has feed()
#   machine a machine.WDT (stand-in module) is used when the port has one
import sys
import json
import time
import asyncio

scenario = sys.argv[1]
out = {}

if scenario == "machine":
    class _WDT:
        made = []
        fed = 0

        def __init__(self, timeout=0):
            _WDT.made.append(timeout)

        def feed(self):
            _WDT.fed += 1

    class _Machine:
        WDT = _WDT

    sys.modules["machine"] = _Machine()

from hw.watchdog import Watchdog, feeder  # noqa: E402


async def hang_once(ms):
    await asyncio.sleep_ms(400)
    time.sleep_ms(ms)  # a coroutine that blocks the loop


async def main():
    if scenario == "device":
        wd = Watchdog(8000, sys.argv[2])
        out["kind"] = wd.kind
        task = asyncio.create_task(feeder(wd, 50))
        await hang_once(700)
        await asyncio.sleep_ms(300)
        task.cancel()
        wd.stop()
    elif scenario == "crash":
        wd = Watchdog(8000, sys.argv[2])
        asyncio.create_task(feeder(wd, 50))
        await asyncio.sleep_ms(200)
        print("RESULT " + json.dumps({"kind": wd.kind}))
        raise RuntimeError("firmware crashed")
    elif scenario == "none":
        wd = Watchdog(8000)
        wd.feed()
        task = asyncio.create_task(feeder(wd, 10))
        await asyncio.sleep_ms(50)
        task.cancel()
        out["kind"] = wd.kind
    elif scenario == "machine":
        wd = Watchdog(5000)
        task = asyncio.create_task(feeder(wd, 10))
        await asyncio.sleep_ms(55)
        task.cancel()
        out["kind"] = wd.kind
        out["timeouts"] = sys.modules["machine"].WDT.made
        out["fed"] = sys.modules["machine"].WDT.fed
    print("RESULT " + json.dumps(out))


asyncio.run(main())
