"""SMGW channel wire helpers: address parsing and the SOCKS5 (RFC 1928) CONNECT request and reply framing."""

import pytest

from chargemanager.adapters.smgw import SmgwError, Socks5Error, parse_address, socks5_connect_request, \
    socks5_reply_length


@pytest.mark.parametrize("text,expected", [
    ("192.168.1.10", ("192.168.1.10", 1080)),            # bare IP: the configured proxy port
    ("192.168.1.10:3128", ("192.168.1.10", 3128)),       # host:port
    ("smgw.local", ("smgw.local", 1080)),
    ("https://192.168.1.10:8443", ("192.168.1.10", 8443)),  # a URL, as the seed allows
    ("https://smgw.local/", ("smgw.local", 1080)),
    ("fd00::10", ("fd00::10", 1080)),                     # bare IPv6: colons but no port
    ("[fd00::10]:1081", ("fd00::10", 1081)),
    (" 10.0.0.1 ", ("10.0.0.1", 1080)),
])
def test_parse_address(text, expected):
    assert parse_address(text, 1080) == expected


@pytest.mark.parametrize("text,message", [
    ("", "no SMGW address"),
    ("host:notaport", "invalid port"),
    ("https://:80", "has no host"),
])
def test_parse_address_errors(text, message):
    with pytest.raises(SmgwError, match=message):
        parse_address(text, 1080)


def test_socks5_connect_request_by_address_type():
    # Rows: RFC 1928 §4 ATYP 1 (IPv4), 4 (IPv6), 3 (domain name with its length byte); port big-endian.
    assert socks5_connect_request("10.1.2.3", 443) == b"\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb"
    assert socks5_connect_request("::1", 80) == b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01" + b"\x00\x50"
    assert socks5_connect_request("ocpp.backend.com", 443) == \
        b"\x05\x01\x00\x03\x10ocpp.backend.com\x01\xbb"
    with pytest.raises(Socks5Error):
        socks5_connect_request("a" * 300, 443)


def test_socks5_reply_length():
    ipv4 = b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00"
    assert socks5_reply_length(ipv4) == 10
    assert socks5_reply_length(ipv4[:9]) is None
    name = b"\x05\x00\x00\x03\x04smgw\x04\x38"
    assert socks5_reply_length(name) == len(name)
    assert socks5_reply_length(b"\x05\x00\x00\x04" + bytes(18)) == 22
    with pytest.raises(Socks5Error):
        socks5_reply_length(b"\x05\x00\x00\x09\x00\x00")
