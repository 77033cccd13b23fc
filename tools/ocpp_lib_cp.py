"""A minimal OCPP 1.6 charge point on the mobilityhouse `ocpp` library (CPython):
the yardstick tools/bench.py measures the firmware's answer times against.

    python tools/ocpp_lib_cp.py --csms ws://127.0.0.1:9000 --cp LIB001 [--config keys.json] [--connectors 2]

It keeps to what the bench times, with no hardware, station model or flash
behind it: BootNotification first, then a StatusNotification per connector;
answers GetConfiguration (every key, or the ones asked for, from --config: the
firmware's own GetConfiguration answer, so both send the same payload),
RemoteStartTransaction / RemoteStopTransaction (Accepted for a free connector /
a running transaction, then StartTransaction / StopTransaction and a
StatusNotification) and TriggerMessage (Heartbeat, StatusNotification: the
message goes out after the confirmation). The library runs an @after handler
whatever the answer was, so each acts only on what its @on handler accepted.
Like the firmware, the library checks every incoming and outgoing payload
against the official schemas.

Commands on standard input, as the firmware's console: `heartbeat <n>` sends n
Heartbeats one after another and prints each round trip ("heartbeat round trip
N us"); `quit` ends it. Prints "accepted this charge point" once booted.
"""
import argparse
import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(text):
    print(time.strftime("%H:%M:%S ") + text, flush=True)


class LibChargePoint(ChargePoint):
    def __init__(self, cp_id, conn, config, connectors):
        super().__init__(cp_id, conn)
        self.config = config  # [{"key": ..., "readonly": ..., "value": ...}]
        self.connectors = connectors
        self.tx = {}  # connector -> transactionId (None until the CSMS numbered it)
        self.starting = None  # the connector a RemoteStartTransaction just accepted was for
        self.stopping = []  # the connectors a RemoteStopTransaction just accepted was for
        self.triggered = None  # the message a TriggerMessage just accepted asked for
        self.energy = 0

    def free_connector(self, connector_id):
        ok = connector_id is not None and 1 <= connector_id <= self.connectors and connector_id not in self.tx
        return connector_id if ok else None

    def status(self, connector_id, status):
        return call.StatusNotification(connector_id=connector_id, error_code="NoError", status=status,
                                       timestamp=now_iso())

    @on("GetConfiguration")
    def on_get_configuration(self, key=None):
        if not key:
            return call_result.GetConfiguration(configuration_key=self.config)
        names = {c["key"] for c in self.config}
        return call_result.GetConfiguration(configuration_key=[c for c in self.config if c["key"] in key],
                                            unknown_key=[k for k in key if k not in names] or None)

    @on("RemoteStartTransaction")
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        self.starting = c = self.free_connector(connector_id)
        if c is None:
            return call_result.RemoteStartTransaction(status="Rejected")
        self.tx[c] = None
        return call_result.RemoteStartTransaction(status="Accepted")

    @after("RemoteStartTransaction")
    def after_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        if self.starting is not None:
            asyncio.ensure_future(self.start_transaction(self.starting, id_tag))
            self.starting = None

    async def start_transaction(self, c, id_tag):
        answer = await self.call(call.StartTransaction(connector_id=c, id_tag=id_tag, meter_start=self.energy,
                                                       timestamp=now_iso()))
        self.tx[c] = answer.transaction_id
        await self.call(self.status(c, "Charging"))

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id):
        # The library runs the @after handler whatever the answer was: it acts on self.stopping only.
        self.stopping = [c for c, t in self.tx.items() if t == transaction_id]
        return call_result.RemoteStopTransaction(status="Accepted" if self.stopping else "Rejected")

    @after("RemoteStopTransaction")
    def after_remote_stop(self, transaction_id):
        for c in self.stopping:
            del self.tx[c]
            asyncio.ensure_future(self.stop_transaction(c, transaction_id))
        self.stopping = []

    async def stop_transaction(self, c, transaction_id):
        await self.call(call.StopTransaction(meter_stop=self.energy, timestamp=now_iso(),
                                             transaction_id=transaction_id, reason="Remote"))
        await self.call(self.status(c, "Finishing"))

    @on("TriggerMessage")
    def on_trigger(self, requested_message, connector_id=None):
        self.triggered = None
        if connector_id is not None and not 0 <= connector_id <= self.connectors:
            return call_result.TriggerMessage(status="Rejected")
        if requested_message not in ("Heartbeat", "StatusNotification"):
            return call_result.TriggerMessage(status="NotImplemented")
        self.triggered = requested_message
        return call_result.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    def after_trigger(self, requested_message, connector_id=None):
        if self.triggered == "Heartbeat":
            asyncio.ensure_future(self.call(call.Heartbeat()))
        elif self.triggered == "StatusNotification":
            cids = range(self.connectors + 1) if connector_id is None else [connector_id]
            asyncio.ensure_future(self.send_statuses(cids))
        self.triggered = None

    async def send_statuses(self, cids):
        for c in cids:
            await self.call(self.status(c, "Charging" if c in self.tx else "Available"))

    async def boot(self):
        answer = await self.call(call.BootNotification(charge_point_vendor="ocpp-lib", charge_point_model="bench"))
        if answer.status != "Accepted":
            raise SystemExit("the CSMS answered BootNotification with %s" % answer.status)
        say("boot: the CSMS accepted this charge point (heartbeat every %d s)" % answer.interval)
        await self.send_statuses(range(self.connectors + 1))

    async def heartbeats(self, n):
        for _ in range(n):
            t = time.perf_counter_ns()
            await self.call(call.Heartbeat())
            say("console: heartbeat round trip %d us" % ((time.perf_counter_ns() - t) // 1000))


async def console(cp):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        words = (await reader.readline()).decode().split()
        if not words or words[0] == "quit":
            say("console: quit")
            return
        if words[0] == "heartbeat":
            await cp.heartbeats(int(words[1]) if len(words) > 1 else 1)
        else:
            say("console: unknown command %r" % words[0])


async def main(args):
    config = json.loads(open(args.config).read()) if args.config else []
    async with websockets.connect(args.csms.rstrip("/") + "/" + args.cp, subprotocols=["ocpp1.6"]) as conn:
        cp = LibChargePoint(args.cp, conn, config, args.connectors)
        reader = asyncio.ensure_future(cp.start())
        await cp.boot()
        await console(cp)
        reader.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csms", required=True, help="CSMS base URL, ws://host:port")
    ap.add_argument("--cp", default="LIB001", help="charge point id")
    ap.add_argument("--config", help="JSON file: the configurationKey list GetConfiguration answers")
    ap.add_argument("--connectors", type=int, default=2)
    asyncio.run(main(ap.parse_args()))
