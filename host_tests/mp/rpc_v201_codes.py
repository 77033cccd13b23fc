# Drives ocpp.rpc.Rpc with an in-memory link and the generated check tables of one
# protocol (argv[1]: v16 or v201): the CALLERRORs the RPC layer makes itself, by
# protocol. Prints each frame sent as one JSON line ("OUT " first: the log shares
# stdout), then the code our CALL got for a malformed answer and whether the other
# protocol's tables were loaded.
import asyncio
import json
import sys
from memory_link import MemoryLink
from ocpp import check
from ocpp.rpc import Rpc, CallError

V201 = sys.argv[1] == "v201"
if V201:
    from ocpp.v201 import tables
else:
    from ocpp.v16 import tables


class AnswerLink(MemoryLink):
    # answers each CALL of ours with a malformed CALLRESULT (a list as payload);
    # closes a moment after the last frame, so that our CALL has its answer first
    async def recv(self):
        if not self.inbox:
            await asyncio.sleep_ms(50)
        return await super().recv()

    async def send(self, text):
        await super().send(text)
        msg = json.loads(text)
        if msg[0] == 2:
            self.inbox.append(json.dumps([3, msg[1], []]))


async def main():
    frames = [line for line in sys.stdin.read().split("\n") if line]
    link = AnswerLink(frames)
    rpc = Rpc({"Heartbeat": lambda p: {}, "UnlockConnector": lambda p: {"status": "Unlocked"}},
              check.make(tables, V201), v201=V201)
    task = asyncio.create_task(rpc.serve(link))
    await asyncio.sleep(0)
    try:
        await rpc.call("Heartbeat", {}, timeout=5)
        code = None
    except CallError as e:
        code = e.code
    await task
    for text in link.sent:
        msg = json.loads(text)
        if msg[0] != 2:
            print("OUT " + json.dumps(msg))
    print("OUT " + json.dumps({"call_error": code,
                      "other": "ocpp.v16.tables" in sys.modules if V201 else "ocpp.v201.tables" in sys.modules}))


asyncio.run(main())
