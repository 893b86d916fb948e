"""Schemathesis hooks for the gateway run (GatewayTests.SchemathesisTests).

Schemathesis can't guess ids, credentials or a quiz the service will accept, so most
operations would only ever see 400/401/404. This module gives each operation a real request
now and then: every EVERY-th call of an operation (the first included) is replaced by a valid
one built from live resources that it creates through the gateway itself (a draft quiz to
publish, an API key to revoke, a fresh refresh token, ...). All other calls stay as
schemathesis generated them, so the fuzzing is unchanged; the test then asserts that every
operation got at least one 2xx, no 5xx and no schema violation.

Environment: QW_BASE (http://127.0.0.1:<port>), QW_TOKEN (the fresh user's bearer token),
QW_EMAIL and QW_PASSWORD (that user's credentials).
"""

import itertools
import json
import os
import threading
import urllib.request

import schemathesis

BASE = os.environ["QW_BASE"]
TOKEN = os.environ["QW_TOKEN"]
EMAIL = os.environ["QW_EMAIL"]
PASSWORD = os.environ["QW_PASSWORD"]
EVERY = int(os.environ.get("QW_EVERY", "4"))

QUIZ = {
    "title": "Schemathesis quiz",
    "description": "Made by the hooks.",
    "questionTimeLimitSeconds": 30,
    "questions": [
        {
            "kind": "QUESTION_KIND_SINGLE_CHOICE",
            "prompt": "One?",
            "points": 1,
            "choices": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}],
            "answerKey": {"correctChoiceIds": ["a"]},
        },
        {
            "kind": "QUESTION_KIND_SINGLE_CHOICE",
            "prompt": "Two?",
            "points": 1,
            "choices": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}],
            "answerKey": {"correctChoiceIds": ["b"]},
        },
    ],
}
QUESTION = QUIZ["questions"][0]

_lock = threading.Lock()
_calls = {}
_serial = itertools.count(1)


def _api(method, path, body=None, token=TOKEN):
    """One call through the gateway; returns the envelope's data (raises on a non-2xx)."""
    request = urllib.request.Request(BASE + path, method=method)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, data, timeout=30) as response:
        raw = response.read()
    return json.loads(raw)["data"] if raw else None


def _draft():
    return _api("POST", "/api/v1/quizzes", QUIZ)


def _published():
    quiz = _draft()
    _api("POST", "/api/v1/quizzes/%s/publish" % quiz["id"], {})
    return quiz


def _refresh_token():
    return _api("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD}, token=None)["refreshToken"]


def _api_key():
    return _api("POST", "/api/v1/me/api-keys", {"name": "schemathesis", "scopes": ["quiz:read"]})["apiKey"]["id"]


# operation label -> () -> (path parameters, query, body); None: no body.
RECIPES = {
    "POST /api/v1/auth/register": lambda: (
        {},
        {},
        {"email": "fuzz-%d-%s@example.com" % (next(_serial), os.getpid()), "password": PASSWORD, "displayName": "Fuzz"},
    ),
    "POST /api/v1/auth/login": lambda: ({}, {}, {"email": EMAIL, "password": PASSWORD}),
    "POST /api/v1/auth/refresh": lambda: ({}, {}, {"refreshToken": _refresh_token()}),
    "POST /api/v1/auth/logout": lambda: ({}, {}, {"refreshToken": _refresh_token()}),
    "PATCH /api/v1/me": lambda: ({}, {}, {"displayName": "Fuzzed"}),
    "POST /api/v1/me/api-keys": lambda: ({}, {}, {"name": "fuzz", "scopes": ["quiz:read"]}),
    "DELETE /api/v1/me/api-keys/{id}": lambda: ({"id": _api_key()}, {}, None),
    "POST /api/v1/me/api-keys/{id}/rotate": lambda: ({"id": _api_key()}, {}, {}),
    "POST /api/v1/quizzes": lambda: ({}, {}, QUIZ),
    "GET /api/v1/quizzes/{id}": lambda: ({"id": _published()["id"]}, {}, None),
    "PATCH /api/v1/quizzes/{id}": lambda: ({"id": _draft()["id"]}, {}, {"title": "Renamed"}),
    "DELETE /api/v1/quizzes/{id}": lambda: ({"id": _draft()["id"]}, {}, None),
    "POST /api/v1/quizzes/{id}/publish": lambda: ({"id": _draft()["id"]}, {}, {}),
    "POST /api/v1/quizzes/{id}/unpublish": lambda: ({"id": _published()["id"]}, {}, {}),
    "POST /api/v1/quizzes/{id}/archive": lambda: ({"id": _published()["id"]}, {}, {}),
    "GET /api/v1/quizzes/{quiz_id}/attempts": lambda: ({"quiz_id": _published()["id"]}, {}, None),
    "POST /api/v1/quizzes/{quiz_id}/attempts": lambda: ({"quiz_id": _published()["id"]}, {}, {}),
    "GET /api/v1/quizzes/{quiz_id}/leaderboard": lambda: ({"quiz_id": _published()["id"]}, {}, None),
    "POST /api/v1/quizzes/{quiz_id}/questions": lambda: ({"quiz_id": _draft()["id"]}, {}, QUESTION),
    "DELETE /api/v1/quizzes/{quiz_id}/questions/{question_id}": lambda: _question_ids(),
    "PATCH /api/v1/quizzes/{quiz_id}/questions/{question_id}": lambda: _question_ids(body={"prompt": "Changed?"}),
    "GET /api/v1/attempts/{id}": lambda: ({"id": _attempt()}, {}, None),
    "POST /api/v1/attempts/play-ticket": lambda: ({}, {}, {}),
    "GET /api/v1/quizzes/{quiz_id}/leaderboard/stream": lambda: ({"quiz_id": _published()["id"]}, {}, None),
}


def _question_ids(body=None):
    quiz = _draft()
    return ({"quiz_id": quiz["id"], "question_id": quiz["questions"][0]["id"]}, {}, body)


def _attempt():
    quiz = _published()
    return _api("POST", "/api/v1/quizzes/%s/attempts" % quiz["id"], {})["id"]


@schemathesis.hook
def before_call(context, case, **kwargs):
    label = "%s %s" % (case.operation.method.upper(), case.operation.path)
    # Calls with another verb probe 405s; leave them alone.
    if case.method.upper() != case.operation.method.upper() or label not in RECIPES:
        return
    with _lock:
        count = _calls.get(label, 0)
        _calls[label] = count + 1
    if count % EVERY:
        return
    path, query, body = RECIPES[label]()
    case.path_parameters = path
    case.query = query
    case.headers = {}
    case.cookies = {}
    if body is not None:
        case.body = body
        case.media_type = "application/json"
