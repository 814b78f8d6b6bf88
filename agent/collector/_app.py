"""The collector's ASGI app (Starlette): routes, API-key auth, body limits, REST endpoints.

Routes (protocol §1.1 and §4): ``POST /api/graphql``, ``POST /api/upload/file`` (signing),
``POST|PUT /api/upload/direct/<token>`` (one-time upload target, no API key),
``GET /api/files/<object key>?token=...`` (signed read), ``POST /api/export/dataset``,
``POST /api/my-project`` and ``GET /health``. Blocking work (storage, GraphQL execution)
runs in worker threads; the event loop only moves bytes. ``POST /api/graphql``, the ingest
hot path, is served by a plain ASGI handler ahead of Starlette's routing
(:class:`_GraphQLRoute`), which answers exactly as the Starlette route does.

Uploaded files and replicas. On SQLite (one machine) uploaded bytes are files under the
upload folder (``<data dir>/uploads/<object key>``, written atomically, never outside the
folder). On a shared storage (PostgreSQL, ``storage.shared``) replicas are stateless:
everything a request needs is in the database they share.

* The signing secret is a storage setting (``file_signing_secret``), created once.
* An upload URL carries a signed token (HMAC-SHA256 over object key, content type, expiry
  and a nonce), so any replica can verify it; it is single-use: the first upload claims the
  nonce in the storage's settings (one small row per upload), a second one gets 404.
* On a shared storage the bytes go in the ``file`` record (``data``), so any replica serves
  them; a record without bytes is served from the upload folder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import msgspec
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.collector._fastpath import Submit
from agent.collector._graphql import BadRequestError, GraphQLService
from agent.collector._resolvers import RequestContext
from agent.collector._storage import Record, Storage, Write

log = structlog.get_logger(__name__)

#: Default largest request body accepted (bytes).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: How long a one-time upload URL stays valid (seconds).
UPLOAD_TOKEN_TTL = 600.0
#: Seconds between two deletions of the use marks of expired upload tokens (per process).
CLAIM_PURGE_INTERVAL = 60.0
#: Seconds a use mark is kept after its token expired.
CLAIM_GRACE = 300.0
_CLAIM_PREFIX = "upload-used:"
#: GraphQL requests executed at once (each in a worker thread; CPU-bound, GIL-bound).
GRAPHQL_THREADS = 4
#: Longest accepted ``x-env`` header value.
MAX_ENV_LENGTH = 64

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class HTTPError(Exception):
    """An error answered as ``{"message": ...}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class _PendingUpload:
    """What a verified upload token allows: one upload of ``object_key``."""

    object_key: str
    mime: str
    expires: float
    nonce: str


class Collector:
    """State shared by the routes: storage, keys, limits, upload tokens and file signing."""

    def __init__(
        self,
        storage: Storage,
        *,
        api_keys: Sequence[str],
        max_body_bytes: int,
        upload_dir: Path,
        public_url: str | None,
    ) -> None:
        if not api_keys:
            raise ValueError("at least one API key is required")
        self.storage = storage
        self.graphql = GraphQLService(storage)
        self._keys = [k.encode() for k in api_keys]
        self.max_body_bytes = max_body_bytes
        self.upload_dir = upload_dir
        self.public_url = public_url.rstrip("/") if public_url else None
        self._secret = storage.setting("file_signing_secret", secrets.token_hex(32)).encode()
        self._claims_purged_at = 0.0
        # a key of its own for upload tokens, derived from the shared secret
        self._upload_key = hmac.new(self._secret, b"upload-token", hashlib.sha256).digest()
        self._graphql_limiter: anyio.CapacityLimiter | None = None
        self._base_urls: dict[tuple[Any, ...], str] = {}

    def graphql_limiter(self) -> anyio.CapacityLimiter:
        """Worker threads running GraphQL at once: more only fight for the GIL."""
        if self._graphql_limiter is None:
            self._graphql_limiter = anyio.CapacityLimiter(GRAPHQL_THREADS)
        return self._graphql_limiter

    # -- request helpers -------------------------------------------------------------------

    def check_key(self, request: Request) -> None:
        self.check_key_value(request.headers.get("x-api-key", ""))

    def check_key_value(self, given: str) -> None:
        """401 unless ``given`` (the ``x-api-key`` header, latin-1 decoded) is one of the keys."""
        if not any(hmac.compare_digest(given.encode(), key) for key in self._keys):
            raise HTTPError(401, "Missing or invalid API key (x-api-key header)")

    async def read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise HTTPError(413, f"Request body larger than {limit} bytes")
            except ValueError:
                raise HTTPError(400, "Invalid Content-Length header") from None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"Request body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: Request) -> dict[str, Any]:
        body = await self.read_body(request)
        try:
            value = _decoder.decode(body) if body.strip() else {}
        except msgspec.DecodeError as exc:
            raise HTTPError(400, f"Malformed JSON body: {exc}") from None
        if not isinstance(value, dict):
            raise HTTPError(400, "JSON body must be an object")
        return value

    def base_url(self, request: Request) -> str:
        return self.public_url or str(request.base_url).rstrip("/")

    def context(self, request: Request) -> RequestContext:
        return self.context_for(request.headers.get("x-env"), self.base_url(request))

    def context_for(self, env: str | None, base: str) -> RequestContext:
        """The GraphQL context of a request with this ``x-env`` header and base URL."""
        env = env or "prod"
        if len(env) > MAX_ENV_LENGTH:
            raise HTTPError(400, f"x-env header longer than {MAX_ENV_LENGTH} characters")
        return RequestContext(self.storage, env, base, lambda key: self.file_url(base, key))

    def scope_base_url(self, scope: Scope, host: bytes | None) -> str:
        """:meth:`base_url` of a request scope, computed once per distinct host, scheme,
        server and root path (Starlette's URL building costs more than the lookup)."""
        if self.public_url:
            return self.public_url
        key = (
            host,
            scope.get("scheme"),
            scope.get("server"),
            scope.get("root_path"),
            scope.get("app_root_path"),
        )
        base = self._base_urls.get(key)
        if base is None:
            if len(self._base_urls) >= 256:  # client-chosen Host values: keep it bounded
                self._base_urls.clear()
            base = self._base_urls[key] = str(Request(scope).base_url).rstrip("/")
        return base

    # -- files -----------------------------------------------------------------------------

    def sign(self, object_key: str) -> str:
        return hmac.new(self._secret, object_key.encode(), hashlib.sha256).hexdigest()[:40]

    def file_url(self, base: str, object_key: str) -> str:
        return f"{base}/api/files/{quote(object_key)}?token={self.sign(object_key)}"

    def file_path(self, object_key: str) -> Path:
        parts = object_key.split("/")
        if len(parts) != 3 or not all(_SEGMENT.match(p) for p in parts):
            raise HTTPError(400, "Invalid object key")
        root = self.upload_dir.resolve()
        path = (root / object_key).resolve()
        if not path.is_relative_to(root):
            raise HTTPError(400, "Invalid object key")
        return path

    def new_upload(self, object_key: str, mime: str, ttl: float = UPLOAD_TOKEN_TTL) -> str:
        """A signed one-time upload token for ``object_key`` (any replica can verify it)."""
        expires = int(time.time() + ttl)
        payload = _b64(_encoder.encode([object_key, mime, expires, secrets.token_urlsafe(12)]))
        signature = hmac.new(self._upload_key, payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(signature)}"

    def check_upload(self, token: str) -> _PendingUpload:
        """The upload a token allows; 404 when forged, malformed or expired."""
        unknown = HTTPError(404, "Unknown or expired upload URL")
        payload, _, signature = token.partition(".")
        expected = hmac.new(self._upload_key, payload.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(signature), expected):
                raise unknown
            object_key, mime, expires, nonce = _decoder.decode(_unb64(payload))
        except (ValueError, TypeError, msgspec.DecodeError):
            raise unknown from None
        if expires < time.time():
            raise unknown
        return _PendingUpload(str(object_key), str(mime), float(expires), str(nonce))

    def claim_upload(self, pending: _PendingUpload) -> None:
        """Mark the token used (atomically, in the shared storage); 404 if it already was.

        The mark's key starts with the token's expiry, so that marks of expired tokens
        (which :meth:`check_upload` refuses anyway) can be deleted by key range: at most
        once per :data:`CLAIM_PURGE_INTERVAL` per process, and only marks expired for longer
        than :data:`CLAIM_GRACE` (clocks of replicas may differ a little).
        """
        claim = secrets.token_hex(8)
        key = f"{_CLAIM_PREFIX}{int(pending.expires):012d}:{pending.nonce}"
        if self.storage.setting(key, claim) != claim:
            raise HTTPError(404, "Unknown or expired upload URL")
        now = time.time()
        if now - self._claims_purged_at >= CLAIM_PURGE_INTERVAL:
            self._claims_purged_at = now
            self.purge_claims(now)

    def purge_claims(self, now: float) -> int:
        """Delete the use marks of tokens expired before ``now - CLAIM_GRACE``."""
        high = f"{_CLAIM_PREFIX}{int(now - CLAIM_GRACE):012d}"
        return self.storage.delete_settings(_CLAIM_PREFIX, high)


def _segment(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise HTTPError(400, f"Invalid {what}: use letters, digits, '.', '_' or '-' (no path)")
    return value


def _multipart_file(content_type: str, body: bytes) -> tuple[bytes, str | None]:
    """Return the ``file`` part of a multipart/form-data body and its content type."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise HTTPError(400, "Expected a multipart/form-data body")
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return (payload if isinstance(payload, bytes) else b""), part.get_content_type()
    raise HTTPError(400, "Multipart body has no 'file' part")


Endpoint = Callable[[Collector, Request], Awaitable[Response]]


def _route(
    collector: Collector, endpoint: Endpoint, *, auth: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            if auth:
                collector.check_key(request)
            return await endpoint(collector, request)
        except HTTPError as exc:
            if exc.status >= 500:
                log.error("collector request failed", path=request.url.path, status=exc.status)
            return _json({"message": exc.message}, exc.status)

    return handle


# -- endpoints ---------------------------------------------------------------------------


async def _graphql(collector: Collector, request: Request) -> Response:
    ctx = collector.context(request)
    body = await collector.read_body(request)
    status, payload = await _answer_graphql(collector, body, ctx)
    return Response(payload, status_code=status, media_type="application/json")


async def _answer_graphql(
    collector: Collector, body: bytes, ctx: RequestContext
) -> tuple[int, bytes]:
    try:
        deferred = collector.graphql.handle_deferred(body, ctx)
        if deferred is not None:
            # The common send_steps batch: checked here, written by the storage's writer
            # thread with no worker thread waiting for it (writes queued meanwhile commit
            # together, in one transaction); answered once committed or, with the ingest
            # journal, once journaled.
            payload, submit = deferred
            await _committed(submit)
            return 200, payload
        payload = await anyio.to_thread.run_sync(
            collector.graphql.handle, body, ctx, limiter=collector.graphql_limiter()
        )
    except BadRequestError as exc:
        return 400, _encoder.encode({"message": str(exc), "errors": [{"message": str(exc)}]})
    except Exception as exc:  # the storage failed (disk full, I/O error)
        reason = f"{type(exc).__name__}: {exc}"
        log.error("collector request failed", path="/api/graphql", error=reason)
        message = f"The collector failed to answer ({reason}); the request can be retried"
        return 500, _encoder.encode({"message": message, "errors": [{"message": message}]})
    return 200, payload


async def _committed(submit: Submit) -> None:
    """Queue a deferred write and wait until it is kept: committed, or appended to the
    ingest journal, in which case ``submit`` calls back at once from this thread (raising
    its error, if any)."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def done(error: BaseException | None) -> None:  # in the writer thread, or journaled
        if threading.get_ident() == loop_thread:
            settle(error)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    submit(done)
    await future


class _GraphQLRoute:
    """``POST /api/graphql`` as plain ASGI, ahead of Starlette's routing (the ingest hot
    path): no Request/Response objects, routing or per-request header parsing. It answers
    exactly as the Starlette route (:func:`_graphql` under :func:`_route`) does, which still
    serves the requests this one passes on (other paths and methods, a root path).
    """

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/api/graphql"
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        collector = self.collector
        key = env = host = length = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"x-api-key":
                key = value if key is None else key
            elif name == b"x-env":
                env = value if env is None else env
            elif name == b"host":
                host = value if host is None else host
            elif name == b"content-length":
                length = value if length is None else length
        try:
            collector.check_key_value("" if key is None else key.decode("latin-1"))
            ctx = collector.context_for(
                None if env is None else env.decode("latin-1"),
                collector.scope_base_url(scope, host),
            )
            body = await _receive_body(collector.max_body_bytes, length, receive)
            status, payload = await _answer_graphql(collector, body, ctx)
        except HTTPError as exc:
            if exc.status >= 500:  # pragma: no cover - none raised on this route
                log.error("collector request failed", path=scope["path"], status=exc.status)
            status, payload = exc.status, _encoder.encode({"message": exc.message})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(payload)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _receive_body(limit: int, declared: bytes | None, receive: Receive) -> bytes:
    """The request body, as :meth:`Collector.read_body` reads it from a Starlette request."""
    if declared is not None:
        try:
            if int(declared.decode("latin-1")) > limit:
                raise HTTPError(413, f"Request body larger than {limit} bytes")
        except ValueError:
            raise HTTPError(400, "Invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"Request body larger than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _health(collector: Collector, request: Request) -> Response:
    """``{"status": "ok"}`` to anyone; with a valid key, the ingest journal's counts too."""
    answer: dict[str, Any] = {"status": "ok"}
    try:
        collector.check_key(request)
    except HTTPError:
        return _json(answer)
    stats = getattr(collector.storage, "ingest_journal_stats", None)
    journal = stats() if stats is not None else None
    if journal is not None:
        answer["ingestJournal"] = journal
    return _json(answer)


async def _my_project(collector: Collector, request: Request) -> Response:
    await collector.read_json(request)
    return _json({"projectId": collector.storage.project_id})


async def _sign_upload(collector: Collector, request: Request) -> Response:
    body = await collector.read_json(request)
    file_name = _segment(body.get("fileName"), "fileName")
    thread_id = body.get("threadId")
    thread = "none" if thread_id is None else _segment(thread_id, "threadId")
    mime = body.get("contentType") or "application/octet-stream"
    if not isinstance(mime, str) or len(mime) > 200:
        raise HTTPError(400, "Invalid contentType")
    object_key = f"{collector.storage.project_id}/{thread}/{file_name}"
    collector.file_path(object_key)
    token = collector.new_upload(object_key, mime)
    base = collector.base_url(request)
    return _json(
        {
            "post": {
                "url": f"{base}/api/upload/direct/{token}",
                "fields": {"key": object_key},
                "uploadType": "multipart",
            },
            "signedUrl": collector.file_url(base, object_key),
            "objectKey": object_key,
        }
    )


async def _direct_upload(collector: Collector, request: Request) -> Response:
    pending = collector.check_upload(request.path_params["token"])
    collector.file_path(pending.object_key)  # signed by us, checked again all the same
    body = await collector.read_body(request)
    content_type = request.headers.get("content-type", "")
    mime = pending.mime
    if content_type.startswith("multipart/form-data"):
        data, part_type = await anyio.to_thread.run_sync(_multipart_file, content_type, body)
        mime = part_type if part_type and part_type != "text/plain" else mime
    else:
        data = body

    def store() -> None:
        collector.claim_upload(pending)
        record: Record = {"id": pending.object_key, "mime": mime, "size": len(data)}
        if collector.storage.shared:
            record["data"] = data
        else:
            path = collector.file_path(pending.object_key)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
            tmp.write_bytes(data)
            tmp.replace(path)
        collector.storage.write([Write("file", [record])])

    await anyio.to_thread.run_sync(store)
    return Response(status_code=204)


async def _serve_file(collector: Collector, request: Request) -> Response:
    object_key = request.path_params["key"]
    token = request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), collector.sign(object_key).encode()):
        collector.check_key(request)
    path = collector.file_path(object_key)
    found = await anyio.to_thread.run_sync(collector.storage.get, "file", [object_key])
    record = found.get(object_key)
    if record is None:
        raise HTTPError(404, "File not found")
    mime = record.get("mime") or "application/octet-stream"
    data = record.get("data")
    if data is not None:
        return Response(bytes(data), media_type=mime)
    if not path.is_file():  # kept on disk (SQLite), and removed since
        raise HTTPError(404, "File not found")
    return FileResponse(path, media_type=mime)


async def _export_dataset(collector: Collector, request: Request) -> Response:
    body = await collector.read_json(request)
    storage = collector.storage

    def load() -> Record | None:
        dataset = None
        if body.get("id"):
            dataset = storage.get("dataset", [str(body["id"])]).get(str(body["id"]))
        elif body.get("name"):
            found = storage.find("dataset", "name", [str(body["name"])], limit=1)
            dataset = found[0] if found else None
        if dataset is None:
            return None
        items = storage.find("dataset_item", "datasetId", [dataset["id"]], oldest_first=True)
        return {**dataset, "items": items}

    return _json({"data": await anyio.to_thread.run_sync(load)})


def create_app(
    storage: Storage,
    *,
    api_keys: Sequence[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    upload_dir: str | Path,
    public_url: str | None = None,
    graphql_fast_route: bool = True,
) -> Starlette:
    """Build the collector app over ``storage`` (the caller owns and closes the storage).

    Uploaded bytes go under ``upload_dir``, or into ``storage`` when it is shared by replicas.
    ``graphql_fast_route=False`` serves ``POST /api/graphql`` through Starlette's routing
    only (the tests compare both).
    """
    collector = Collector(
        storage,
        api_keys=api_keys,
        max_body_bytes=max_body_bytes,
        upload_dir=Path(upload_dir),
        public_url=public_url,
    )
    routes = [
        Route("/health", _route(collector, _health, auth=False), methods=["GET"]),
        Route("/api/graphql", _route(collector, _graphql), methods=["POST"]),
        Route("/api/my-project", _route(collector, _my_project), methods=["POST"]),
        Route("/api/export/dataset", _route(collector, _export_dataset), methods=["POST"]),
        Route("/api/upload/file", _route(collector, _sign_upload), methods=["POST"]),
        Route(
            "/api/upload/direct/{token}",
            _route(collector, _direct_upload, auth=False),
            methods=["POST", "PUT"],
        ),
        Route("/api/files/{key:path}", _route(collector, _serve_file, auth=False), methods=["GET"]),
    ]
    middleware = [Middleware(_GraphQLRoute, collector=collector)] if graphql_fast_route else []
    app = Starlette(routes=routes, middleware=middleware)
    app.state.collector = collector
    return app
