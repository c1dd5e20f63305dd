"""Download one URL to one file, safely: resume, a lock between processes, retries, atomic move.

`download_file(url, dest)` streams into `dest.name + ".incomplete"` beside `dest`, hashing as it goes,
and moves the file into place with `os.replace` only once it is complete and checked, so `dest` is
either absent or whole. An interrupted download (connection dropped, process killed) is resumed
with an HTTP `Range` request; in a later run it also sends `If-Range` with the ETag (or
Last-Modified) saved in `dest.name + ".incomplete.json"`, so a file that changed on the server is
fetched whole instead of spliced. An `fcntl` lock on `dest.name + ".lock"` makes a second process
wait for the first and then reuse its file, so the partial file always has exactly one writer.

Standard library only (urllib): the files are plain HTTPS downloads and this keeps the install small.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no inter-process lock (one fetch at a time there)
    fcntl = None

from vswin_cli import __version__
from vswin_cli.errors import ChecksumError, DownloadError
from vswin_cli.files import atomic_file

DEFAULT_TIMEOUT_S = 30.0  # per connect/read, not for the whole file; VSWIN_TIMEOUT overrides
RETRY_BACKOFF_S = 1.0  # first wait before a retry; doubles after each attempt that made no progress
CHUNK_BYTES = 1 << 20
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class DownloadResult:
    """A file that is now complete at `path`.

    Args:
        path: the final file.
        sha256: its SHA-256 (hex).
        size: its size in bytes.
        downloaded: False when the file was already there (e.g. another process fetched it meanwhile).
        resumed_from: size of the partial file an earlier run left (0 if none); reused unless the server
            refuses to resume.
    """

    path: Path
    sha256: str
    size: int
    downloaded: bool
    resumed_from: int = 0


class _Transient(Exception):
    """An attempt that failed in a way worth retrying (reset, 5xx, timeout, short body)."""


def default_timeout() -> float:
    """Seconds to wait for a connection or for the next bytes: `VSWIN_TIMEOUT`, else 30."""
    value = os.environ.get("VSWIN_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise DownloadError(f"VSWIN_TIMEOUT={value!r} is not a positive number of seconds", "unset it or use e.g. 60")
    return seconds


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256_prefix(path: Path, prefix: str | None, published_name: str, url: str) -> None:
    """Check that `path`'s SHA-256 starts with `prefix`, the hash a publisher put in the file name; None passes.

    Raises:
        ChecksumError: naming the file, both hashes and where the published file is.
    """
    if prefix is None:
        return
    digest = sha256_of(path)
    if not digest.startswith(prefix):
        raise ChecksumError(
            f"{path}: SHA-256 {digest[:len(prefix)]}... differs from the {prefix} its published name {published_name} carries",
            f"the file is damaged or not the published one; download it again from {url}",
        )


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path.name + ".lock"` (waits, saying so on stderr, if another process has it).

    The lock file is left behind on purpose: deleting it would let a third process lock a new file
    while the second still holds the old one.
    """
    if fcntl is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write(f"Waiting for another vswin process that is fetching {path.name}...\n")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download_file(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    check: Callable[[Path], None] | None = None,
    timeout: float | None = None,
    retries: int = 4,
    progress: bool = True,
) -> DownloadResult:
    """Download `url` to `dest` (resuming, locked, retried, checked, moved into place atomically).

    Args:
        url: http(s) URL; redirects are followed.
        dest: final path; its folder is created. If it already exists (and matches `expected_sha256`
            when given) nothing is downloaded.
        expected_sha256, expected_size: pinned values; a mismatch raises `ChecksumError` and the file is
            deleted.
        check: called on the complete partial file before the move; it raises (any `VswinError`) to
            reject the file, which is then deleted.
        timeout: seconds to wait for a connection or for more bytes (default `default_timeout()`).
        retries: further attempts after a transient failure (reset, 5xx, timeout, short body) in a row
            without progress; an attempt that received bytes resets the count.
        progress: show a progress bar on stderr.

    Returns:
        `DownloadResult` for the file now at `dest`.

    Raises:
        DownloadError: HTTP error (404...), refused connection, unknown host, timeout after the retries,
            full disk. The partial file is kept for a later resume unless it is known to be bad.
        ChecksumError: size or SHA-256 differs from the expected value.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    timeout = default_timeout() if timeout is None else timeout
    with file_lock(dest):
        if dest.exists():
            existing = _existing_result(dest, expected_sha256)
            if existing is not None:
                return existing
        partial = dest.with_name(dest.name + ".incomplete")
        resumed_from = partial.stat().st_size if partial.exists() else 0
        from vswin_cli.progress import download_progress  # Rich loads only when a download starts

        with download_progress(dest.name, enabled=progress) as bar:
            digest, size = _download_with_retries(url, partial, timeout, retries, bar)
        _validator_path(partial).unlink(missing_ok=True)
        with atomic_file(dest, temp=partial):  # a file that fails its checks is deleted, never kept to resume
            _check_complete_file(partial, digest, size, expected_sha256, expected_size, url)
            if check is not None:
                check(partial)
        return DownloadResult(dest, digest, size, downloaded=True, resumed_from=resumed_from)


def _existing_result(dest: Path, expected_sha256: str | None) -> DownloadResult | None:
    """The already-present `dest`, or None after deleting it when it does not match the pinned hash."""
    digest = sha256_of(dest)
    if expected_sha256 is not None and digest != expected_sha256:
        sys.stderr.write(f"Replacing {dest} (SHA-256 {digest[:12]}..., expected {expected_sha256[:12]}...)\n")
        dest.unlink()
        return None
    return DownloadResult(dest, digest, dest.stat().st_size, downloaded=False)


def _check_complete_file(partial, digest, size, expected_sha256, expected_size, url) -> None:
    if expected_size is not None and size != expected_size:
        raise ChecksumError(
            f"{url}: downloaded {size} bytes, expected {expected_size}; the file was deleted",
            "the server or mirror has a different file under this name; check VSWIN_MIRROR (or `vswin fetch NAME --mirror URL`)",
        )
    if expected_sha256 is not None and digest != expected_sha256:
        raise ChecksumError(
            f"{url}: SHA-256 {digest} does not match the expected {expected_sha256}; the file was deleted",
            "the server or mirror has a different or damaged file under this name; check VSWIN_MIRROR (or `vswin fetch NAME --mirror URL`)",
        )


def _download_with_retries(url, partial: Path, timeout, retries, bar) -> tuple[str, int]:
    """Run attempts until the partial file is complete; returns its (sha256, size)."""
    failures = 0
    while True:
        offset = partial.stat().st_size if partial.exists() else 0
        # Re-reading the partial file after a failure is simpler than tracking what the failed attempt hashed.
        digest = _hash_prefix(partial, offset)
        try:
            return _attempt(url, partial, offset, digest, timeout, bar)
        except _Transient as err:
            grown = (partial.stat().st_size if partial.exists() else 0) > offset
            failures = 0 if grown else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"{url}: {err} (gave up after {retries + 1} attempts in a row without progress)",
                    "check the network (or the mirror) and run the same command again: the download resumes",
                ) from None
            wait = RETRY_BACKOFF_S * 2 ** max(failures - 1, 0)
            sys.stderr.write(f"{url}: {err}; retrying in {wait:.1f} s\n")
            time.sleep(wait)


def _hash_prefix(partial: Path, size: int):
    digest = hashlib.sha256()
    if size:
        with open(partial, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest


def _attempt(url, partial: Path, offset: int, digest, timeout, bar) -> tuple[str, int]:
    """One HTTP request appending the rest of the file to `partial`; returns the whole file's (sha256, size).

    Args:
        offset: bytes already in `partial`; asked for with a `Range` request when > 0.
        digest: SHA-256 state of those `offset` bytes (updated in place).
    """
    headers = {"User-Agent": f"vswin/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator := _read_validator(partial, url):
            headers["If-Range"] = validator  # the server sends the whole file (200) if it changed meanwhile
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            if _content_range_total(err.headers.get("Content-Range")) == offset:
                return digest.hexdigest(), offset  # the partial file is already whole (stopped before the move)
            partial.unlink()  # longer than the file: not a prefix of it, start again
            raise _Transient("the server refused to resume (HTTP 416); starting again") from None
        if err.code in _TRANSIENT_HTTP:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        hint = "check the model name and, if you use a mirror (VSWIN_MIRROR, `vswin fetch NAME --mirror URL`), that it has this file"
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}", hint) from None
    except urllib.error.URLError as err:
        raise _connection_error(url, err.reason, timeout) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _connection_error(url, err, timeout) from None

    with response:
        mode = "ab"
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                partial.unlink()
                raise _Transient(f"the server resumed at byte {start}, not {offset}; starting again")
        else:  # 200: the whole file (first request, or the server ignored the Range / the file changed)
            offset, mode, digest = 0, "wb", hashlib.sha256()
            _save_validator(partial, url, response.headers)
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if remaining is not None:
            _check_free_space(partial, remaining)
        bar.start(total=offset + remaining if remaining is not None else None, completed=offset)
        received = 0
        with open(partial, mode, buffering=0) as out:  # unbuffered: what was received is on disk for a resume
            try:
                while chunk := response.read1(CHUNK_BYTES):  # read1: returns what has arrived, so a stall loses nothing
                    _write_all(out, chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.advance(len(chunk))
            except TimeoutError as err:
                raise _Transient(f"no data for {timeout:g} s (timed out)") from err
            except (ConnectionError, http.client.HTTPException) as err:
                raise _Transient(f"connection lost after {offset + received} bytes ({type(err).__name__})") from err
            os.fsync(out.fileno())
        if remaining is not None and received != remaining:
            raise _Transient(f"connection closed after {offset + received} of {offset + remaining} bytes")
        return digest.hexdigest(), offset + received


def _write_all(out, chunk: bytes) -> None:
    """Write one chunk; a full disk becomes a `DownloadError` naming the file (kept for a later resume)."""
    try:
        view = memoryview(chunk)
        while view:  # an unbuffered write may be partial
            view = view[out.write(view) :]
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(
                f"{out.name}: no space left on the device ({err.strerror})",
                "free some space (or point VSWIN_HOME at a bigger disk) and run the same command again",
            ) from None
        raise


def _check_free_space(partial: Path, needed: int) -> None:
    free = shutil.disk_usage(partial.parent).free
    if free < needed:
        raise DownloadError(
            f"{partial.parent}: not enough free space for {partial.name.removesuffix('.incomplete')} "
            f"(needs {needed / 1e6:.1f} MB more, {free / 1e6:.1f} MB free)",
            "free some space (or point VSWIN_HOME at a bigger disk) and run the same command again",
        )


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _validator_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _save_validator(partial: Path, url: str, headers) -> None:
    """Remember the file's strong ETag (else Last-Modified) beside the partial file, for `If-Range` on a resume
    in a later run: resuming onto bytes of an older version of the file would give a file that is neither."""
    etag = headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    if validator:
        _validator_path(partial).write_text(json.dumps({"url": url, "validator": validator}))
    else:
        _validator_path(partial).unlink(missing_ok=True)


def _read_validator(partial: Path, url: str) -> str | None:
    try:
        saved = json.loads(_validator_path(partial).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("validator") if isinstance(saved, dict) and saved.get("url") == url else None


def _content_range_total(value: str | None) -> int | None:
    # "bytes */200" (in a 416 answer)
    try:
        return int(value.rsplit("/", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def _connection_error(url: str, reason, timeout: float) -> Exception:
    """Map a failure to connect: timeouts and resets are retried, refused/unknown host are not."""
    if isinstance(reason, TimeoutError):
        return _Transient(f"no answer within {timeout:g} s (timed out)")
    if isinstance(reason, ConnectionRefusedError):
        return DownloadError(
            f"{url}: connection refused",
            "the server is not reachable; check the URL and VSWIN_MIRROR, or download the file elsewhere and import it with `vswin fetch NAME --from FILE`",
        )
    if isinstance(reason, (ConnectionError, http.client.HTTPException)):
        return _Transient(f"connection lost ({type(reason).__name__})")
    if isinstance(reason, ssl.SSLError):
        return DownloadError(
            f"{url}: TLS error ({reason})",
            "behind a TLS-inspecting proxy? point SSL_CERT_FILE at its CA bundle, set VSWIN_MIRROR, or import the file with `vswin fetch NAME --from FILE`",
        )
    if isinstance(reason, socket.gaierror):
        return DownloadError(
            f"{url}: cannot resolve the host name ({reason.strerror})",
            "no network? download the file elsewhere, import it with `vswin fetch NAME --from FILE` and set VSWIN_OFFLINE=1; or set VSWIN_MIRROR",
        )
    return DownloadError(f"{url}: {reason}", "check the network or the mirror, then run the same command again")
