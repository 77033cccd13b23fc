# Linux GPIO, contactor and plug scenarios on the unix port, on real files:
#   dev_gpio.py sysfs ROOT                 ROOT laid out like /sys/class/gpio
#   dev_gpio.py contactor COIL FB ACTIVE FB_ACTIVE
#                                          COIL/FB: file paths, or gpio numbers
#                                          (then ROOT is read from $GPIO_ROOT)
#   dev_gpio.py plug FILE
# Prints log lines and one "RESULT {json}" line.
import sys
import os
import json
import time
from hw.linux_gpio import LinuxPin

a = sys.argv
out = {}


def spec(s):
    if s.isdigit():
        return {"gpio": int(s), "sysfs": os.getenv("GPIO_ROOT")}
    return {"path": s}


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


if a[1] == "sysfs":
    root = a[2]
    # gpio17: not exported yet; an output that must start low
    p17 = LinuxPin({"gpio": 17, "sysfs": root}, "out", value=0)
    out["p17_first"] = p17.value()
    p17.value(1)
    out["p17_after"] = p17.value()
    # gpio18: active-low output, not exported; logical 0 at start = high level
    p18 = LinuxPin({"gpio": 18, "sysfs": root, "active_low": True}, "out", value=0)
    p18.value(1)
    # gpio5: exported already, direction "in"
    p5 = LinuxPin({"gpio": 5, "sysfs": root}, "in")
    seen = [p5.value()]
    put(root + "/gpio5/value", "1\n")
    seen.append(p5.value())
    put(root + "/gpio5/value", "0\n")
    seen.append(p5.value())
    out["p5"] = seen
    try:
        p5.value(1)
        out["input_write"] = "accepted"
    except ValueError:
        out["input_write"] = "refused"
    # gpio6: exported as an input, wanted as an output without a first level
    LinuxPin({"gpio": 6, "sysfs": root}, "out")
    # a relay attribute written like controlRelay(path, state)
    relay = LinuxPin({"path": root + "/relay1"}, "out")
    relay.value(1)
    out["relay"] = relay.value()
    # gpio99: the export never shows up (no such line)
    t = time.ticks_ms()
    try:
        LinuxPin({"gpio": 99, "sysfs": root}, "in")
        out["p99"] = "opened"
    except OSError as e:
        out["p99"] = str(e)
    out["p99_ms"] = time.ticks_diff(time.ticks_ms(), t)
    try:
        LinuxPin({"path": root + "/nowhere/value"}, "in")
    except OSError as e:
        out["missing"] = str(e)

elif a[1] == "contactor":
    from hw.contactor import PinContactor
    active, fb_active = int(a[4]), int(a[5])
    coil = LinuxPin(spec(a[2]), "out", value=0 if active else 1)
    fb = LinuxPin(spec(a[3]), "in")
    k = PinContactor(coil, active, fb, fb_active, settle_ms=150, cid=1)
    steps = []

    def step(name):
        steps.append([name, k.closed, k.feedback(), k.ok()])

    step("start")
    k.close()
    step("closing")
    time.sleep_ms(300)
    step("closed")
    step("closed again")
    k.open()
    step("opening")
    time.sleep_ms(300)
    step("open")
    step("open again")
    out["steps"] = steps

elif a[1] == "plug":
    from hw.plug import PinPlug
    path = a[2]
    put(path, "1")  # active-low input: 1 = nothing plugged
    plug = PinPlug(LinuxPin({"path": path}, "in"), active=0, debounce_ms=50)
    seen = []

    def sample(label, ms, every=5):
        # call plugged() every `every` ms for `ms` ms; record each distinct answer
        end = time.ticks_add(time.ticks_ms(), ms)
        first = None
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            v = plug.plugged()
            if v and first is None:
                first = time.ticks_ms()
            time.sleep_ms(every)
        seen.append([label, plug.plugged()])
        return first

    sample("idle", 30)
    for _ in range(3):  # contact bounce while plugging in: 10 ms pulses
        put(path, "0")
        sample("bounce low", 10)
        put(path, "1")
        sample("bounce high", 10)
    put(path, "0")
    t0 = time.ticks_ms()
    first = sample("settled low", 120)
    out["plug_delay_ms"] = time.ticks_diff(first, t0) if first else None
    put(path, "1")  # a 20 ms glitch
    sample("glitch", 20)
    put(path, "0")
    sample("after glitch", 60)
    put(path, "1")  # unplugged for good
    sample("unplugged", 120)
    out["seen"] = seen

print("RESULT " + json.dumps(out))
