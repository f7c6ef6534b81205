"""A tiny real HTTP client for tests (urllib), returning (status, headers, parsed JSON)."""

import base64
import json
import urllib.error
import urllib.request


def call(url, method="GET", body=None, user="admin", password="1234abcd", headers=None, timeout=30):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if password is not None:
        token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        request.add_header("Authorization", "Basic " + token)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _lower(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return exc.code, _lower(exc.headers), parsed


def _lower(headers):
    """Header names in lower case (HTTP header names are case-insensitive)."""
    return dict((key.lower(), value) for key, value in headers.items())
