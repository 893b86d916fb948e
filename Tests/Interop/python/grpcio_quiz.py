#!/usr/bin/env python3
"""grpcio against the quiz service's gRPC/HTTP2 port, as an outside client sees it.

Usage: grpcio_quiz.py HOST:PORT DEMO_QUIZ_ID BEARER_TOKEN
Prints one JSON object per case: {"case": name, "ok": bool, ...}. Requests are encoded by hand
(GetQuizRequest.id and CreateQuizRequest.quiz are field 1), so no generated code is needed.
"""
import json
import sys

import grpc


def ident(b):
    return b


def string_field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def report(case, ok, **details):
    print(json.dumps(dict(case=case, ok=ok, **details)), flush=True)


def failure(call):
    try:
        call()
        return "OK", "", {}
    except grpc.RpcError as e:
        return e.code().name, e.details() or "", dict(e.trailing_metadata() or ())


def main():
    target, demo_id, token = sys.argv[1], sys.argv[2], sys.argv[3]
    channel = grpc.insecure_channel(target)
    get_quiz = channel.unary_unary("/quiz.v1.QuizService/GetQuiz", request_serializer=ident, response_deserializer=ident)
    create_quiz = channel.unary_unary("/quiz.v1.QuizService/CreateQuiz", request_serializer=ident, response_deserializer=ident)

    demo = get_quiz(string_field(1, demo_id), timeout=10)
    report("anonymous_get_published", b"Swift concurrency basics" in demo, size=len(demo))

    code, details, _ = failure(lambda: get_quiz(string_field(1, "qz_does_not_exist"), timeout=10))
    report("unknown_quiz", code == "NOT_FOUND", code=code, details=details)

    code, details, _ = failure(lambda: create_quiz(b"\x0a\x00", timeout=10))
    report("create_without_credentials", code == "UNAUTHENTICATED", code=code, details=details)

    # Signed in, but the quiz has no title: field violations travel as grpc-status-details-bin.
    code, details, trailers = failure(
        lambda: create_quiz(b"\x0a\x00", timeout=10, metadata=[("authorization", "Bearer " + token)]))
    report("create_invalid", code == "INVALID_ARGUMENT" and "grpc-status-details-bin" in trailers,
           code=code, details=details, trailer_keys=sorted(trailers))

    created = create_quiz(b"\x0a" + bytes([len(string_field(3, "From grpcio"))]) + string_field(3, "From grpcio"),
                          timeout=10, metadata=[("authorization", "Bearer " + token)])
    report("create_signed_in", b"From grpcio" in created, size=len(created))
    channel.close()


if __name__ == "__main__":
    main()
