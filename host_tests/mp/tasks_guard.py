# A guarded task that fails twice is restarted and finally completes; another
# task keeps running meanwhile.
import asyncio
from tasks import guard

runs = []
ticks = [0]


async def flaky():
    runs.append(1)
    if len(runs) < 3:
        raise RuntimeError("sensor unplugged")
    print("flaky done after", len(runs), "runs")


async def ticker():
    while True:
        ticks[0] += 1
        await asyncio.sleep_ms(10)


async def main():
    asyncio.create_task(ticker())
    t = guard("flaky", flaky, 0)
    await t
    print("ticker alive", ticks[0] > 0)


asyncio.run(main())
