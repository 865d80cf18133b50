"""HTTP for the device side: one small client on the standard library.

The agent's server client, the operators' ``fleet`` CLI and the plugins that
talk HTTP (Vault, forge tarballs, the ``http`` health check) all go through
:class:`Client`. It runs on a Raspberry Pi, so it uses ``urllib`` and nothing
else, and it imports ``urllib``/``ssl`` only when the first client is made.

What it does the same way for every caller:

- **TLS** is verified by default, against the system's CAs or ``ca_file``;
  ``client_cert`` (and ``client_key``) authenticate the device; ``verify=False``
  is there for a lab, never the default.
- **Timeouts** are per request (connection and each read of the answer);
  ``deadline`` also bounds the whole exchange, so a server that answers one
  byte at a time (each read just inside the timeout) cannot hold a caller.
- **Redirects are not followed** unless asked: by default a redirect raises
  :class:`RedirectError` naming where it leads; ``redirects="return"`` hands
  it back as a response; ``redirects="follow"`` follows it. Credentials
  (``Authorization``, ``X-Vault-Token``, credentials in the URL, which are sent as
  HTTP Basic authentication) never go along to the redirect's target.
- **Errors** are one family, :class:`RequestError` (a
  :class:`~fleetcore.errors.FleetcoreError`): :class:`TransportError` when
  there was no answer (:class:`Timeout` and :class:`TLSError` among them),
  :class:`StatusError` when the answer was an error status. Each names the
  method and the URL with credentials hidden, and a status error carries the
  status, the headers, the start of the body (``body``) and a one-line excerpt
  of it in the message.
- **Bodies stream**: :class:`Response` reads in chunks (``read(n)``,
  ``readline()``, ``iter_bytes()``), and read errors are the same family.

Example::

    from fleetcore.http import Client, StatusError

    client = Client("https://server.example", ca_file=ca, timeout=15)
    state = client.get_json("/v1/state", headers={"Authorization": f"Bearer {token}"})
    with client.request("GET", "/v1/archive", headers={"Range": "bytes=100-"}) as response:
        for chunk in response.iter_bytes():
            ...
"""

from __future__ import annotations

import contextlib
import json as _json
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fleetcore.errors import FleetcoreError

if TYPE_CHECKING:
    import ssl
    import urllib.request
    from email.message import Message

Redirects = Literal["refuse", "return", "follow"]

ERROR_BODY_LIMIT = 64 * 1024
"""How much of an error answer's body is kept (``StatusError.body``)."""
EXCERPT = 200
"""How much of it, on one line, goes into the message."""
CHUNK = 1 << 16
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-vault-token", "cookie"})
"""Sent to the URL asked for only, never to where a redirect leads."""

_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s@]+@")
_SECRET_QUERY = re.compile(
    r"([?&](?:access_token|private_token|token|key|secret|password|signature|sig|"
    r"x-amz-signature|x-amz-credential|x-goog-signature)=)[^&#\s]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with credentials in URLs hidden: the user-info part
    (``https://user:token@host`` -> ``https://***@host``) and the values of
    query parameters that usually carry tokens (``?token=***``)."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def _one_line(raw: bytes, limit: int = EXCERPT) -> str:
    text = " ".join(raw[: limit * 4].decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- errors -------------------------------------------------------------------------------


class RequestError(FleetcoreError):
    """An HTTP request failed. ``url`` has credentials hidden."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.excerpt = excerpt


class TransportError(RequestError):
    """No answer: the name did not resolve, the connection was refused or
    cut, TLS failed, or the answer was not HTTP. ``reason`` is the
    underlying exception (e.g. :class:`ConnectionRefusedError`)."""

    def __init__(self, reason: BaseException | str, *, method: str, url: str) -> None:
        self.reason = reason
        super().__init__(f"{method} {url} failed: {_describe(reason)}", method=method, url=url)


class Timeout(TransportError):
    """No answer within the timeout (connecting or reading)."""


class TLSError(TransportError):
    """The TLS handshake failed, e.g. the server's certificate did not verify."""


class StatusError(RequestError):
    """The server answered with an error status (4xx, 5xx). ``body`` holds
    the start of the answer (up to ``ERROR_BODY_LIMIT`` bytes)."""

    def __init__(
        self,
        *,
        method: str,
        url: str,
        status: int,
        reason: str,
        headers: Message,
        body: bytes,
        message: str | None = None,
    ) -> None:
        self.reason = reason
        self.headers = headers
        self.body = body
        excerpt = _one_line(body)
        if message is None:
            message = f"{method} {url}: HTTP {status} {reason}".rstrip()
            if excerpt:
                message += f": {excerpt}"
        super().__init__(message, method=method, url=url, status=status, excerpt=excerpt)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return _json.loads(self.body) if self.body else None
        except ValueError:
            return None


class RedirectError(StatusError):
    """The server answered with a redirect, which was not to be followed.
    ``location`` is where it leads (absolute; credentials hidden)."""

    def __init__(self, *, location: str, **kwargs: Any) -> None:
        self.location = location
        message = (
            f"{kwargs['method']} {kwargs['url']} was redirected (HTTP {kwargs['status']}) "
            f"to {location}; redirects are not followed"
        )
        super().__init__(message=message, **kwargs)


class BadResponse(RequestError):
    """The answer came but is not what was asked for (e.g. not JSON)."""


def _describe(reason: BaseException | str) -> str:
    return redact(str(reason) or type(reason).__name__)


# -- responses ----------------------------------------------------------------------------


class Response:
    """An answer whose body has not been read yet: read it, stream it, or
    close it (it is a context manager)."""

    def __init__(self, raw: Any, *, method: str, url: str, watch: _Watch | None = None) -> None:
        self._raw = raw
        self._watch = watch
        self.method = method
        self.url = url
        """The URL answered (after redirects when they were followed), credentials hidden."""
        self.status: int = int(getattr(raw, "status", None) or raw.code)
        self.reason: str = str(getattr(raw, "reason", "") or "")
        self.headers: Message = raw.headers

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._raw.close()

    def _guard(self, call: Any, *args: Any) -> Any:
        import http.client

        try:
            return call(*args)
        except (OSError, http.client.HTTPException) as exc:
            if self._watch is not None and self._watch.expired:
                raise self._watch.error(self.method, self.url) from None
            raise _transport(exc, method=self.method, url=self.url) from None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all of it when negative). A body
        that ends before its ``Content-Length`` raises :class:`TransportError`."""
        data = bytes(self._guard(self._raw.read, size))
        if not data and size != 0:
            # http.client reports a connection closed early as the end of the
            # body when reading in pieces; the bytes still owed say otherwise.
            owed = getattr(self._raw, "length", None)
            if self._watch is not None and self._watch.expired:
                raise self._watch.error(self.method, self.url)
            if isinstance(owed, int) and owed > 0:
                raise TransportError(
                    f"connection closed with {owed} bytes of the body still to come",
                    method=self.method,
                    url=self.url,
                )
        return data

    def readline(self) -> bytes:
        return bytes(self._guard(self._raw.readline))

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The body in chunks of up to ``chunk`` bytes, as they arrive."""
        while data := self.read(chunk):
            yield data

    def json(self) -> Any:
        """The whole body as JSON; None for an empty body."""
        raw = self.read()
        if not raw:
            return None
        try:
            return _json.loads(raw)
        except ValueError as exc:
            raise BadResponse(
                f"{self.method} {self.url}: the answer is not JSON ({exc})",
                method=self.method,
                url=self.url,
                status=self.status,
                excerpt=_one_line(raw),
            ) from None


def _transport(exc: BaseException, *, method: str, url: str) -> TransportError:
    import ssl
    import urllib.error

    reason: BaseException | str = exc
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
    if isinstance(reason, TimeoutError):
        return Timeout(reason, method=method, url=url)
    if isinstance(reason, ssl.SSLError | ssl.CertificateError):
        return TLSError(reason, method=method, url=url)
    return TransportError(reason, method=method, url=url)


# -- the client ---------------------------------------------------------------------------


def tls_context(
    *,
    ca_file: str | Path | None = None,
    client_cert: str | Path | None = None,
    client_key: str | Path | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client TLS context: the system's CAs, or ``ca_file``'s; a client
    certificate when given; verification on unless ``verify`` is False."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


class Client:
    """Requests to one server (``base_url`` + a path) or to full URLs.

    ``headers`` are sent with every request; ``timeout`` (seconds) is the
    default of :meth:`request`; ``redirects`` its default handling of
    redirects; ``proxies=False`` ignores the environment's proxy settings
    (``http_proxy``...), which are used otherwise.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        redirects: Redirects = "refuse",
        proxies: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.redirects: Redirects = redirects
        # Without TLS options, http.client makes the same default context, and
        # only for https connections: a plain-http health check pays nothing.
        self._context = (
            tls_context(
                ca_file=ca_file, client_cert=client_cert, client_key=client_key, verify=verify
            )
            if ca_file or client_cert or not verify
            else None
        )
        self._proxies = proxies
        self._openers: dict[bool, urllib.request.OpenerDirector] = {}

    def _opener(self, follow: bool) -> urllib.request.OpenerDirector:
        import urllib.request

        opener = self._openers.get(follow)
        if opener is None:
            handlers: list[urllib.request.BaseHandler] = list(_watched_handlers(self._context))
            if not self._proxies:
                handlers.append(urllib.request.ProxyHandler({}))
            if not follow:
                handlers.append(_no_redirect())
            opener = self._openers[follow] = urllib.request.build_opener(*handlers)
        return opener

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        redirects: Redirects | None = None,
        raise_for_status: bool = True,
        deadline: float | None = None,
    ) -> Response:
        """Send one request; the answer's body is for the caller to read.

        ``url`` is a path under ``base_url`` or, without a base, a full
        http(s) URL. ``json`` is sent as a JSON body. An error status raises
        :class:`StatusError` unless ``raise_for_status`` is False (then it is
        returned); 304 and other non-error statuses are returned.
        ``deadline`` (seconds): the most the whole exchange may take, reading
        the body included; past it the connection is shut and reads raise
        :class:`Timeout`. None: only the per-read ``timeout``.
        """
        import http.client
        import urllib.error
        import urllib.request

        full = self.base_url + url if self.base_url else url
        shown = redact(full)
        redirects = redirects or self.redirects
        if not full.startswith(("http://", "https://")):
            raise TransportError(
                "only http:// and https:// URLs are supported", method=method, url=shown
            )
        all_headers = {**self.headers, **(headers or {})}
        if json is not None:
            body = _json.dumps(json).encode()
            all_headers.setdefault("Content-Type", "application/json")
        full, basic = _split_credentials(full)
        request = urllib.request.Request(full, data=body, method=method)  # noqa: S310 - http(s) checked above
        for key, value in all_headers.items():
            if key.lower() in SECRET_HEADERS:
                request.add_unredirected_header(key, value)
            else:
                request.add_header(key, value)
        if basic is not None and "authorization" not in {k.lower() for k in all_headers}:
            request.add_unredirected_header("Authorization", f"Basic {basic}")
        watch = _Watch(deadline) if deadline is not None else None
        _watching.current = watch
        try:
            raw = self._opener(redirects == "follow").open(
                request, timeout=self.timeout if timeout is None else timeout
            )
        except urllib.error.HTTPError as exc:
            raw = exc
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if watch is not None:
                watch.cancel()
                if watch.expired:
                    raise watch.error(method, shown) from None
            raise _transport(exc, method=method, url=shown) from None
        finally:
            _watching.current = None
        response = Response(raw, method=method, url=redact(raw.geturl() or full), watch=watch)
        status = response.status
        location = response.headers.get("Location") if response.headers else None
        if status in REDIRECT_STATUSES and location and redirects == "refuse":
            import urllib.parse

            with response:
                raise RedirectError(
                    location=redact(urllib.parse.urljoin(full, location)),
                    **_error_fields(response, shown),
                )
        if status >= 400 and raise_for_status:
            with response:
                raise StatusError(**_error_fields(response, shown))
        return response

    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET ``url`` and return its JSON body (None when empty)."""
        with self.request("GET", url, **kwargs) as response:
            return response.json()

    def send_json(self, method: str, url: str, payload: Any, **kwargs: Any) -> Any:
        """Send ``payload`` as JSON and return the JSON answer (None when empty)."""
        with self.request(method, url, json=payload, **kwargs) as response:
            return response.json()


def _error_fields(response: Response, shown: str) -> dict[str, Any]:
    try:
        body = response.read(ERROR_BODY_LIMIT)
    except TransportError:
        body = b""
    return {
        "method": response.method,
        "url": shown,
        "status": response.status,
        "reason": response.reason,
        "headers": response.headers,
        "body": body,
    }


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its user-info, and that user-info as HTTP Basic credentials."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urlunsplit(parts._replace(netloc=netloc)), basic


def _no_redirect() -> urllib.request.HTTPRedirectHandler:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """Redirects come back as HTTPError; the client decides what they mean."""

        def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
            return None

    return NoRedirect()


# -- deadlines ----------------------------------------------------------------------------

_watching = threading.local()
"""The deadline of the request this thread is opening: its connection registers here."""


class _Watch:
    """Shuts a request's socket when its deadline passes, wherever the
    exchange is (headers or body): the per-read timeout alone lets a server
    that trickles bytes hold the caller forever."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def error(self, method: str, url: str) -> Timeout:
        return Timeout(f"no complete answer within {self.seconds:g}s", method=method, url=url)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watched_handlers(
    context: ssl.SSLContext | None,
) -> tuple[urllib.request.BaseHandler, ...]:
    """urllib's HTTP and HTTPS handlers, with connections that register their
    socket with the request's deadline."""
    import http.client
    import urllib.request

    def register(conn: http.client.HTTPConnection) -> None:
        watch = getattr(_watching, "current", None)
        if watch is not None and conn.sock is not None:
            watch.attach(conn.sock)

    class WatchedHTTP(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            register(self)

    class WatchedHTTPS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            register(self)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedHTTP, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            kwargs: dict[str, Any] = {"context": self._context}  # type: ignore[attr-defined]
            if hasattr(self, "_check_hostname"):  # Python < 3.12
                kwargs["check_hostname"] = self._check_hostname
            return self.do_open(WatchedHTTPS, req, **kwargs)

    return HTTPHandler(), HTTPSHandler(context=context)
