#!/usr/bin/env python3
"""grpcio plays the demo quiz over the scoring service's bidi Play on its gRPC/HTTP2 port.

Usage: grpcio_play.py AUTH_HOST:PORT SCORING_HOST:PORT EMAIL PASSWORD
Registers and signs in over auth's gRPC/HTTP2 port, then plays "Swift concurrency basics"
(qz_demo_swift_concurrency): right answers to questions 1-4, a wrong one to question 5.
Prints one JSON object per case: {"case": name, "ok": bool, ...}. Messages are encoded and
decoded by hand (a few protobuf fields), so no generated code is needed.
"""
import queue
import sys

import grpc

from protowire import field, fields, ident, report

DEMO = "qz_demo_swift_concurrency"
# By question index: (choice ids, text). The last is wrong on purpose ("b": "Returns false").
ANSWERS = [(["a"], ""), (["false"], ""), (["a", "b", "d"], ""), ([], " await "), (["b"], "")]


def answer(question_id, index):
    choices, text = ANSWERS[index]
    body = field(1, question_id) + b"".join(field(2, c) for c in choices) + (field(3, text) if text else b"")
    return field(2, body)  # PlayRequest.answer


def play(channel, bearer):
    """Plays the demo quiz; returns (questions, feedback, finished attempt fields)."""
    call = channel.stream_stream("/scoring.v1.ScoringService/Play", request_serializer=ident, response_deserializer=ident)
    outbox = queue.Queue()
    outbox.put(field(1, field(1, DEMO)))  # PlayRequest.start{quiz_id}

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    questions, feedback, finished = [], [], None
    try:
        for message in call(requests(), metadata=bearer, timeout=60):
            for number, value in fields(message):
                if number == 1:  # QuestionEvent{question, index}
                    event = dict(fields(value))
                    question = dict(fields(event[1]))
                    index = event.get(2, 0)
                    questions.append(dict(index=index, has_answer_key=6 in question))
                    outbox.put(answer(question[1].decode(), index))
                elif number == 2:  # Feedback{question_id, correct, points, running_score}
                    f = dict(fields(value))
                    feedback.append(dict(correct=bool(f.get(2, 0)), points=f.get(3, 0), running=f.get(4, 0)))
                elif number == 3:  # Finished{attempt}
                    finished = dict(fields(dict(fields(value))[1]))
    finally:
        outbox.put(None)
    return questions, feedback, finished


def main():
    auth_target, scoring_target, email, password = sys.argv[1:5]
    auth = grpc.insecure_channel(auth_target)
    register = auth.unary_unary("/auth.v1.AuthService/Register", request_serializer=ident, response_deserializer=ident)
    login = auth.unary_unary("/auth.v1.AuthService/Login", request_serializer=ident, response_deserializer=ident)
    register(field(1, email) + field(2, password) + field(3, "Grace from grpcio"), timeout=30)
    token = dict(fields(login(field(1, email) + field(2, password), timeout=30))).get(1, b"").decode()
    report("signed_in", bool(token))
    bearer = [("authorization", "Bearer " + token)]

    scoring = grpc.insecure_channel(scoring_target)
    questions, feedback, finished = play(scoring, bearer)
    report("questions", [q["index"] for q in questions] == [0, 1, 2, 3, 4] and not any(q["has_answer_key"] for q in questions),
           questions=questions)
    points = [f["points"] for f in feedback]
    running = [f["running"] for f in feedback]
    report("feedback", points == [1, 1, 1, 1, 0] and running == [1, 2, 3, 4, 4]
           and [f["correct"] for f in feedback] == [True, True, True, True, False], points=points, running=running)
    finished = finished or {}
    # Attempt: state 4 (2 = FINISHED), score 5, max_score 6.
    report("finished", finished.get(4) == 2 and finished.get(5) == 4 and finished.get(6) == 5,
           state=finished.get(4), score=finished.get(5), max_score=finished.get(6))

    # A first message other than start or resume is INVALID_ARGUMENT.
    call = scoring.stream_stream("/scoring.v1.ScoringService/Play", request_serializer=ident, response_deserializer=ident)
    try:
        for _ in call(iter([answer("qq_demo_1", 0)]), metadata=bearer, timeout=10):
            pass
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    report("answer_first", code == "INVALID_ARGUMENT", code=code)
    scoring.close()
    auth.close()


if __name__ == "__main__":
    main()
