#!/usr/bin/env python3
"""Holds N Server-Sent Event streams open against the gateway and reports its memory.

Used by scripts/bench-gateway: opens N connections to URL (in batches), waits until every
stream delivered its first event, samples the gateway's RSS (from /proc/PID/status) before
and after, then closes them all. Prints one JSON object.
Usage: sse-hold.py URL PID N
"""
import asyncio, json, resource, sys, time, urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_stream(host, port, path, ready, failures):
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            failures.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.close()
            return None
        # The first event: the board's snapshot ("id: <version>" … blank line).
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                failures.append("closed before the first event")
                return None
            if line.startswith(b"id:"):
                break
        ready.append(1)
        return reader, writer
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        failures.append(type(e).__name__ + ": " + str(e))
        return None


async def main():
    url, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    u = urllib.parse.urlsplit(url)
    before = rss_kib(pid)
    ready, failures, streams = [], [], []
    start = time.monotonic()
    for i in range(0, n, 250):
        batch = await asyncio.gather(*(open_stream(u.hostname, u.port, u.path, ready, failures) for _ in range(min(250, n - i))))
        streams += [s for s in batch if s]
    opened_s = time.monotonic() - start
    await asyncio.sleep(2)
    held = rss_kib(pid)
    for _, writer in streams:
        writer.close()
    await asyncio.sleep(3)
    after = rss_kib(pid)
    growth = held - before
    print(json.dumps({
        "streams": n, "open": len(streams), "failures": len(failures), "failure_examples": sorted(set(failures))[:3],
        "open_s": round(opened_s, 2), "rss_before_mb": round(before / 1024, 1), "rss_held_mb": round(held / 1024, 1),
        "rss_growth_mb": round(growth / 1024, 1), "per_stream_kb": round(growth / max(1, len(streams)), 1),
        "rss_after_close_mb": round(after / 1024, 1)}))


asyncio.run(main())
