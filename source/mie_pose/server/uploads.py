"""Upload bodies read as they stream in, with the size limit enforced before the whole body has arrived.

Two forms: the raw body (``POST /upload?name=clip.mp4``, the video as the body, any length or chunked) and
``multipart/form-data`` (a browser form, or an S3-style presigned POST: fields first, then ``file``), parsed
by python-multipart's streaming parser. Either way the file goes straight to a temporary file on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .media import SNIFF_BYTES, video_type_error

MAX_FIELD_BYTES = 64 * 1024  # all the form's non-file fields together


class UploadRejected(Exception):
    """An upload refused part-way: HTTP status and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ReceivedFile:
    path: Path
    size: int = 0
    filename: str | None = None
    head: bytes = b""  # the first SNIFF_BYTES, for the type check

    def renamed(self, path: Path, filename: str) -> "ReceivedFile":
        self.path.rename(path)
        self.path, self.filename = path, filename
        return self


async def receive_raw(chunks: AsyncIterator[bytes], path: Path, limit: int, name: str) -> ReceivedFile:
    """Write a raw body to ``path``; 415 as soon as the first bytes do not match ``name``, 413 past ``limit``."""
    received = ReceivedFile(path, filename=name)
    checked = False
    with open(path, "wb") as handle:
        async for chunk in chunks:
            _append(received, handle, chunk, limit)
            if not checked and len(received.head) >= SNIFF_BYTES:
                check_upload(received)
                checked = True
    check_upload(received)
    return received


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: ReceivedFile | None = None


async def receive_form(chunks: AsyncIterator[bytes], content_type: str, path: Path, limit: int) -> ReceivedForm:
    """Parse a multipart/form-data body: its text fields, and the part named ``file`` written to ``path``."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadRejected(400, "multipart/form-data without a boundary")
    form = ReceivedForm()
    state = _FormState(form, path, limit)
    try:
        parser = MultipartParser(boundary, state.callbacks())
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadRejected(400, f"malformed multipart body: {exc}") from None
    finally:
        state.close()
    if not state.ended:
        raise UploadRejected(400, "the multipart body ended before its closing boundary")
    return form


def _append(received: ReceivedFile, handle: BinaryIO, chunk: bytes, limit: int) -> None:
    received.size += len(chunk)
    if received.size > limit:
        raise UploadRejected(413, f"upload is over the limit of {limit} bytes")
    if len(received.head) < SNIFF_BYTES:
        received.head += chunk[:SNIFF_BYTES - len(received.head)]
    handle.write(chunk)


def check_upload(received: ReceivedFile) -> None:
    """400 for an empty upload, 415 when its name and first bytes are not the same kind of video."""
    if received.size == 0:
        raise UploadRejected(400, "the upload is empty")
    problem = video_type_error(received.filename or "", received.head)
    if problem:
        raise UploadRejected(415, problem)


class _FormState:
    """python-multipart's callbacks: collect the headers of each part, then its data."""

    def __init__(self, form: ReceivedForm, path: Path, limit: int):
        self.form, self.path, self.limit = form, path, limit
        self.header_field, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.name: str | None = None
        self.value = bytearray()
        self.handle: BinaryIO | None = None
        self.field_bytes = 0
        self.ended = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field_data,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        self.headers, self.name, self.value = {}, None, bytearray()

    def header_field_data(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.name == "file":
            if self.form.file is not None:
                raise UploadRejected(400, "the form has more than one file part")
            filename = options.get(b"filename")
            self.form.file = ReceivedFile(self.path, filename=filename.decode("utf-8", "replace") if filename else None)
            self.handle = open(self.path, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.handle is not None:
            _append(self.form.file, self.handle, chunk, self.limit)
            return
        self.field_bytes += len(chunk)
        if self.field_bytes > MAX_FIELD_BYTES:
            raise UploadRejected(413, f"the form's fields are over {MAX_FIELD_BYTES} bytes")
        self.value += chunk

    def part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        elif self.name:
            self.form.fields[self.name] = self.value.decode("utf-8", "replace")

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
