"""A multipart/form-data body, read in place from its spool file (mapped, never loaded).

What an upload form holds: its text fields, and one file part (`content`) located by its
offset and size in the body and hashed once with every digest PyPI checks. The fields may
come before or after the file: the whole form is read before anything is judged, as
warehouse reads `request.POST`.
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from typing import IO

__all__ = ["Form", "NoFile", "parse"]

_HASH_CHUNK = 1024 * 1024


class NoFile(ValueError):
    """The body is not a multipart form with a `content` file part."""


@dataclass(frozen=True)
class Form:
    fields: dict[str, list[str]]
    filename: str
    offset: int
    """Where the file starts in the request body."""
    size: int
    digests: dict[str, str]
    """md5, sha256 and blake2_256 of the file, hex: warehouse's three, each checked
    against its `<name>_digest` field when the client supplies one."""

    def field(self, name: str) -> str:
        return self.fields.get(name, [""])[0]


def parse(spool: IO[bytes], size: int, content_type: str) -> Form:
    """Reads the form in `spool` (`size` bytes, of the request's `content_type`)."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or size == 0:
        raise NoFile
    delimiter = b"\r\n--" + boundary.encode()
    fields: dict[str, list[str]] = {}
    content: tuple[str, int, int] | None = None
    spool.flush()
    with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as body:
        # The first delimiter is the only one without a CRLF before it.
        position = body.find(delimiter[2:])
        position = -1 if position < 0 else position + len(delimiter) - 2
        while position >= 0 and body[position : position + 2] == b"\r\n":
            head_end = body.find(b"\r\n\r\n", position)
            end = body.find(delimiter, head_end)
            if head_end < 0 or end < 0:
                raise NoFile
            part = BytesHeaderParser().parsebytes(body[position + 2 : head_end])
            raw_name = part.get_param("name", header="content-disposition")
            name = collapse_rfc2231_value(raw_name) if raw_name else ""
            filename = part.get_filename()
            if name == "content" and filename is not None:
                content = (filename, head_end + 4, end)
            else:
                fields.setdefault(name, []).append(body[head_end + 4 : end].decode())
            position = end + len(delimiter)
        if content is None:
            raise NoFile
        filename, start, end = content
        # As warehouse hashes an upload: one pass, each block to all three.
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        blake2 = hashlib.blake2b(digest_size=32)
        for offset in range(start, end, _HASH_CHUNK):
            chunk = body[offset : min(offset + _HASH_CHUNK, end)]
            md5.update(chunk)
            sha256.update(chunk)
            blake2.update(chunk)
    digests = {
        "md5": md5.hexdigest(),
        "sha256": sha256.hexdigest(),
        "blake2_256": blake2.hexdigest(),
    }
    return Form(fields, filename, start, end - start, digests)
