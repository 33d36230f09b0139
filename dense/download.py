"""Resumable HTTP downloads with a progress bar and verification.

The file grows as ``NAME.part`` beside its destination; a rerun (or an automatic retry after a
dropped connection) asks the server for the remaining bytes only (HTTP ``Range``). The file
gets its final name only once its size matches what the server announced and, if given, its
SHA-256 matches.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dense.errors import DenseError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """What ``dense data NAME`` fetches for a dataset plug-in that sets ``DOWNLOAD``: one file,
    its official address, the folder it goes to by default, and a check of its layout that
    returns the number of samples (raising DenseError when the file is not right)."""

    filename: str
    url: str
    root: str
    verify: Callable[[Path], int]


class DownloadError(DenseError):
    """The transfer failed; what was received so far stays in the ``.part`` file."""


def download(
    url: str,
    destination: Path,
    sha256: str = "",
    retries: int = 3,
    timeout: float = 60.0,
    console: Console | None = None,
) -> Path:
    """Fetch ``url`` to ``destination``, resuming a partial download; returns the path."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            total = fetch(url, part, timeout, console)
            break
        except (urllib.error.URLError, HTTPException, OSError) as error:
            if attempt == retries or is_permanent(error):
                received = part.stat().st_size if part.exists() else 0
                kept = (
                    f"{received} bytes kept in {part}, the same command resumes from there"
                    if received
                    else "nothing received"
                )
                message = f"download of {url} failed ({describe(error)}); {kept}"
                raise DownloadError(message) from None
            if console is not None:
                console.print(f"connection lost ({describe(error)}); resuming")
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{part}: {size} bytes, but the server announced {total}")
    if sha256:
        digest = file_sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: SHA-256 {digest} is not the expected {sha256}; removed")
    part.replace(destination)
    return destination


def fetch(url: str, part: Path, timeout: float, console: Console | None) -> int | None:
    """Append the missing bytes of ``url`` to ``part``; the full size if the server says it."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to send: the part file is complete
            return start
        raise
    with response:
        if response.status == 206:
            total = content_range_total(response.headers.get("Content-Range", ""))
        else:  # the server ignored the range: start over
            start = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        with (
            part.open("ab" if start else "wb") as out,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                disable=console is None,
            ) as progress,
        ):
            bar = progress.add_task(part.name.removesuffix(".part"), total=total, completed=start)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                progress.advance(bar, len(chunk))
    received = part.stat().st_size
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    return total


def content_range_total(header: str) -> int | None:
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", header.strip())
    return int(match.group(1)) if match else None


def is_permanent(error: Exception) -> bool:
    """HTTP errors that a retry cannot fix (not found, forbidden, ...)."""
    return isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500


def describe(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
