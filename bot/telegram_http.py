"""python-telegram-bot's HTTP layer on aiohttp instead of httpx.

The web server is aiohttp already. Measured on the inbound path, a Bot API call through PTB's
default httpx client cost about 2.2 ms of CPU, through aiohttp about 0.3 ms, and an update makes
one or two calls (docs/benchmarks.md). PTB supports this: a `BaseRequest` subclass does the HTTP.
"""

from __future__ import annotations

import functools
import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

DEFAULT_TIMEOUT = 5.0  # seconds, as PTB's own client
MEDIA_WRITE_TIMEOUT = 20.0


@functools.cache
def _proxy_origin(scheme: str, host: str) -> str | None:
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _proxy_for(url: str) -> str | None:
    """The environment's proxy for this URL (HTTPS_PROXY, NO_PROXY), looked up once per host."""
    parts = urlsplit(url)
    return _proxy_origin(parts.scheme, parts.hostname or "")


class JsonData(RequestData):
    """Parameters that are JSON already (no files): what `TelegramAdapter._call` sends, without
    PTB's per-parameter objects."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self._params = params

    @property
    def parameters(self) -> dict[str, Any]:
        return self._params

    @property
    def json_parameters(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self._params.items()}


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded connection pool, opened by PTB's `initialize`."""

    def __init__(self, connection_pool_size: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._pool_size = connection_pool_size
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            # No trust_env: aiohttp would then look up netrc and the proxy on a thread for every
            # request; the proxy (HTTPS_PROXY/NO_PROXY, honoured as by PTB's httpx) is found once.
            self._session = aiohttp.ClientSession(connector=connector)

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.contains_files if request_data else False
        read = self._seconds(read_timeout, self._timeout)
        connect = self._seconds(connect_timeout, self._timeout)
        write = self._seconds(write_timeout, MEDIA_WRITE_TIMEOUT if files else self._timeout)
        pool = self._seconds(pool_timeout, 1.0)
        # aiohttp has no write timeout of its own: the whole call is bounded by the sum.
        total = None if None in (read, connect, write, pool) else read + connect + write + pool
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)
        headers = {"User-Agent": self.USER_AGENT}
        body: Any = None
        if request_data is not None and files:
            body = self._form(request_data)
        elif request_data is not None:
            # JSON, not a form: aiohttp builds a multipart writer (and a random boundary) for any form.
            body = json.dumps(request_data.parameters, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                proxy=_proxy_for(url),
            ) as response:
                return response.status, await response.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{err.__class__.__name__}: {err}") from err

    @staticmethod
    def _seconds(value: Any, default: float | None) -> float | None:
        return default if isinstance(value, type(BaseRequest.DEFAULT_NONE)) else value

    @staticmethod
    def _form(request_data: RequestData) -> aiohttp.FormData:
        # Names as UTF-8 in the header, as browsers and httpx send them (not percent-encoded).
        form = aiohttp.FormData(quote_fields=False)
        for name, value in request_data.json_parameters.items():
            form.add_field(name, value)
        for name, (filename, content, mimetype) in request_data.multipart_data.items():
            form.add_field(name, content, filename=filename, content_type=mimetype)
        return form
