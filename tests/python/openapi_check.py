"""Checks rt-server's real answers against docs/openapi.yaml with openapi-core.

Usage: openapi_check.py SPEC BASE_URL API_KEY. Sends each request below to the running
server, checks the status it expects, and validates the request (when it is meant to be
valid) and the response against the spec. Prints one line per exchange; exits non-zero on
the first mismatch.
"""

import json
import sys
from urllib.parse import quote

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

spec_path, base, key = sys.argv[1:4]
spec_dict, _ = read_from_filename(spec_path)
validate(spec_dict)
openapi = OpenAPI.from_dict(spec_dict)
session = requests.Session()


def exchange(name, method, path, expect, body=None, headers=None, raw=None, valid_request=True):
    hdrs = {"x-api-key": key}
    hdrs.update(headers or {})
    if body is not None:
        hdrs.setdefault("content-type", "application/json")
        raw = json.dumps(body)
    req = requests.Request(method, base + path, headers=hdrs, data=raw)
    res = session.send(req.prepare())
    assert res.status_code == expect, f"{name}: status {res.status_code}, wanted {expect}: {res.text}"
    oa_req = RequestsOpenAPIRequest(req)
    if valid_request:
        openapi.validate_request(oa_req)
    openapi.validate_response(oa_req, RequestsOpenAPIResponse(res))
    print(f"ok {name}: {res.status_code}")
    return req, res


exchange("publish", "POST", "/api/publish", 200, {"channel": "oa", "data": {"n": 1}, "id": "m-1"})
exchange("publish retried", "POST", "/api/publish", 200, {"channel": "oa", "data": "x", "id": "m-1"})
exchange("publish binary", "POST", "/api/publish", 200, {"channel": "oa", "data": "AP8=", "encoding": "base64"})
exchange("publish without a key", "POST", "/api/publish", 401, {"channel": "oa", "data": "x"},
         headers={"x-api-key": "wrong"})
exchange("publish bad JSON", "POST", "/api/publish", 400, raw="{nope",
         headers={"content-type": "application/json"}, valid_request=False)
exchange("publish not JSON", "POST", "/api/publish", 415, raw="x",
         headers={"content-type": "text/plain"}, valid_request=False)
exchange("broadcast", "POST", "/api/broadcast", 200,
         {"channels": ["oa", "ob", "bad name"], "event": "note", "data": "hello", "id": "b-1"})
exchange("broadcast empty", "POST", "/api/broadcast", 400, {"channels": [], "data": "x"},
         valid_request=False)
req, res = exchange("history", "GET", "/api/history?channel=oa&since=earliest&limit=2", 200)
page = res.json()
assert len(page["events"]) == 2 and page["more"], page
exchange("history next page", "GET", f"/api/history?channel=oa&since={page['cursor']}", 200)
exchange("history bad limit", "GET", "/api/history?channel=oa&limit=5000", 400, valid_request=False)
exchange("history bad cursor", "GET", "/api/history?channel=oa&since=zz", 400)
exchange("disconnect", "POST", "/api/disconnect", 200, {"subject": "u1", "reconnect": False, "reason": "banned"})
exchange("disconnect with defaults", "POST", "/api/disconnect", 200, {"subject": "u1"})
exchange("disconnect without subject", "POST", "/api/disconnect", 400, {"reason": "x"}, valid_request=False)
exchange("unsubscribe", "POST", "/api/unsubscribe", 200, {"subject": "u1", "channel": "oa"})
exchange("unsubscribe bad channel", "POST", "/api/unsubscribe", 400, {"subject": "u1", "channel": "bad name"})
exchange("unsubscribe without a key", "POST", "/api/unsubscribe", 401, {"subject": "u1", "channel": "oa"},
         headers={"x-api-key": "wrong"})
exchange("health", "GET", "/health", 200)
# The Rust test keeps two connections subscribed to `oa`, whose presence is kept.
req, res = exchange("presence", "GET", "/api/presence?channel=oa&limit=1", 200)
assert len(res.json()["members"]) == 1 and res.json()["cursor"], res.text
exchange("presence next page", "GET", f"/api/presence?channel=oa&cursor={res.json()['cursor']}", 200)
exchange("presence stats", "GET", "/api/presence-stats?channel=oa", 200)
exchange("presence not kept", "GET", "/api/presence-stats?channel=ob", 404)
exchange("presence bad cursor", "GET", "/api/presence?channel=oa&cursor=zz", 400, valid_request=False)
exchange("presence bad limit", "GET", "/api/presence?channel=oa&limit=0", 400, valid_request=False)
req, res = exchange("channels", "GET", "/api/channels?pattern=o*&limit=1", 200)
assert res.json()["channels"] == [{"channel": "oa", "subscribers": 2}], res.text
exchange("channels bad pattern", "GET", "/api/channels?pattern=a*b", 400)
exchange("client presence", "GET", "/presence?channel=oa", 200)
# A poller of `oa` gets a session; its next (held) poll is answered by its own join.
req, res = exchange("poll", "GET", "/poll?channel=oa&timeout=0", 200)
first = res.json()
assert len(first["session"]) == 32 and "presence" not in first, res.text
req, res = exchange("poll with its session", "GET",
                    f"/poll?channel=oa&timeout=10&session={first['session']}&cursor={quote(first['cursor'])}", 200)
answer = res.json()
assert answer["session"] == first["session"] and answer["presence"][0]["joins"], res.text
exchange("poll bad session", "GET", "/poll?channel=oa&timeout=0&session=zz", 400, valid_request=False)
exchange("poll without a session", "GET", "/poll?channel=ob&timeout=0", 200)

# The check can fail: the same history answer with a field the spec does not have is refused.
wrong = requests.models.Response()
wrong.status_code = 200
wrong.headers["content-type"] = "application/json"
wrong._content = json.dumps(dict(page, unexpected=True)).encode()
try:
    openapi.validate_response(RequestsOpenAPIRequest(req), RequestsOpenAPIResponse(wrong))
except Exception as e:  # noqa: BLE001 - any validation error will do
    print(f"ok an answer outside the spec is refused: {type(e).__name__}")
else:
    sys.exit("an answer with an unknown field passed validation: the check cannot fail")
