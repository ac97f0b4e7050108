"""The service's HTTP server (uvicorn), with its connections bounded.

uvicorn closes a keep-alive connection left idle after an answer, refuses
requests (503) past `limit_concurrency` connections or tasks, caps a
request head at h11's incomplete-event size and a WebSocket message at
`ws_max_size`; but a connection that never sends a complete request head
(nothing at all, or half a head) stays open for ever. HeadTimeoutProtocol
closes it once `head_timeout` seconds pass without a complete head; the
body's own deadline is the application's (ser.service.read_body). A request
h11 cannot parse (two Content-Length headers, a header line over the limit,
a broken chunk) gets the service's JSON error, not uvicorn's plain text; past
`limit_concurrency`, uvicorn's own 503 answers before any application runs.
HandshakeRefusingProtocol answers and closes a WebSocket handshake that
uvicorn would leave open for ever.
"""

import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Seconds an idle keep-alive connection stays open after an answer.
KEEP_ALIVE_SECONDS = 5
# Largest WebSocket message: a second of 16-bit PCM at 384 kHz x 1 fits
# with room to spare, and no words message needs more.
WS_MAX_MESSAGE_BYTES = 1 << 20


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a
    complete request head within `head_timeout` seconds of opening or of
    their last answer."""

    head_timeout = 10.0
    bad_request_body = b'{}'

    def send_400_response(self, msg):
        del msg   # h11's words: the caller gets the service's
        headers = [(b'content-type', b'application/json'), (b'connection', b'close')]
        for event in (h11.Response(status_code=400, headers=headers, reason=b'Bad Request'),
                      h11.Data(data=self.bad_request_body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_head_timer()

    def handle_websocket_upgrade(self, event):
        self._disarm_head_timer()   # the WebSocket protocol owns the transport now
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc):
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self):
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)

    def _disarm_head_timer(self):
        timer = getattr(self, '_head_timer', None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_overdue(self):
        self._head_timer = None
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        if waiting_for_head and not self.transport.is_closing():
            self.transport.close()


class HandshakeRefusingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, answering every handshake it refuses.

    h11 passes on an upgrade request whose header lines websockets then
    finds too long or too many: websockets writes its 431 into its own
    buffer and raises no event, and uvicorn, waiting for one, never sends
    the answer nor closes the connection (after the upgrade no head timeout
    runs), so such requests could hold connections for ever. A refusal's
    body is websockets' own words, which quote the request's headers (an
    API key among them): it is replaced by a plain one."""

    refused_body = 'Failed to open a WebSocket connection.\n'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        accept = self.conn.accept

        def accept_or_refuse_plainly(request):
            response = accept(request)
            if response.status_code == 101:
                return response
            return self.conn.reject(response.status_code, self.refused_body)

        self.conn.accept = accept_or_refuse_plainly

    def data_received(self, data):
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.handshake_initiated:
            self.transport.write(b''.join(self.conn.data_to_send()))
            self.transport.close()


def server(app, host, port, head_timeout, max_connections, graceful_shutdown_seconds,
           bad_request_body):
    """A uvicorn.Server for `app` with the bounds above; `bad_request_body`
    (a dict) is the JSON a request that is not HTTP gets."""
    protocol = type('HeadTimeoutProtocol', (HeadTimeoutProtocol,),
                    {'head_timeout': head_timeout,
                     'bad_request_body': json.dumps(bad_request_body).encode()})
    return uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, http=protocol, ws=HandshakeRefusingProtocol,
        ws_max_size=WS_MAX_MESSAGE_BYTES, limit_concurrency=max_connections,
        timeout_keep_alive=KEEP_ALIVE_SECONDS, log_config=None, access_log=False,
        lifespan='off', timeout_graceful_shutdown=graceful_shutdown_seconds))
