# Hardware watchdog: the board resets when the firmware stops feeding it.
# The feeder() task feeds it from the event loop, so anything that stops the
# loop (a coroutine that never yields, a blocking call, a crash) stops the
# feeding, and then:
#   ESP32 / RP2040     machine.WDT is not fed within timeout_ms and the chip
#                      resets (RP2040: at most 8388 ms). Once started it cannot
#                      be stopped, not even by a soft reset.
#   Linux controller   the kernel watchdog device (board file "device", e.g.
#                      /dev/watchdog) gets one byte per feed. When the writes
#                      stop, the watchdog driver (the SoC's hardware watchdog,
#                      or softdog) reboots the board after ITS timeout, set in
#                      the kernel (driver parameter / device tree); this port
#                      has no ioctl to change it, so timeout_ms is informative.
#                      If the process dies the device closes without the magic
#                      "V" and stays armed: the board reboots too. Only stop()
#                      (a deliberate shutdown) writes "V" before closing.
#   unix simulator     no watchdog: feed() does nothing.
import asyncio
import sys
import log

_RP2_MAX_MS = 8388


class Watchdog:
    def __init__(self, timeout_ms=8000, device=None):
        self.timeout_ms = timeout_ms
        self.kind = "none"
        self._wdt = None
        self._dev = None
        self._byte = b"1"
        try:
            from machine import WDT
        except ImportError:
            WDT = None
        if WDT is not None:
            if sys.platform == "rp2" and timeout_ms > _RP2_MAX_MS:
                timeout_ms = self.timeout_ms = _RP2_MAX_MS
            self._wdt = WDT(timeout=timeout_ms)
            self.kind = "machine"
            log.info("watchdog", "hardware watchdog armed, %d ms" % timeout_ms)
        elif device:
            try:
                self._dev = open(device, "wb")
                self.kind = "device"
                log.info("watchdog", "kernel watchdog %s armed (the kernel sets its timeout)" % device)
            except OSError as e:
                log.exc("watchdog", "cannot open the watchdog device %s; running WITHOUT a watchdog" % device, e)
        else:
            log.info("watchdog", "no hardware watchdog on this board")

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()
        elif self._dev is not None:
            try:
                self._dev.write(self._byte)  # unbuffered; no flush(): fsync fails on devices
            except OSError as e:
                log.exc("watchdog", "writing the watchdog device failed; it will reset the board", e)
                self._dev = None

    def stop(self):
        # Deliberate shutdown only: disarms a Linux watchdog (magic close).
        # machine.WDT cannot be disarmed.
        if self._dev is not None:
            try:
                self._dev.write(b"V")
                self._dev.close()
            except OSError:
                pass
            self._dev = None
            log.info("watchdog", "kernel watchdog disarmed")


async def feeder(wd, period_ms):
    # Keep period_ms well below the timeout (a third or less): the feed
    # must survive the longest legitimate pause of the loop.
    while True:
        wd.feed()
        await asyncio.sleep_ms(period_ms)
