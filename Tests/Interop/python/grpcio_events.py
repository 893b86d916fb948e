#!/usr/bin/env python3
"""grpcio against a service's events.v1.EventFeed on its gRPC/HTTP2 port, as an outside client.

Usage: grpcio_events.py HOST:PORT SERVICE_TOKEN EXPECTED_EVENTS
Prints one JSON object per case: {"case": name, "ok": bool, ...}. Messages are encoded and
decoded by hand (a few protobuf fields), so no generated code is needed.
"""
import sys

import grpc

from protowire import fields, ident, report, varint


def subscribe_request(topic, after_offset=0):
    encoded = topic.encode()
    request = bytes([1 << 3 | 2, len(encoded)]) + encoded
    if after_offset:
        request += bytes([3 << 3]) + varint(after_offset)
    return request


def code_of(call):
    try:
        for _ in call():
            pass
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def main():
    target, token, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    channel = grpc.insecure_channel(target)
    subscribe = channel.unary_stream("/events.v1.EventFeed/Subscribe", request_serializer=ident, response_deserializer=ident)
    bearer = [("authorization", "Bearer " + token)]

    offsets, head, types = [], None, set()
    stream = subscribe(subscribe_request("entries"), metadata=bearer, timeout=20)
    for message in stream:
        for number, value in fields(message):
            if number == 2:
                head = value if head is None else head
            elif number == 1:
                event = dict(fields(value))
                offsets.append(event.get(1, 0))
                types.add(event.get(2, b"").decode())
        if len(offsets) >= expected:
            stream.cancel()
            break
    in_order = offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    report("replay_in_order", len(offsets) == expected and in_order and types == {"entry.added"}, count=len(offsets), head=head)

    code = code_of(lambda: subscribe(subscribe_request("nope"), metadata=bearer, timeout=10))
    report("unknown_topic", code == "NOT_FOUND", code=code)
    code = code_of(lambda: subscribe(subscribe_request("entries", 10**9), metadata=bearer, timeout=10))
    report("past_the_head", code == "OUT_OF_RANGE", code=code)
    code = code_of(lambda: subscribe(subscribe_request("entries"), timeout=10))
    report("no_token", code == "UNAUTHENTICATED", code=code)


if __name__ == "__main__":
    main()
