"""Optional API keys: read once from an environment variable and/or a file, checked in constant time.

A key is compared against every accepted key with `hmac.compare_digest` and without stopping at the first
match, so neither the key's content nor which key matched leaks through timing. Knows nothing about routes:
the app decides which paths are open. Also the bind rule `tunewise serve` and `tunewise ui` share: with no key,
loopback only.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path


class AuthConfigError(ValueError):
    """The key file or variable cannot be used; the message names it and the fix."""


def load_keys(env_var: str | None, key_file: Path | None) -> list[str]:
    """Every accepted key; an empty list means the server needs none."""
    keys: list[str] = []
    if env_var and os.environ.get(env_var, "").strip():
        keys += [k.strip() for k in os.environ[env_var].split(",") if k.strip()]
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise AuthConfigError(f"--api-key-file {key_file}: cannot read it ({err}). Fix: pass a readable UTF-8 "
                                  "file with one key per line.") from None
        from_file = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not from_file:
            raise AuthConfigError(f"--api-key-file {key_file} holds no key (blank and # lines are ignored). Fix: put "
                                  "one key per line, or drop the option to run without keys.")
        keys += from_file
    short = [i for i, key in enumerate(keys) if len(key) < 8]
    if short:
        raise AuthConfigError(f"{len(short)} API key(s) are shorter than 8 characters. Fix: use long random keys, "
                              "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
    return keys


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); a name that is not an address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_network(host: str, keys: list[str], open_network: bool) -> None:
    """`tunewise serve` on a non-loopback interface without keys would answer anyone on the network with the
    model (and, with --state-dir, accept uploads and fine-tuning jobs): refused unless `open_network` says a proxy
    in front does the authentication."""
    if keys or open_network or is_loopback(host):
        return
    raise AuthConfigError(
        f"--host {host} is not a loopback address and no API key is configured, so anyone on the network could use "
        "the server. Fix: keep the default --host 127.0.0.1, set keys with --api-key-file or $TUNEWISE_API_KEYS, "
        "or pass --open-network if a proxy in front of the server authenticates the callers.")


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode("utf-8") for key in keys]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None) -> bool:
        """True for `Bearer <accepted key>` (or for anything when no key is configured)."""
        if not self._keys:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        offered = token.strip().encode("utf-8") if scheme.lower() == "bearer" else b""
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(offered, key)
        return matched
