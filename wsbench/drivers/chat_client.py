"""One chat client of the asyncio driver: HTTP login, then a picows WebSocket on ``/chat``.

picows (with uvloop) was chosen by measurement (``tests/drivers/bench_client_libs.py``; README
"Speed"): it received broadcast frames for 4.0-5.5 us of CPU each against 6.2-8.0 us for the aiohttp
client on the same loop, and 5.2-17.6 us without uvloop.

The per-frame path is as small as it can be: :meth:`ChatListener.on_ws_frame` appends the frame's bytes,
a monotonic timestamp and the client's id to one :class:`ReceiveBuffer` that every client of the
engine shares; everything else (decoding, accounting, histograms) is done in batches by the engine
(:mod:`wsbench.drivers.engine`). One shared buffer rather than one per client, so that taking a batch
costs the same with 10 clients or 5,000 (no pass over the clients).
"""

from __future__ import annotations

import time
import urllib.parse
from array import array
from dataclasses import dataclass

import aiohttp
import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_clock = time.monotonic_ns


class LoginFailed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


async def login(session: aiohttp.ClientSession, http_url: str, nickname: str) -> str:
    """``POST /login``; any 2xx or 3xx answer that sets the ``nickname`` cookie is a login (SPEC 3.5).

    Returns the cookie header value to send with the WebSocket handshake.
    """
    try:
        async with session.post(http_url + "/login", data={"nickname": nickname}, allow_redirects=False) as resp:
            await resp.read()
            if not 200 <= resp.status < 400:
                raise LoginFailed("login", f"POST /login answered {resp.status}")
            morsel = resp.cookies.get("nickname")
            if morsel is None:
                raise LoginFailed("login", f"POST /login answered {resp.status} without a nickname cookie")
            return f"nickname={morsel.coded_value}"
    except aiohttp.ClientConnectionError as exc:
        raise LoginFailed("connect", f"cannot reach {http_url}: {exc}") from None
    except TimeoutError:
        raise LoginFailed("timeout", "POST /login timed out") from None


@dataclass
class ClientState:
    """What the engine keeps per client besides the listener's buffers."""

    cid: int
    nickname: str
    role: str  # "sender" | "receiver" | "stalled"
    transport: WSTransport | None = None
    listener: ChatListener | None = None
    connect_due_ns: int = 0  # when the schedule wanted it to connect (connect time starts here)
    connect_start_ns: int = 0  # when its login started (after waiting for a concurrency slot)
    connected_ns: int = 0
    closed_ns: int = 0
    close_code: int | None = None
    close_reason: str = ""
    we_closed: bool = False
    error: str | None = None


class ReceiveBuffer:
    """Text frames received by any client, in arrival order: bytes, receive time (ns) and client id."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.times = array("q")  # handed to numpy without conversion
        self.owners = array("q")

    def take(self) -> tuple[list[bytes], array[int], array[int]]:
        """Everything received since the last call (the buffer is left empty)."""
        frames, times, owners = self.frames[:], self.times[:], self.owners[:]
        self.clear()
        return frames, times, owners

    def clear(self) -> None:
        self.frames.clear()
        del self.times[:]
        del self.owners[:]


def _discard(_: object) -> None:
    pass


class ChatListener(WSListener):
    """Puts text frames into the shared :class:`ReceiveBuffer` for the engine to process in batches."""

    def __init__(self, state: ClientState, on_close: object, rx: ReceiveBuffer) -> None:
        super().__init__()
        self.state = state
        self.cid = state.cid
        self.add_frame = rx.frames.append
        self.add_time = rx.times.append
        self.add_owner = rx.owners.append
        self.on_close = on_close

    def discard_frames(self) -> None:
        """From now on, drop what this client receives (a stalled client read again only to see its close)."""
        self.add_frame = self.add_time = self.add_owner = _discard

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            self.add_frame(frame.get_payload_as_bytes())
            self.add_time(_clock())
            self.add_owner(self.cid)
        elif frame.msg_type is _CLOSE:
            st = self.state
            if st.close_code is None:
                code = frame.get_close_code()
                st.close_code = code.value if isinstance(code, WSCloseCode) else int(code)
                try:
                    st.close_reason = frame.get_close_message().decode("utf-8", "replace")
                except Exception:  # a reason that is not text is still a close
                    st.close_reason = ""
            if not st.we_closed:  # answer the server's close; after our own, its reply ends it
                transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.state.closed_ns = _clock()
        callback = self.on_close
        if callable(callback):
            callback(self.state)


async def open_chat(
    ws_url: str,
    cookie: str,
    state: ClientState,
    on_close: object,
    timeout: float,
    rx: ReceiveBuffer,
) -> WSTransport:
    """Open ``/chat`` with the login cookie; raises :class:`LoginFailed` with a kind on failure."""
    try:
        transport, listener = await picows.ws_connect(
            lambda: ChatListener(state, on_close, rx),
            ws_url,
            extra_headers={"Cookie": cookie},
            websocket_handshake_timeout=timeout,
            enable_auto_pong=True,
            max_frame_size=64 * 1024 * 1024,
        )
    except picows.WSHandshakeError as exc:
        status = getattr(getattr(exc, "response", None), "status", None)
        raise LoginFailed("handshake", f"GET /chat was refused ({status or exc})") from None
    except (ConnectionError, OSError) as exc:
        raise LoginFailed("connect", f"cannot open {ws_url}: {exc}") from None
    except TimeoutError:
        raise LoginFailed("timeout", "the WebSocket handshake timed out") from None
    state.transport = transport
    state.listener = listener  # type: ignore[assignment]
    return transport


def nickname_for(prefix: str, tag: str, cid: int) -> str:
    return f"{prefix}{tag}-{cid}"


def client_of(nickname: str, prefix_tag: str) -> int | None:
    """The client id of one of our nicknames (``None`` for anyone else's)."""
    if not nickname.startswith(prefix_tag + "-"):
        return None
    rest = nickname[len(prefix_tag) + 1 :]
    return int(rest) if rest.isdigit() else None


def http_base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
