# Safe mode after a boot loop in which "link" and "reader" crashed: the reader
# is left off, the OCPP link (essential) still starts.
import asyncio
import tasks


class MemStore:
    def __init__(self, boots):
        self.d = {"boots": boots}

    def load(self, name, default=None):
        return self.d.get(name, default)

    def save(self, name, value):
        self.d[name] = value


st = MemStore({"count": tasks.BOOT_LOOP_LIMIT, "crashed": ["link", "reader", "recovery"]})
print("disabled", tasks.boot_check(st))


async def part():
    print("started")


async def main():
    for name in ("link", "reader", "recovery"):
        t = tasks.guard(name, part)
        print(name, "running" if t else "left off")
        if t:
            await t


asyncio.run(main())
