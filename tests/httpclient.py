"""A tiny real HTTP client for tests (urllib), returning (status, headers, parsed JSON)."""

import base64
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
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


class Browserless:
    """A cookie-keeping HTTP client that does not follow redirects (so tests see them)."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path, data=None, headers=None, method=None, timeout=30):
        if isinstance(data, dict):
            data = urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {}, method=method)
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def form_token(self, path):
        status, headers, body = self.request(path)
        assert status == 200, body
        return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def login(self, password):
        token = self.form_token("/login")
        return self.request("/login", {"csrf": token, "password": password})

    def page_token(self):
        status, _, body = self.request("/")
        assert status == 200
        return re.search(rb'<meta name="csrf" content="([^"]+)"', body).group(1).decode()

    def cnf(self, query, token, body=None):
        headers = {"X-CSRF-Token": token} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        status, _, raw = self.request("/ui/cnf?" + query, data, headers)
        return status, json.loads(raw)
