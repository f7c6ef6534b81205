import pytest

from .tls_helpers import load_tool


@pytest.fixture(scope="session")
def seed_pki(tmp_path_factory):
    """The seed's openssl recipe, run as written: root CA (des3 key, UTF-8 config with umlauts), client key, CSR,
    client certificate; plus a second, unrelated CA with its own client ("wrong CA")."""
    tool = load_tool("seed_certs")
    good = tmp_path_factory.mktemp("seed-pki")
    tool.make_root_ca(str(good), cn="Unsere Tiefgarage Root-CA")
    tool.make_signed(str(good), cn="Wallbox Köln 0815")
    other = tmp_path_factory.mktemp("other-pki")
    tool.make_root_ca(str(other), cn="Fremde Wurzel-CA", passphrase="another-pass")
    tool.make_signed(str(other), cn="Fremde Wallbox", passphrase="another-pass")
    return {"dir": str(good), "other": str(other)}
