"""Which credential each request carried, and where: read from the requests themselves.

The index keeps, for every request, its headers and the start of its body (`Seen`). Given
the secrets it handed out or was given, `carried` says which one went to which endpoint in
which part of the request: what SECURITY.md's table of credentials claims, checked against
what the action really sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["BODY_HEAD", "Carried", "Seen", "carried"]

BODY_HEAD = 64 * 1024
"""Bytes of each request body kept: every JSON body whole, an upload's form fields."""


@dataclass(frozen=True)
class Seen:
    """A request as it arrived: its endpoint, its headers, the start of its body."""

    endpoint: str
    headers: Mapping[str, str]
    body: bytearray


@dataclass(frozen=True)
class Carried:
    """A credential, by kind, seen at an endpoint in one part of the request."""

    credential: str
    endpoint: str
    carrier: str
    """`Authorization: Bearer`, `Authorization: Basic` (as the password), the same in
    `Proxy-Authorization`, `JSON body "k"`, or `elsewhere`: anywhere else, which no
    credential should ever be."""


def carried(requests: Iterable[Seen], secrets: Mapping[str, str]) -> set[Carried]:
    """Every (credential kind, endpoint, carrier) in `requests`; `secrets` maps each secret
    to its kind."""
    found: set[Carried] = set()
    for seen in requests:
        for secret, where in _places(seen):
            kind = secrets.get(secret)
            if kind is not None:
                found.add(Carried(kind, seen.endpoint, where))
        explained = {secret for secret, _ in _places(seen)}
        text = "\n".join(
            [
                *(v for k, v in seen.headers.items() if k.lower() not in _CREDENTIAL_HEADERS),
                _text(seen),
            ]
        )
        for secret, kind in secrets.items():
            if secret and secret in text and secret not in explained:
                found.add(Carried(kind, seen.endpoint, "elsewhere"))
    return found


def _places(seen: Seen) -> list[tuple[str, str]]:
    """The values in the request's Authorization (or, to a proxy, Proxy-Authorization)
    header and its JSON body's top-level fields, each with where it was."""
    places = []
    for name, value in seen.headers.items():
        if name.lower() not in _CREDENTIAL_HEADERS:
            continue
        header = name.title()
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "bearer":
            places.append((credential, f"{header}: Bearer"))
        elif scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(credential).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                password = ""
            places.append((password, f"{header}: Basic"))
    try:
        body = json.loads(bytes(seen.body))
    except ValueError:
        body = None
    if isinstance(body, dict):
        places += [(v, f'JSON body "{k}"') for k, v in body.items() if isinstance(v, str)]
    return places


_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization"}


def _text(seen: Seen) -> str:
    return bytes(seen.body).decode("utf-8", errors="replace")
