"""Find (and optionally redact) personal data and secrets in example text, fully offline.

PII comes from presidio-analyzer's pattern recognizers (email, phone via `phonenumbers`, payment cards
with the Luhn check, IBAN with its checksum, IP addresses, US SSN), run directly without an NLP engine so
no spaCy model is needed. Secrets come from detect-secrets' regex plugins (cloud keys, service tokens,
private keys); its entropy and keyword plugins are left out because they fire on ordinary prose.

A cheap regex gate skips text that cannot contain any of these, so scanning 100k lines stays fast; the
recognizers then decide. Knows nothing about files or examples: it sees strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Every shape below needs an @, a digit or a colon: one character class is found ~7x faster than the gate's
# alternation is tried at every position, and most text (prose, labels) has none of the three.
_PII_HINT = re.compile(r"[@\d:]")
# Text that could hold PII has an @, a run of digits, an IPv4/IPv6 shape or an IBAN-like prefix.
_PII_GATE = re.compile(
    r"@|\d[\d \-().]{5,}\d|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{1,4}:[0-9a-fA-F]{0,4}:|\b[A-Z]{2}\d{2}"
)
# Every secret plugin we use matches a run of 20+ key-like characters ([A-Za-z0-9_-+/=.:]), a PEM header or
# credentials in a URL. Both gates read one byte-marked copy of the text: "d" for an ASCII digit or ":", "@" for
# itself, "k" for any other key-like byte, a space for the rest. The run is then twenty "k"s once "d" counts as
# "k", and ASCII text can hold PII only if it has a "d" or an "@": substring searches, ~4x faster than the
# regexes that retry at every position of every word. Non-ASCII characters encode to bytes above 127, which end
# a run, as they should; non-ASCII text keeps the `_PII_HINT` regex (its \d also matches other scripts' digits).
_KEY_LIKE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.:")
_MARK_BYTES = bytes(ord("d") if chr(b) in "0123456789:" else ord("@") if chr(b) == "@" else
                    ord("k") if b in _KEY_LIKE else ord(" ") for b in range(256))
_KEY_RUN = b"k" * 20
_URL_CREDENTIALS = re.compile(r"://[^\s/]+:[^\s/]+@")

# presidio entity -> our issue code, with the minimum score we trust (validated matches score 1.0).
_ENTITIES: dict[str, tuple[str, float]] = {
    "EMAIL_ADDRESS": ("pii_email", 0.5),
    "PHONE_NUMBER": ("pii_phone", 0.4),
    "CREDIT_CARD": ("pii_credit_card", 0.9),
    "IBAN_CODE": ("pii_iban", 0.9),
    "IP_ADDRESS": ("pii_ip_address", 0.5),
    "US_SSN": ("pii_ssn", 0.3),
}
_REDACT_AS = {code: f"<{entity}>" for entity, (code, _) in _ENTITIES.items()} | {"secret": "<SECRET>"}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    start: int
    end: int
    kind: str


@lru_cache(maxsize=1)
def _recognizers() -> list[Any]:
    """Built once: constructing presidio recognizers compiles many regexes."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # presidio validates email domains with tldextract, which would fetch the public suffix list from the
    # network on first use; the snapshot shipped inside tldextract is enough and keeps us offline.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    email_recognizer.tldextract = type("OfflineTldextract", (), {"extract": staticmethod(offline)})
    # Strict grouping (leniency 2) keeps real numbers but not score lines such as "3-6 6-4 7-6", which
    # the default leniency reported as phones in the bundled BBC sport articles.
    return [EmailRecognizer(), PhoneRecognizer(leniency=2), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(),
            UsSsnRecognizer()]


class _NewerTokenDetector:
    """Key formats introduced after detect-secrets 1.5 (2024) shipped: OpenAI project/service keys,
    Anthropic and Hugging Face tokens. Same interface as a detect-secrets RegexBasedDetector."""

    secret_type = "Newer API token"
    denylist = (re.compile(r"\bsk-(?:proj|svcacct|ant-api\d\d|admin)-[A-Za-z0-9_\-]{20,}"),
                re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"))


@lru_cache(maxsize=1)
def _secret_plugins() -> list[Any]:
    from detect_secrets.plugins import (
        artifactory,
        aws,
        azure_storage_key,
        basic_auth,
        discord,
        github_token,
        gitlab_token,
        jwt,
        mailchimp,
        npm,
        openai,
        private_key,
        pypi_token,
        sendgrid,
        slack,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )

    return [
        artifactory.ArtifactoryDetector(), aws.AWSKeyDetector(), azure_storage_key.AzureStorageKeyDetector(),
        basic_auth.BasicAuthDetector(), discord.DiscordBotTokenDetector(), github_token.GitHubTokenDetector(),
        gitlab_token.GitLabTokenDetector(), jwt.JwtTokenDetector(), mailchimp.MailchimpDetector(),
        npm.NpmDetector(), openai.OpenAIDetector(), private_key.PrivateKeyDetector(), pypi_token.PypiTokenDetector(),
        sendgrid.SendGridDetector(), slack.SlackDetector(), square_oauth.SquareOAuthDetector(),
        stripe.StripeDetector(), telegram_token.TelegramBotTokenDetector(), twilio.TwilioKeyDetector(),
        _NewerTokenDetector(),
    ]


_PEM_END = re.compile(r"-----END [A-Z ]*-----")


def _secret_spans(text: str) -> list[Finding]:
    """Whole-match spans from each plugin's patterns (its `analyze_string` yields only capture groups)."""
    found = []
    for plugin in _secret_plugins():
        for pattern in plugin.denylist:
            for match in pattern.finditer(text):
                start, end = match.span()
                if "PRIVATE KEY" in match.group(0):  # redact the whole PEM block, not just its header
                    start = text.rfind("-----", 0, start) if text.rfind("-----", 0, start) >= 0 else start
                    tail = _PEM_END.search(text, end)
                    end = tail.end() if tail else len(text)
                found.append(Finding("secret", start, end, plugin.secret_type))
    return found


def scan(text: str) -> list[Finding]:
    """All PII and secret spans in `text`, overlapping spans kept (each is reported by its kind)."""
    findings: list[Finding] = []
    marks = _marks(text)
    hint = (b"d" in marks or b"@" in marks) if text.isascii() else _PII_HINT.search(text) is not None
    if hint and _PII_GATE.search(text):
        entities = list(_ENTITIES)
        for recognizer in _recognizers():
            for result in recognizer.analyze(text, entities=entities, nlp_artifacts=None) or []:
                code, threshold = _ENTITIES.get(result.entity_type, ("", 1.1))
                if result.score >= threshold:
                    findings.append(Finding(code, result.start, result.end, result.entity_type))
    if _may_hold_secret(text, marks):
        findings += _secret_spans(text)
    return findings


def _marks(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").translate(_MARK_BYTES)


def _may_hold_secret(text: str, marks: bytes | None = None) -> bool:
    marks = _marks(text) if marks is None else marks
    return (_KEY_RUN in marks.replace(b"d", b"k") or "-----BEGIN" in text
            or ("://" in text and _URL_CREDENTIALS.search(text) is not None))


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """Replace every finding with a typed placeholder such as <EMAIL_ADDRESS>; overlaps merge."""
    findings = scan(text) if findings is None else findings
    if not findings:
        return text
    spans = sorted((f.start, f.end, _REDACT_AS[f.code]) for f in findings)
    merged: list[list[Any]] = []
    for start, end, tag in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, tag])
    pieces, cursor = [], 0
    for start, end, tag in merged:
        pieces += [text[cursor:start], tag]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
