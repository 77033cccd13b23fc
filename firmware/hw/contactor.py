# A contactor driven by one output pin, optionally watched through its
# auxiliary (mirror) contact on an input pin. Pins are machine.Pin or LinuxPin:
# anything with value() / value(v).
#
# ok() is False when the feedback does not follow the command once settle_ms
# have passed since the last switching:
#   commanded open,   feedback closed -> the main contacts are welded
#   commanded closed, feedback open   -> the contactor does not close (coil
#                                        supply, wiring, or a tripped breaker)
# The station polls ok() and faults the connector while it is False.
import time
import log


class PinContactor:
    def __init__(self, out_pin, active=1, feedback_pin=None, feedback_active=1, settle_ms=200, cid=0):
        self._out = out_pin
        self._active = 1 if active else 0
        self._fb = feedback_pin
        self._fb_active = 1 if feedback_active else 0
        self._settle = settle_ms
        self._name = "connector %d: contactor" % cid if cid else "contactor"
        self._closed = False
        self._fault = False
        out_pin.value(self._active ^ 1)  # start open, whatever the pin did at reset
        self._since = time.ticks_ms()

    @property
    def closed(self):
        # The commanded state (what the station asked for).
        return self._closed

    def close(self):
        self._switch(True)

    def open(self):
        self._switch(False)

    def _switch(self, on):
        self._out.value(self._active if on else self._active ^ 1)
        if on != self._closed:
            self._closed = on
            self._since = time.ticks_ms()
            log.info("contactor", "%s %s" % (self._name, "closed, power on" if on else "open, power off"))

    def feedback(self):
        # True when the auxiliary contact says closed; None without one.
        if self._fb is None:
            return None
        return self._fb.value() == self._fb_active

    def ok(self):
        if self._fb is None:
            return True
        fb = self.feedback()
        if fb == self._closed or time.ticks_diff(time.ticks_ms(), self._since) < self._settle:
            if self._fault and fb == self._closed:
                self._fault = False
                log.info("contactor", "%s feedback agrees with the command again" % self._name)
            return True
        if not self._fault:
            self._fault = True
            if fb:
                log.error("contactor", "%s WELDED: opened %d ms ago but the feedback contact still "
                          "says closed; the vehicle may still be powered" % (self._name, self._settle))
            else:
                log.error("contactor", "%s DOES NOT CLOSE: no feedback %d ms after closing; check the "
                          "coil supply, the wiring and the breaker" % (self._name, self._settle))
        return False
