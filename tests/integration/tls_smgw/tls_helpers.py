"""Shared helpers for the TLS/SMGW integration tests: the seed's openssl recipe in a temp folder, client contexts."""

import importlib.util
import os
import ssl

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def loose_client_context(cafile_pem=None, cert=None, key=None, min_version=ssl.TLSVersion.TLSv1_2,
                         max_version=None, ciphers=None):
    """A client context the way a wallbox would build it (verifying the manager's certificate by pinning it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile_pem:
        ctx.load_verify_locations(cadata=cafile_pem)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
