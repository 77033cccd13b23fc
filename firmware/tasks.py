# Long-lived tasks that survive their own failures (the seed station's
# uncaughtException handler, done per task).
import asyncio
import gc
import log

RESTART_DELAY = 5  # seconds


def guard(name, start, delay=RESTART_DELAY):
    # Runs start() as a task; if it raises it is logged and started again, so
    # one failing part never takes the charge point down.
    async def keep():
        while True:
            try:
                await start()
                return
            except Exception as e:
                log.exc("tasks", "task %s failed, restarting it in %d s" % (name, delay), e)
                gc.collect()
                await asyncio.sleep(delay)
    return asyncio.create_task(keep())
