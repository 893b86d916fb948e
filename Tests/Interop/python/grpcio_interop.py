#!/usr/bin/env python3
"""grpcio (the C-core gRPC library, not ours) against a Quizwire service's gRPC/HTTP2 port.

Usage: grpcio_interop.py HOST:PORT
Prints one JSON object per case: {"case": name, "ok": bool, ...details}. Messages are encoded
by hand (bench.v1.EchoRequest / EchoResponse are two fields), so no generated code is needed.
"""
import sys

import grpc

from protowire import ident, read_varint, report, varint


def echo_request(payload=b"", count=0):
    msg = b""
    if payload:
        msg += b"\x0a" + varint(len(payload)) + payload
    if count:
        msg += b"\x10" + varint(count)
    return msg


def echo_response(data):
    payload, index, i = b"", 0, 0
    while i < len(data):
        key, i = read_varint(data, i)
        if key == 0x0A:
            n, i = read_varint(data, i)
            payload, i = data[i:i + n], i + n
        elif key == 0x10:
            index, i = read_varint(data, i)
        else:
            raise ValueError("unexpected field %d" % key)
    return payload, index


def code_of(call):
    try:
        call()
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details() or ""


def main():
    target = sys.argv[1]
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)])
    unary = channel.unary_unary("/bench.v1.EchoService/Unary", request_serializer=ident, response_deserializer=ident)
    server_stream = channel.unary_stream("/bench.v1.EchoService/ServerStream", request_serializer=ident, response_deserializer=ident)
    client_stream = channel.stream_unary("/bench.v1.EchoService/ClientStream", request_serializer=ident, response_deserializer=ident)
    bidi = channel.stream_stream("/bench.v1.EchoService/Bidi", request_serializer=ident, response_deserializer=ident)

    payload, _ = echo_response(unary(echo_request(b"hello grpcio"), timeout=10))
    report("unary", payload == b"hello grpcio", payload=payload.decode())

    got = [echo_response(m) for m in server_stream(echo_request(b"s", count=5), timeout=10)]
    report("server_stream", [i for _, i in got] == [0, 1, 2, 3, 4], indexes=[i for _, i in got])

    payload, index = echo_response(client_stream(iter([echo_request(b"a"), echo_request(b"b"), echo_request(b"c")]), timeout=10))
    report("client_stream", payload == b"c" and index == 3, payload=payload.decode(), index=index)

    replies = [echo_response(m)[0] for m in bidi(iter([echo_request(b"x"), echo_request(b"y")]), timeout=10)]
    report("bidi", replies == [b"x", b"y"], replies=[r.decode() for r in replies])

    payload, _ = echo_response(unary(echo_request(b"z" * 10000), timeout=10, compression=grpc.Compression.Gzip))
    report("gzip", payload == b"z" * 10000)

    code, _ = code_of(lambda: list(server_stream(echo_request(b"s", count=10_000_000), timeout=0.3)))
    report("deadline", code == "DEADLINE_EXCEEDED", code=code)

    # 5 MB is over the server's 4 MiB limit: that call alone fails, RESOURCE_EXHAUSTED.
    code, details = code_of(lambda: unary(echo_request(b"\x00" * (5 << 20)), timeout=10))
    report("oversized_message", code == "RESOURCE_EXHAUSTED", code=code, details=details)
    payload, _ = echo_response(unary(echo_request(b"after"), timeout=10))
    report("after_oversized", payload == b"after")

    # 20 KB of metadata is over the 16 KiB header list (docs/services.md, "Limits"): the call
    # fails, and the channel serves the next call.
    code, details = code_of(lambda: unary(echo_request(b"m"), timeout=10, metadata=[("x-big", "v" * 20000)]))
    report("oversized_metadata", code != "OK", code=code, details=details)
    payload, _ = echo_response(unary(echo_request(b"again"), timeout=10))
    report("after_oversized_metadata", payload == b"again")

    code, _ = code_of(lambda: channel.unary_unary("/bench.v1.EchoService/Nope", request_serializer=ident, response_deserializer=ident)(b"", timeout=10))
    report("unknown_method", code == "UNIMPLEMENTED", code=code)
    channel.close()


if __name__ == "__main__":
    main()
