"""A threaded WSGI server (cheroot) in its own thread, startable on port 0 for tests."""

import logging
import threading

from cheroot import wsgi

log = logging.getLogger("http")


class HttpServer:
    def __init__(self, app, host="0.0.0.0", port=80, threads=8, max_body_bytes=16 * 1024 * 1024,
                 ssl_adapter=None, name="http"):
        self._server = wsgi.Server((host, port), app, numthreads=threads, server_name="chargemanager",
                                   timeout=10, shutdown_timeout=2)
        self._server.max_request_body_size = max_body_bytes  # cheroot's own backstop (413) behind ours
        self._server.max_request_header_size = 16384
        if ssl_adapter is not None:
            self._server.ssl_adapter = ssl_adapter
        self._thread = None
        self._name = name

    @property
    def port(self):
        return self._server.bind_addr[1]

    def start(self):
        self._server.prepare()  # binds now, so the port is known and a busy port fails here
        self._thread = threading.Thread(target=self._server.serve, name=self._name, daemon=True)
        self._thread.start()
        log.info("%s listening on port %d", self._name, self.port)

    def stop(self):
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
