# A guarded task that fails twice is restarted and finally completes; another
# task keeps running meanwhile.
import asyncio
from tasks import guard

runs = []
ticks = [0]


done = asyncio.Event()


async def flaky():
    runs.append(1)
    if len(runs) < 3:
        raise RuntimeError("sensor unplugged")
    print("flaky done after", len(runs), "runs")
    done.set()


async def ticker():
    while True:
        ticks[0] += 1
        await asyncio.sleep_ms(10)


async def main():
    asyncio.create_task(ticker())
    guard("flaky", flaky, 0)
    await asyncio.wait_for(done.wait(), 5)
    print("ticker alive", ticks[0] > 0)


asyncio.run(main())
