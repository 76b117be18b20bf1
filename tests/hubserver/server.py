"""A Hugging Face Hub-compatible HTTP server for tests (see shared/reference/hub-protocol.md).

The real huggingface_hub client works against it unchanged. LFS files are redirected to a second
listener on another port, the "CDN": another origin, so the client treats it as the real Hub's CDN
(it does not follow the redirect on HEAD and drops the Authorization header on GET). With a WAN profile
(`faults.wan`) both sit behind one simulated wide-area link (see wan.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .faults import BodyFaults, Faults, RequestRecord
from .spec import Commit, Content, RepoFile, RepoSpec
from .wan import WanConnection

TOKENS = {"hf_test_good": ("test-user", True), "hf_test_ungranted": ("test-ungranted", False)}
INVALID_TOKEN = "Invalid credentials in Authorization header"
_TIMESTAMP = "2024-01-01T00:00:00.000Z"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64 since Linux 4.1
TCPI_BYTES_ACKED_OFFSET = 120
TCP_INFO_BYTES = 128


@dataclasses.dataclass
class Response:
    """A response: status, headers, and a body that is either `data` or a byte range of `content`."""

    status: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    data: bytes = b""
    content: Content | None = None
    start: int = 0
    end: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start if self.content else len(self.data)

    def chunks(self) -> Iterator[bytes]:
        if self.content:
            yield from self.content.iter_bytes(self.start, self.end)
        elif self.data:
            yield self.data


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode())


def too_many_requests(retry_after_s: int) -> Response:
    return error(429, "Too many requests in flight", headers={"Retry-After": str(retry_after_s)})


def error(
    status: int,
    message: str,
    code: str | None = None,
    commit: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error as the Hub sends it: message in `X-Error-Message` and the body, code in `X-Error-Code`."""
    headers = {**(headers or {}), "X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    return json_response({"error": message}, status, {**headers, **({"X-Repo-Commit": commit} if commit else {})})


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    segments: list[str]  # the URL path split on "/" then percent-decoded (so revisions may contain "/")
    query: dict[str, list[str]]
    headers: Mapping[str, str]

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


class HubServer:
    """The test Hub: `HubServer(root).start()`, then point `HF_ENDPOINT` (or `endpoint=`) at `.url`.

    Serves `repos` (default: `build_fixtures(root)`). `.faults` injects faults, `.log` lists requests.
    """

    def __init__(
        self, root: Path | str, host: str = "127.0.0.1", port: int = 0, *, repos: Mapping[str, RepoSpec] | None = None
    ) -> None:
        if repos is None:
            from .fixtures import build_fixtures

            repos = build_fixtures(root)
        self.root = Path(root)
        self.repos = dict(repos)
        self.faults = Faults()
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._blobs = {
            f.sha256: f.content
            for spec in self.repos.values()
            for c in spec.commits.values()
            for f in c.files.values()
            if f.sha256
        }
        self._listeners = [_Listener((host, port), self), _Listener((host, 0), self)]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The Hub endpoint."""
        return self._listeners[0].url

    @property
    def cdn_url(self) -> str:
        """Where LFS files are redirected to (another origin)."""
        return self._listeners[1].url

    @property
    def log(self) -> list[RequestRecord]:
        """Requests answered so far, oldest first."""
        with self._log_lock:
            return list(self._log)

    def cdn_gets(self, name: str) -> list[RequestRecord]:
        """The GETs the CDN origin answered for files called `name` (LFS files' bytes come from there)."""
        return [r for r in self.log if r.method == "GET" and r.path.startswith("/cdn/") and r.path.endswith("/" + name)]

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(record)

    def start(self) -> HubServer:
        """Serve in background threads; returns self."""
        for listener in self._listeners:
            thread = threading.Thread(target=listener.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for listener in self._listeners:
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- routing -----------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        """Answer one request (faults aside)."""
        segments = request.segments
        if segments[:1] == ["cdn"]:
            return self._cdn(request)
        if request.token is not None and request.token not in TOKENS:
            return error(401, INVALID_TOKEN)
        if segments[:2] == ["api", "whoami-v2"] and request.method == "GET":
            return self._whoami(request)
        if segments[:2] == ["api", "models"] and request.method == "GET":
            return self._api_models(request, segments[2:])
        if "resolve" in segments[1:3]:
            return self._resolve(request)
        return error(404, f"Not found: /{'/'.join(segments)}")

    def _repo(self, segments: list[str]) -> tuple[RepoSpec | None, list[str]]:
        """The repo named by the leading segments (`org/name` or `name`), and the segments after it."""
        for size in (2, 1):
            spec = self.repos.get("/".join(segments[:size])) if len(segments) >= size else None
            if spec is not None:
                return spec, segments[size:]
        return None, segments

    def _visible(self, spec: RepoSpec | None, request: Request) -> bool:
        return spec is not None and (not spec.private or request.token in TOKENS)

    def _api_models(self, request: Request, segments: list[str]) -> Response:
        spec, rest = self._repo(segments)
        if spec is None or not self._visible(spec, request):
            return error(404, "Repository not found", "RepoNotFound")
        if not rest or rest[0] in ("revision", "tree"):
            commit = spec.commit(rest[1] if len(rest) > 1 else "main")
            if commit is None:
                return error(404, f"Invalid rev id: {rest[1]}", "RevisionNotFound")
            if rest[:1] == ["tree"]:
                return self._tree(commit, "/".join(rest[2:]), request)
            if len(rest) <= 2:
                rewrite = self.faults.model_info.get(spec.repo_id)
                info = model_info(spec, commit)
                return json_response(rewrite(info) if rewrite else info)
        return error(404, f"Not found: /api/models/{'/'.join(segments)}")

    def _tree(self, commit: Commit, prefix: str, request: Request) -> Response:
        recursive = request.query.get("recursive", ["false"])[0].lower() in ("true", "1")
        entries = tree_entries(commit, prefix, recursive)
        if prefix and not entries:
            return error(404, f"Entry not found: {prefix}", "EntryNotFound", commit.sha)
        return json_response(entries)

    def _whoami(self, request: Request) -> Response:
        if request.token is None:
            return error(401, "Invalid username or password.")
        name, _ = TOKENS[request.token]
        return json_response(
            {
                "type": "user",
                "id": hashlib.sha1(name.encode()).hexdigest()[:24],
                "name": name,
                "fullname": name,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": f"{name}-token", "role": "read"}},
            }
        )

    def _resolve(self, request: Request) -> Response:
        spec, rest = self._repo(request.segments)
        if spec is None or rest[:1] != ["resolve"] or not self._visible(spec, request):
            return error(404, "Repository not found", "RepoNotFound")
        denied = gate(spec, request.token)
        if denied is not None:
            return denied
        commit = spec.commit(rest[1]) if len(rest) > 1 else None
        if commit is None:
            return error(404, "Invalid rev id", "RevisionNotFound")
        file = commit.files.get("/".join(rest[2:]))
        if file is None:
            return error(404, "Entry not found", "EntryNotFound", commit.sha)
        if file.lfs:
            return self._redirect_to_cdn(spec, commit, file)
        return ranged(file.content, request, {"X-Repo-Commit": commit.sha, "ETag": f'"{file.blob_id}"'})

    def _redirect_to_cdn(self, spec: RepoSpec, commit: Commit, file: RepoFile) -> Response:
        location = f"{self.cdn_url}/cdn/{file.sha256}/{quote(spec.repo_id)}/{quote(file.path)}"
        ttl = self.faults.wan.url_ttl_s if self.faults.wan else None
        if ttl is not None:
            location += f"?expires={math.ceil(time.time() + ttl)}"
        return Response(
            302,
            {
                "Location": location,
                "X-Repo-Commit": commit.sha,
                "ETag": f'"{file.blob_id}"',
                "X-Linked-Etag": f'"{file.sha256}"',
                "X-Linked-Size": str(file.size),
            },
        )

    def _cdn(self, request: Request) -> Response:
        content = self._blobs.get(request.segments[1]) if len(request.segments) > 1 else None
        if content is None:
            return error(404, "NoSuchKey")
        if expired(request.query.get("expires")):
            return error(403, "Request has expired", "AccessDenied")
        return ranged(content, request, {"ETag": f'"{request.segments[1]}"'})


def gate(spec: RepoSpec, token: str | None) -> Response | None:
    """Refuse the content of a gated repo: 401 without a token, 403 for a token without access."""
    if not spec.gated or (token in TOKENS and TOKENS[token][1]):
        return None
    if token is None:
        return error(
            401,
            f"Access to model {spec.repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in.",
            "GatedRepo",
        )
    return error(
        403,
        f"Access to model {spec.repo_id} is restricted and you are not in the authorized list. "
        f"Visit https://huggingface.co/{spec.repo_id} to ask for access.",
        "GatedRepo",
    )


def expired(expires: list[str] | None) -> bool:
    """Whether a CDN URL's `expires` (unix seconds; a URL without one never expires) has passed."""
    if expires is None:
        return False
    try:
        return time.time() > int(expires[0])
    except ValueError:
        return True


def ranged(content: Content, request: Request, headers: dict[str, str]) -> Response:
    """200 with the whole content, 206 for a satisfiable `Range: bytes=a-b`, else 416."""
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    header = request.headers.get("Range")
    if header is None:
        return Response(200, headers, content=content, end=content.size)
    span = parse_range(header, content.size)
    if span is None:
        return Response(416, {**headers, "Content-Range": f"bytes */{content.size}"})
    start, end = span
    return Response(
        206,
        {**headers, "Content-Range": f"bytes {start}-{end - 1}/{content.size}"},
        content=content,
        start=start,
        end=end,
    )


def shift_range(response: Response, shift: int, header_lies: bool) -> None:
    """Send the bytes from `shift` before the range asked for (a range from byte 0 stays as it is),
    saying so unless the header lies."""
    if response.start < shift:
        return
    response.start, response.end = response.start - shift, response.end - shift
    if not header_lies and response.content is not None:
        size = response.content.size
        response.headers["Content-Range"] = f"bytes {response.start}-{response.end - 1}/{size}"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single-range header against `size`, or None when malformed or unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < end else None


def tree_entries(commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """The tree listing under `prefix`: files and directories, as the Hub's tree API returns them."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    entries: dict[str, dict[str, Any]] = {}
    for file in sorted(commit.files.values(), key=lambda f: f.path):
        if not file.path.startswith(base):
            continue
        parts = file.path[len(base) :].split("/")
        for depth in range(1, len(parts)):
            directory = base + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(
                    directory,
                    {
                        "type": "directory",
                        "path": directory,
                        "size": 0,
                        "oid": hashlib.sha1(directory.encode()).hexdigest(),
                    },
                )
        if recursive or len(parts) == 1:
            entries[file.path] = file_entry(file)
    return list(entries.values())


def file_entry(file: RepoFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "path": file.path, "size": file.size, "oid": file.blob_id}
    if file.lfs:
        entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": file.pointer_size}
    return entry


def model_info(spec: RepoSpec, commit: Commit) -> dict[str, Any]:
    """`GET /api/models/{repo}[/revision/{rev}]` as the Hub answers it (with file metadata)."""
    siblings = [
        {
            "rfilename": f.path,
            "size": f.size,
            "blobId": f.blob_id,
            **({"lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}} if f.lfs else {}),
        }
        for f in sorted(commit.files.values(), key=lambda f: f.path)
    ]
    info: dict[str, Any] = {
        "_id": hashlib.sha1(spec.repo_id.encode()).hexdigest()[:24],
        "id": spec.repo_id,
        "modelId": spec.repo_id,
        "author": spec.repo_id.split("/")[0] if "/" in spec.repo_id else None,
        "sha": commit.sha,
        "lastModified": _TIMESTAMP,
        "createdAt": _TIMESTAMP,
        "private": spec.private,
        "gated": spec.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": spec.library_name,
        "pipeline_tag": "text-generation",
        "tags": list(spec.tags),
        "cardData": {"license": spec.license},
        "siblings": siblings,
        "usedStorage": sum(f.size for f in commit.files.values()),
    }
    if "config.json" in commit.files:
        config = json.loads(commit.files["config.json"].read_bytes())
        info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
    if spec.params:
        info["safetensors"] = {"parameters": spec.params, "total": sum(spec.params.values())}
    return info


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops the SYNs of parallel downloaders' connections beyond
    # it, and each dropped one waits a whole second to retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        super().__init__(address, _Handler)
        self.hub = hub

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As the Hub's and CDNs' servers send: with Nagle's algorithm, a small body written after its headers
    # on a reused connection waited for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server: _Listener
    _wan: WanConnection | None = None

    def setup(self) -> None:
        super().setup()
        wan = self._wan_connection()
        if wan is not None:
            wan.handshake()

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is `HubServer.log`."""

    def _wan_connection(self) -> WanConnection | None:
        """This connection on the current WAN link, or None without one. A connection made before the
        link joins it at its next request (and is counted then)."""
        link = self.server.hub.faults.wan_link
        if link is None:
            return None
        if self._wan is None or self._wan.link is not link:
            self._wan = link.connect()
        return self._wan

    def _serve(self) -> None:
        wan = self._wan_connection()
        with wan.link.request() if wan else contextlib.nullcontext(True) as admitted:
            self._answer(wan, admitted)

    def _answer(self, wan: WanConnection | None, admitted: bool) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        faults = hub.faults.on_request(url.path)
        headers = copy.copy(self.headers)
        if faults.ignore_range:
            del headers["Range"]
        request = Request(
            self.command, [unquote(s) for s in url.path.strip("/").split("/")], parse_qs(url.query), headers
        )
        if faults.stall_s:
            time.sleep(faults.stall_s)
        if not admitted:
            response = too_many_requests(wan.link.profile.retry_after_s)  # type: ignore[union-attr]
        elif faults.fail_status:
            response = error(faults.fail_status, "Injected server error")
        else:
            response = hub.route(request)
        if faults.range_shift and response.status == 206:
            shift_range(response, faults.range_shift, faults.range_header_lies)
        record = RequestRecord(
            self.command, url.path, response.status, self.headers.get("Range"), 0, self.headers, url.query
        )
        hub.record(record)
        if wan is not None:
            wan.round_trip()
        acked_before = _bytes_acked(self.connection)
        header_bytes = 0
        try:
            header_bytes = self._send_headers(response)
            if self.command != "HEAD":
                self._send_body(response, hub.faults.on_body(url.path, response.length), record, wan)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if acked_before is not None and (acked := _bytes_acked(self.connection)) is not None:
                delivered = min(record.bytes_sent, max(0, acked - acked_before - header_bytes))
                record.undelivered = record.bytes_sent - delivered
        finally:
            record.finished = True

    def _send_headers(self, response: Response) -> int:
        """Send the status line and headers; returns their length in bytes."""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(response.length))
        length = sum(map(len, self._headers_buffer)) + len(b"\r\n")  # end_headers adds the blank line
        self.end_headers()
        return length

    def _send_body(
        self, response: Response, faults: BodyFaults, record: RequestRecord, wan: WanConnection | None
    ) -> None:
        """Stream the body, counting bytes in `record` before each write (so the log is never behind)."""
        started = time.monotonic()
        piece_size = max(1, min(64 * 1024, faults.throttle_bps // 20)) if faults.throttle_bps else 1 << 20
        if wan is not None:
            piece_size = min(piece_size, wan.piece_bytes)
        for chunk in response.chunks():
            view = memoryview(chunk)  # pieces without copies
            for offset in range(0, len(view), piece_size):
                piece = view[offset : offset + piece_size]
                if faults.corrupt and record.bytes_sent == 0:
                    piece = memoryview(bytes([piece[0] ^ 0xFF]) + piece[1:])
                cut = faults.cut_after is not None and record.bytes_sent + len(piece) > faults.cut_after
                if cut:
                    piece = piece[: faults.cut_after - record.bytes_sent]  # type: ignore[operator]
                if wan is not None:
                    wan.wait_to_send(len(piece))
                record.bytes_sent += len(piece)
                self.wfile.write(piece)
                if cut:
                    self.close_connection = True
                    return
                if faults.throttle_bps:
                    time.sleep(max(0.0, started + record.bytes_sent / faults.throttle_bps - time.monotonic()))


def _bytes_acked(connection: socket.socket) -> int | None:
    """Bytes the peer's TCP has acknowledged on `connection` (Linux's tcp_info), None where unknown."""
    try:
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except (AttributeError, OSError):
        return None
    return struct.unpack_from("Q", info, TCPI_BYTES_ACKED_OFFSET)[0] if len(info) >= TCP_INFO_BYTES else None
