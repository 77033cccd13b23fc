# Vehicle plug detection from one input pin (a proximity/lock switch, or a
# control-pilot comparator output). `active` is the pin level that means
# "plugged". Debounced in time: a new level counts once it has been read the
# same for at least debounce_ms; shorter glitches are ignored. The pin is only
# read when plugged() is called (the station's poll), so a change is reported
# on the first call at least debounce_ms after it was first seen.
import time


class PinPlug:
    def __init__(self, pin, active=0, debounce_ms=50):
        self._pin = pin
        self._active = 1 if active else 0
        self._debounce = debounce_ms
        self._state = pin.value() == self._active  # at boot: take the level as it is
        self._candidate = self._state
        self._since = time.ticks_ms()

    def plugged(self):
        now = time.ticks_ms()
        level = self._pin.value() == self._active
        if level != self._candidate:
            self._candidate = level
            self._since = now
        elif level != self._state and time.ticks_diff(now, self._since) >= self._debounce:
            self._state = level
        return self._state
