"""PII and secret detection (through presidio and detect-secrets, offline) and redaction."""

from __future__ import annotations

import pytest

from tunewise.data.privacy import redact, scan

CASES = [
    ("write to john.doe@example.com today", "pii_email", "john.doe@example.com"),
    ("call +1 (415) 555-2671 now", "pii_phone", "+1 (415) 555-2671"),
    ("card 4111 1111 1111 1111 ok", "pii_credit_card", "4111 1111 1111 1111"),
    ("iban DE89 3704 0044 0532 0130 00 ok", "pii_iban", "DE89 3704 0044 0532 0130 00"),
    ("host 10.20.30.40 down", "pii_ip_address", "10.20.30.40"),
    ("ssn 536-22-8871 filed", "pii_ssn", "536-22-8871"),
    ("aws AKIAIOSFODNN7EXAMPLE key", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("token sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 leaked", "secret",
     "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"),
]


@pytest.mark.parametrize("text,code,value", CASES, ids=[c[1] + str(i) for i, c in enumerate(CASES)])
def test_detects_and_redacts(text, code, value):
    findings = scan(text)
    assert any(f.code == code and text[f.start:f.end] == value for f in findings)
    assert value not in redact(text, findings)


def test_card_numbers_need_a_valid_luhn_checksum():
    assert not [f for f in scan("card 4111 1111 1111 1112 ok") if f.code == "pii_credit_card"]


def test_private_key_block_is_redacted_whole():
    text = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nafter"
    assert redact(text) == "before\n<SECRET>\nafter"


@pytest.mark.parametrize("text", [
    "The firm made £1,234,567 profit in 2004, up 12.5% from 2003.",
    "Shares rose 3.5% to 1,234 pence on Tuesday, 15 March 2005.",
    "Version 2.3.1 of the library fixed issue 4521.",
    "Kim won 3-6 6-2 6-7 6-2 6-2 and then beat Luczak 7-6 (7-5) 4-6 6-3.",
])
def test_ordinary_news_text_is_clean(text):
    assert scan(text) == []


def test_email_check_stays_offline(monkeypatch):
    """tldextract must use its bundled suffix snapshot, never the network."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert [f.code for f in scan("mail someone@somewhere-new.co.uk")] == ["pii_email"]


def test_the_secret_gate_lets_through_exactly_what_its_regex_matches():
    """The byte-table gate must pass every text the plain regex would: a text it wrongly skips is a lost finding."""
    import random
    import re

    from tunewise.data.privacy import _may_hold_secret

    regex = re.compile(r"[A-Za-z0-9_\-+/=.:]{20,}|-----BEGIN|://[^\s/]+:[^\s/]+@")
    rng = random.Random(11)
    pieces = ["a", "Z", "9", "_", "-", "+", "/", "=", ".", ":", " ", "\n", "é", "€", ",", "@", "://u:p@h", "-----BEGIN",
              "AKIA", "x" * 19, "y" * 21, "\ud800"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(30_000)]
    assert [_may_hold_secret(t) for t in texts] == [regex.search(t) is not None for t in texts]
    assert sum(_may_hold_secret(t) for t in texts) > 1000  # the random texts do reach both outcomes


def test_the_pii_hint_passes_every_ascii_text_its_regex_would():
    import random
    import re

    from tunewise.data.privacy import _marks

    rng = random.Random(12)
    pieces = ["a", "Z", " ", "@", ":", "0", "9", "x", ".", "-", "\n"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(20_000)]
    hint = re.compile(r"[@\d:]")
    assert [b"d" in _marks(t) or b"@" in _marks(t) for t in texts] == [hint.search(t) is not None for t in texts]


def test_non_ascii_text_still_reaches_the_recognizers():
    assert [f.code for f in scan("café — call +1 (415) 555-2671")] == ["pii_phone"]
    assert [f.code for f in scan("clé AKIAIOSFODNN7EXAMPLE")] == ["secret"]
