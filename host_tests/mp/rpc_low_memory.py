# Drives ocpp.rpc.Rpc with an in-memory link when the heap runs short (run it
# with -X heapsize): a frame too deeply nested to parse is dropped, an answer
# too big to serialise becomes a CALLERROR InternalError, and the next CALL is
# answered. Sizes follow the free heap, so any small heap size will do.
import asyncio
import gc
from ocpp.rpc import Rpc
from memory_link import MemoryLink


def big(p):
    # A small object whose JSON text is larger than the whole free heap.
    gc.collect()
    return {"data": ["x" * 1000] * (gc.mem_free() // 1000 + 10)}


def fine(p):
    return {"status": "Accepted"}


async def main():
    gc.collect()
    depth = gc.mem_free() // 8  # each nesting level costs a list object and a parser stack slot
    deep = "[" * depth + "]" * depth
    link = MemoryLink([deep, '[2,"c1","Big",{}]', '[2,"c2","Fine",{}]'], keep=60)
    deep = None
    rpc = Rpc({"Big": big, "Fine": fine}, lambda a, p, r: None)
    await rpc.serve(link)
    for text in link.sent:
        print(text)


asyncio.run(main())
