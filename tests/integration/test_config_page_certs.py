"""Certificates on the config page (headless chromium, real manager): upload a certificate with its key made by
openssl (a subject with umlauts), upload a CA certificate, see both listed, get the manager's refusal for a key
that does not match, delete one."""

import os
import subprocess

import pytest

from httpclient import call
from test_config_page_browser import browser, login, page, shot  # noqa: F401 (fixtures)

pytest.importorskip("chargemanager.adapters.certs", reason="the certificate store is not in this build yet")
expect = pytest.importorskip("playwright.sync_api").expect


def openssl_pair(folder, name, cn):
    key, crt = os.path.join(folder, name + ".key"), os.path.join(folder, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "30", "-utf8", "-subj", "/CN=%s/O=Tiefgarage Köln GmbH/C=DE" % cn],
                   check=True, capture_output=True)
    return crt, key


def test_upload_list_refuse_and_delete_certificates(manager, page, tmp_path):
    crt, key = openssl_pair(str(tmp_path), "client", "Wallbox Köln")
    ca_crt, ca_key = openssl_pair(str(tmp_path), "ca", "Unsere Tiefgarage Root-CA")
    login(page, manager)
    page.click("#nav-setup")
    form = page.locator("#cert-form")
    form.wait_for()
    form.locator('[name="cert-use"]').select_option("client")
    form.locator('[name="cert-name"]').fill("garage client")
    form.locator('[name="cert-file"]').set_input_files(crt)
    form.locator('[name="key-file"]').set_input_files(ca_key)  # the wrong key
    form.locator("button").click()
    expect(form.locator(".msg.err")).to_contain_text("key")
    form.locator('[name="key-file"]').set_input_files(key)
    form.locator("button").click()
    expect(form.locator(".msg.ok")).to_have_text("imported")
    form.locator('[name="cert-use"]').select_option("ca")
    form.locator('[name="cert-file"]').set_input_files(ca_crt)
    form.locator("button").click()
    expect(form.locator(".msg.ok")).to_have_text("imported")
    listed = page.locator("#certs")
    expect(listed).to_contain_text("garage client")
    expect(listed).to_contain_text("Wallbox Köln")
    expect(listed).to_contain_text("Unsere Tiefgarage Root-CA")
    certs = call(manager.url + "/cnf?cmd=get_certs")[2]["certs"]
    client = [c for c in certs if c["name"] == "garage client"][0]
    assert client["use"] == "client" and client["has_key"] is True
    page.locator("#cert-form").scroll_into_view_if_needed()
    shot(page, "setup-certificates", full_page=False)
    page.locator('tr[data-cert="%s"] button' % client["id"]).click()
    expect(page.locator('tr[data-cert="%s"]' % client["id"])).to_have_count(0)
    ids = [c["id"] for c in call(manager.url + "/cnf?cmd=get_certs")[2]["certs"]]
    assert client["id"] not in ids
