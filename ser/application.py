"""The service's Starlette application: POST /emotion-recognition
(ser.service), the /emotion-stream WebSocket (ser.stream_protocol),
GET /health, GET /metrics and, unless turned off, the live page (ser.page).
serve.py runs it with uvicorn (ser.connections bounds its connections)."""

import functools
import logging
import time

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

import helper
from ser import metrics, page
from ser.service import (CLIENT_LEFT, STREAM_SUBPROTOCOL, UNAUTHORISED, RequestError,
                         error_response, read_body, run_while_connected)
from ser.stream_protocol import CLOSE_BAD_INPUT, CLOSE_BUSY, CLOSE_FAULT, close_with_error, \
    serve_stream

def create_app(service, with_page=True):
    """The Starlette application of `service` (a Service); with_page adds
    the live page (ser.page) at GET /."""
    limiter = anyio.CapacityLimiter(service.limits.threads)
    recorder = service.metrics

    async def recognise(request):
        request_id, started, seconds = service.next_id(), time.perf_counter(), None
        headers = None
        try:
            if not service.authorised(request.headers):
                headers = {'WWW-Authenticate': 'Bearer'}
                raise RequestError(401, UNAUTHORISED)
            body = await read_body(request, service.limits)
            response, seconds = await run_while_connected(
                request, functools.partial(service.answer, body, request_id), limiter)
            reply, outcome = JSONResponse(response), response['emotion']
        except RequestError as error:
            reply, outcome = error_response(error.status, str(error), headers), str(error)
        except helper.Cancelled as error:
            recorder.cancelled.inc()
            reply, outcome = error_response(CLIENT_LEFT, str(error)), 'cancelled: %s' % error
        except Exception:  # a fault of the service: logged in full, answered without details
            logging.exception('request %d failed', request_id)
            reply, outcome = error_response(500, 'internal error'), 'internal error'
        reply.headers['X-Request-ID'] = str(request_id)
        elapsed = time.perf_counter() - started
        recorder.request_done(reply.status_code, elapsed, seconds)
        logging.info('request %d: %s audio, %.0f ms, %d %s', request_id,
                     '-' if seconds is None else '%.2f s' % seconds,
                     1000 * elapsed, reply.status_code, outcome)
        return reply

    stream_limiter = anyio.CapacityLimiter(service.limits.stream_threads)
    open_streams = set()

    async def emotion_stream(websocket):
        stream_id, started = service.next_id(), time.perf_counter()
        offered = websocket.scope.get('subprotocols', [])
        if not service.authorised(websocket.headers, offered):
            await websocket.close(CLOSE_BAD_INPUT)     # before the handshake: HTTP 403
            recorder.stream_done('unauthorised', None)
            logging.info('stream %d: refused, no valid API key', stream_id)
            return
        await websocket.accept(STREAM_SUBPROTOCOL if STREAM_SUBPROTOCOL in offered else None)
        if len(open_streams) >= service.limits.max_streams:
            await close_with_error(websocket, CLOSE_BUSY, '%d streams are open, the most this '
                                   'server takes; try again later' % service.limits.max_streams)
            seconds, outcome, kind = None, 'refused: %d streams open' % len(open_streams), \
                'refused'
        else:
            open_streams.add(stream_id)
            recorder.streams_open.inc()
            try:
                seconds, outcome, kind = await serve_stream(service, websocket, stream_limiter)
            except Exception:  # a fault of the service: logged in full
                logging.exception('stream %d failed', stream_id)
                await close_with_error(websocket, CLOSE_FAULT, 'internal error')
                seconds, outcome, kind = None, 'internal error', 'fault'
            finally:
                open_streams.discard(stream_id)
                recorder.streams_open.dec()
        recorder.stream_done(kind, seconds)
        logging.info('stream %d: %s audio, %.1f s open, %s', stream_id,
                     '-' if seconds is None else '%.2f s' % seconds,
                     time.perf_counter() - started, outcome)

    async def health(request):
        try:
            return JSONResponse(service.health())
        except RequestError as error:
            return error_response(error.status, str(error))

    async def metrics_page(request):
        if not service.authorised(request.headers):
            return error_response(401, UNAUTHORISED, {'WWW-Authenticate': 'Bearer'})
        return Response(recorder.exposition(), media_type=metrics.CONTENT_TYPE)

    async def http_error(request, error):
        return error_response(error.status_code, error.detail)

    routes = [Route('/emotion-recognition', recognise, methods=['POST']),
              Route('/health', health, methods=['GET']),
              Route('/metrics', metrics_page, methods=['GET']),
              WebSocketRoute('/emotion-stream', emotion_stream)]
    if with_page:
        routes += page.routes()
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    # A redirect to the Host header's name would send callers wherever a request says.
    app.router.redirect_slashes = False
    return app
