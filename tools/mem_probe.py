"""What the firmware holds and allocates per connector, per transaction and per message,
on the 32-bit unix port with the firmware frozen in (tools/build_firmware.py).

    python tools/mem_probe.py [--arch x86|x64] [--out build/mem_probe.json]

Live heap: gc.mem_alloc() after gc.collect() (console `mem`). Allocated: the growth of
micropython.mem_total() (bytes allocated since start, garbage included), from the same
`mem` line, less what the idle firmware allocates over the same time (meter polling,
the loop), measured just before. Default heap; against the dev CSMS over ws://.

1. Per connector: live heap after boot (boot statuses in, 2 s settled) with 1 to 4
   connectors (copies of the unix board file in build/mem_probe/).
2. Per transaction: live heap with connector 1 plugged, during a transaction
   (StartTransaction answered, 2 s later), after it stopped and unplugged, and after each
   of 3 more short transactions with new cards (what stays: the authorization cache).
3. Per message (allocated): Heartbeat (console `heartbeat 20`), MeterValues during a
   transaction (MeterValueSampleInterval 1 against 0, 4 measurands), GetConfiguration of
   every key, TriggerMessage(StatusNotification) with the StatusNotification it sends.
4. The transaction queue offline: live heap growth per MeterValues queued in flash
   while the CSMS is down (the entries the outbox keeps in RAM).
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))
sys.path.insert(0, str(ROOT / "tools"))

import build_firmware  # noqa: E402
from conftest import Firmware  # noqa: E402
from dev_csms import DevCSMS  # noqa: E402
from ocpp.v16 import call  # noqa: E402

OUT = ROOT / "build" / "mem_probe"
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"


class Probe:
    def __init__(self, build, board_dir="boards/unix"):
        self.csms = DevCSMS(heartbeat_interval=300)
        self.csms.start_in_thread()
        self.fw = Firmware(tempfile.mkdtemp(dir=OUT), "ws://127.0.0.1:%d" % self.csms.port, board=str(board_dir),
                           main=build["main"], micropypath=".frozen", micropython=build["path"], frames=False,
                           env=build["env"])

    def boot(self, statuses):
        self.fw.start()
        self.fw.wait_line(r"accepted this charge point")
        self.csms.wait_for(lambda: len(self.csms.calls("StatusNotification")) >= statuses, 10, "boot statuses")

    def mem(self):
        """-> (live bytes, bytes allocated since start, time)"""
        self.fw.send("mem")
        line = self.fw.wait_line(r"memory: \d+ bytes in use")
        m = re.search(r"memory: (\d+) bytes in use, \d+ free, (\d+) allocated", line)
        return int(m.group(1)), int(m.group(2)), time.time()

    def set(self, key, value):
        self.fw.send("set %s %s" % (key, value))
        self.fw.wait_line(r"set %s: Accepted" % key)

    def idle_rate(self, seconds=3.0):
        """Bytes the firmware allocates per second with nothing happening."""
        a = self.mem()
        time.sleep(seconds)
        b = self.mem()
        return (b[1] - a[1]) / (b[2] - a[2])

    def allocated(self, action, rate, n=1):
        """Bytes allocated by action() beyond the idle rate, per one of n."""
        a = self.mem()
        action()
        b = self.mem()
        return round(((b[1] - a[1]) - rate * (b[2] - a[2])) / n)

    def stop(self):
        self.fw.stop()
        self.csms.stop_thread()

    def tx_id(self, connector):
        ids = [t for t, tx in self.csms.transactions.items() if tx["connector"] == connector]
        return max(ids) if ids else None


def board_with(n):
    """boards/unix/board.json with n connectors, in build/mem_probe/board-<n>/."""
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    board["connectors"] = [board["connectors"][0]] * n
    board["config"]["NumberOfConnectors"] = n
    d = OUT / ("board-%d" % n)
    d.mkdir(parents=True, exist_ok=True)
    (d / "board.json").write_text(json.dumps(board))
    return d


def per_connector(build, log):
    live = {}
    for n in (1, 2, 3, 4):
        p = Probe(build, board_with(n))
        try:
            p.boot(n + 1)
            time.sleep(2)
            live[n] = p.mem()[0]
        finally:
            p.stop()
        log("  %d connector(s): live %d B" % (n, live[n]))
    return {"live": live, "per_connector": round((live[4] - live[1]) / 3)}


def session(build, log):
    out = {}
    p = Probe(build)
    csms, fw = p.csms, p.fw
    try:
        p.boot(3)
        time.sleep(1)
        rate = p.idle_rate()
        out["idle_alloc_per_s"] = round(rate)
        out["live_idle"] = p.mem()[0]
        out["heartbeat"] = p.allocated(lambda: [fw.send("heartbeat 20")] + [
            fw.wait_line(r"heartbeat round trip") for _ in range(20)], rate, 20)
        out["get_configuration"] = p.allocated(lambda: csms.run_call("CP001", call.GetConfiguration()), rate)

        def trigger():
            for _ in range(10):
                n = len(csms.calls("StatusNotification"))
                csms.run_call("CP001", call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
                csms.wait_for(lambda: len(csms.calls("StatusNotification")) > n, 10, "triggered status")
        out["trigger_status"] = p.allocated(trigger, rate, 10)

        # A transaction on connector 1.
        p.set("MeterValueSampleInterval", 0)
        assert csms.run_call("CP001", call.ChangeConfiguration(key="MeterValuesSampledData",
                                                               value=MEASURANDS)).status == "Accepted"
        fw.send("load 1 16")
        fw.send("plug 1")
        fw.wait_line(r"connector 1: Available -> Preparing")
        time.sleep(1)
        out["live_plugged"] = p.mem()[0]
        fw.send("card 1 04A2B3C4D5")
        csms.wait_for(lambda: p.tx_id(1), 10, "StartTransaction")
        time.sleep(2)
        out["live_transaction"] = p.mem()[0]
        tx_rate = p.idle_rate(4)  # charging, no MeterValues
        out["charging_alloc_per_s"] = round(tx_rate)
        p.set("MeterValueSampleInterval", 1)
        n0 = len(csms.calls("MeterValues"))
        a = p.mem()
        time.sleep(8)
        b = p.mem()
        sent = len(csms.calls("MeterValues")) - n0
        out["meter_values"] = round(((b[1] - a[1]) - tx_rate * (b[2] - a[2])) / max(sent, 1))
        out["meter_values_sent"] = sent

        # Offline: the queue grows in flash; what stays in RAM per entry.
        csms.stop_thread()
        fw.wait_line(r"connection to the CSMS lost")
        time.sleep(1)
        q0 = p.mem()
        time.sleep(10)
        q1 = p.mem()
        host, port, ssl = csms._listen
        csms.start_in_thread(host, csms.port, ssl)
        fw.wait_line(r"link: connected", 30)
        time.sleep(3)
        # The MeterValues sampled between the two `mem`s, delivered after the reconnect.
        window = (datetime.fromtimestamp(q0[2], timezone.utc), datetime.fromtimestamp(q1[2], timezone.utc))
        stamps = [datetime.fromisoformat(mv["meterValue"][0]["timestamp"].replace("Z", "+00:00"))
                  for _, _, mv in csms.calls("MeterValues")]
        queued = len([t for t in stamps if window[0] <= t <= window[1]])
        q0, q1 = q0[0], q1[0]
        out["offline_queued"] = queued
        out["offline_live_growth"] = q1 - q0
        out["per_queued_entry"] = round((q1 - q0) / max(queued, 1))
        p.set("MeterValueSampleInterval", 0)
        fw.send("card 1 04A2B3C4D5")
        csms.wait_for(lambda: "meterStop" in csms.transactions[p.tx_id(1)], 15, "StopTransaction")
        fw.send("unplug 1")
        fw.wait_line(r"connector 1: \w+ -> Available")
        time.sleep(1)
        out["live_after"] = p.mem()[0]
        out["per_transaction"] = out["live_transaction"] - out["live_plugged"]
        # More short transactions with other cards: does what stays after one grow?
        out["live_after_each"] = [out["live_after"]]
        for i in range(3):
            fw.send("plug 1")
            fw.wait_line(r"connector 1: Available -> Preparing")
            tag = "CARD%06d" % i
            fw.send("card 1 " + tag)
            csms.wait_for(lambda: [t for t in csms.transactions.values() if t["idTag"] == tag], 10, "start")
            time.sleep(1)
            fw.send("card 1 " + tag)
            csms.wait_for(lambda: "meterStop" in csms.transactions[p.tx_id(1)], 15, "StopTransaction")
            fw.send("unplug 1")
            fw.wait_line(r"connector 1: \w+ -> Available")
            time.sleep(1)
            out["live_after_each"].append(p.mem()[0])
    finally:
        p.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x86")
    ap.add_argument("--out", default=str(OUT / "mem_probe.json"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        build = build_firmware.build(arch=args.arch)
    except (build_firmware.Unavailable, build_firmware.BuildFailed) as e:
        print("mem_probe: no frozen build: %s" % e, file=sys.stderr)
        return 2
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "build": os.path.relpath(build["path"], ROOT)}
    log = lambda t: print(t, flush=True)  # noqa: E731
    log("per connector (%s)" % res["build"])
    res["connectors"] = per_connector(build, log)
    log("  -> %d B per connector" % res["connectors"]["per_connector"])
    log("session")
    res["session"] = s = session(build, log)
    log("  live: idle %d, plugged %d, in a transaction %d (+%d), after it %d B" % (
        s["live_idle"], s["live_plugged"], s["live_transaction"], s["per_transaction"], s["live_after"]))
    log("  allocated per message: Heartbeat %d B, MeterValues %d B (%d sent, 4 measurands), GetConfiguration %d B, "
        "TriggerMessage+StatusNotification %d B; idle %d B/s, charging %d B/s" % (
            s["heartbeat"], s["meter_values"], s["meter_values_sent"], s["get_configuration"], s["trigger_status"],
            s["idle_alloc_per_s"], s["charging_alloc_per_s"]))
    log("  live after each of 4 transactions (other cards): %s B" % ", ".join(map(str, s["live_after_each"])))
    log("  offline: %d MeterValues queued, live heap +%d B (%d B per entry)" % (
        s["offline_queued"], s["offline_live_growth"], s["per_queued_entry"]))
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
