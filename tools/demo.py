"""`make run`: the firmware on the MicroPython unix port charges a simulated car
against the bundled dev CSMS, and the terminal shows what happens.

Boot, plug in, present a card, charge with meter values flowing, present the
card again to stop, unplug. Exits 0 when the CSMS has recorded the whole
session with every frame valid against the official OCPP 1.6 schemas.
"""
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host_tests"))
from conftest import Firmware  # noqa: E402
from dev_csms import DevCSMS  # noqa: E402

TAG = "04A2B3C4D5"


def say(text):
    print("\n==== " + text, flush=True)


def main():
    logging.basicConfig(level=logging.WARNING)
    csms = DevCSMS(heartbeat_interval=60)
    port = csms.start_in_thread()
    say("dev CSMS listening on ws://127.0.0.1:%d" % port)
    with tempfile.TemporaryDirectory() as data:
        fw = Firmware(Path(data), "ws://127.0.0.1:%d" % port, "DEMO-CP-1")
        # Show the firmware's own log lines as they come.
        fw.cmd.remove("--frames")
        import os
        os.environ["FW_ECHO"] = "1"
        fw.start()
        try:
            fw.wait_line(r"accepted this charge point")
            fw.send("set MeterValueSampleInterval 2")
            fw.wait_line(r"set MeterValueSampleInterval")
            say("a vehicle that will draw 16 A per phase plugs into connector 1")
            fw.send("load 1 16")
            fw.send("plug 1")
            fw.wait_line(r"connector 1: \w+ -> Preparing")
            say("the driver presents card %s" % TAG)
            fw.send("card 1 " + TAG)
            fw.wait_line(r"transaction started")
            csms.wait_for(lambda: csms.transactions and csms.transactions[1]["meterValues"][2:], 30,
                          "three meter values")
            say("the CSMS received %d meter values; the driver presents the card again"
                % len(csms.transactions[1]["meterValues"]))
            fw.send("card 1 " + TAG)
            fw.wait_line(r"transaction stopped")
            csms.wait_for(lambda: "meterStop" in csms.transactions[1], 20, "StopTransaction")
            say("the vehicle unplugs")
            fw.send("unplug 1")
            csms.wait_for(lambda: csms.status.get(("DEMO-CP-1", 1)) == "Available", 20, "Available")
        finally:
            fw.stop()
        tx = csms.transactions[1]
        say("the CSMS recorded transaction 1: idTag %s, meterStart %d Wh, meterStop %d Wh, %d meter values, "
            "reason %s" % (tx["idTag"], tx["meterStart"], tx["meterStop"], len(tx["meterValues"]), tx["reason"]))
        say("messages from the charge point: " + ", ".join(csms.actions()))
        csms.stop_thread()
        if csms.violations or fw.crashed() or tx["meterStop"] <= tx["meterStart"]:
            say("FAILED: %s" % (csms.violations or fw.crashed() or "no energy delivered"))
            return 1
        say("session complete, every frame valid against the OCPP 1.6 schemas")
        return 0


if __name__ == "__main__":
    sys.exit(main())
