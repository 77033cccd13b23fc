# Drives ocpp.rpc.Rpc with an in-memory link: a handler that raises must give
# InternalError, one that raises rpc.CallError the CALLERROR it names, and the
# next CALL is still answered.
import asyncio
import json
from ocpp.rpc import Rpc, CallError
from memory_link import MemoryLink


def broken(p):
    raise ValueError("boom")


def refuse(p):
    raise CallError("NotSupported", "not here")


def fine(p):
    return {"status": "Accepted"}


async def main():
    link = MemoryLink(['[2,"c1","Broken",{}]', '[2,"c3","Refuse",{}]', '[2,"c2","Fine",{}]'])
    rpc = Rpc({"Broken": broken, "Refuse": refuse, "Fine": fine}, lambda a, p, r: None)
    await rpc.serve(link)
    for text in link.sent:
        print(json.dumps(json.loads(text)))


asyncio.run(main())
