"""The voicebot's emotion service as an ASGI application (Starlette), served
by serve.py with uvicorn (ser.connections bounds its connections). Its
protocols, POST /emotion-recognition and the /emotion-stream WebSocket, are
described once, in docs/SERVICE.md; its limits in the README.

A request is decoded in memory (ser.audio: accepted containers only, in
bounded memory), its transcript aligned word by word to its audio
(ser.isolated_alignment), the utterance run through the model in chunks
(ser.inference.Predictor) and the timeline labelled by ser.emotion. Requests
run in worker threads, at most `threads` at once; the model is shared
(Session.run is thread-safe) and each alignment runs in its own process.
When the client leaves, its request stops: the alignment process is killed
and the model stops at the next chunk. A stream (ser.streaming) runs the
model in its own `stream_threads` worker threads, frame by frame as its
audio arrives, and is held to a pace and a length as requests are.
"""

import base64
import binascii
import contextlib
import dataclasses
import functools
import hmac
import itertools
import json
import logging
import threading
import time

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

import helper
from ser import alignment, audio, emotion, inference, metrics, page, recognition, streaming
from ser import defaults
from ser.text import normalise_words

SERVICE = 'emotion recognition service'
# The name bad input is reported under (the request has no file name).
AUDIO_NAME = 'audio'
# Each stream costs CPU at real time, so past some number they all fall behind;
# how many a machine holds is measured by bench/bench_stream.py (BENCHMARKS.md:
# stream_max_realtime_streams). A stream over the limit is closed with 1013.
DEFAULT_MAX_STREAMS = 12
DEFAULT_STREAM_IDLE_SECONDS = 30.0
DEFAULT_CLIENT_TIMEOUT_SECONDS = 30.0
# A body over the limit is read (and dropped) up to this many times the
# limit, so that a client that sends it all before reading sees the 413.
DRAIN_FACTOR = 4
# A stream's audio must keep up with this share of real time.
MIN_STREAM_AUDIO_RATE = 0.5
# nginx's code for a request whose client left before the answer.
CLIENT_LEFT = 499


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one caller may make the service spend, built by keyword.

    max_request_bytes       largest request body accepted (larger: 413)
    max_audio_seconds       longest audio of a request (413) or a stream (ended there)
    threads                 requests run at once; more wait their turn
    chunk_seconds           seconds per chunk a request's audio runs through the model in
    max_streams             streams open at once; one more is closed with 1013
    stream_idle_seconds     a stream silent this long is ended, as is one slower than
                            MIN_STREAM_AUDIO_RATE after this long of grace
    stream_threads          streams whose frames run through the model at once
    client_timeout_seconds  time a client has to send a request's body
    """
    max_request_bytes: int = 32 << 20
    max_audio_seconds: float = 600.0
    threads: int = 4
    chunk_seconds: float = defaults.CHUNK_SECONDS
    max_streams: int = DEFAULT_MAX_STREAMS
    stream_idle_seconds: float = DEFAULT_STREAM_IDLE_SECONDS
    stream_threads: int = 2
    client_timeout_seconds: float = DEFAULT_CLIENT_TIMEOUT_SECONDS

    @property
    def max_words(self):
        return int(streaming.MAX_WORDS_PER_SECOND * (self.max_audio_seconds +
                                                     streaming.SLACK_SECONDS))

    @property
    def max_transcript_characters(self):
        # Letters, and as many again of spaces and punctuation.
        return int(2 * streaming.MAX_LETTERS_PER_SECOND * (self.max_audio_seconds +
                                                           streaming.SLACK_SECONDS))


class RequestError(Exception):
    """A request the service cannot answer: HTTP status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(eq=False)
class Service:
    """What a request needs, built by keyword:

    predictor        the model (an inference.Predictor), shared by every request
    aligner          what aligns a transcript and recognises words (an IsolatedAligner)
    language         the language of transcripts (ISO 639-3)
    limits           what one caller may make the service spend (Limits)
    api_key          the key callers must present, or None: no key
    recognise_words  whether a request without text has its words recognised
                     (aligner.recognise)

    and, made here, its metrics and the counter of request ids."""
    predictor: object
    aligner: object
    language: str = 'eng'
    limits: Limits = dataclasses.field(default_factory=Limits)
    api_key: str = None
    recognise_words: bool = False
    metrics: object = dataclasses.field(default_factory=metrics.Metrics, init=False, repr=False)
    _ids: object = dataclasses.field(default_factory=lambda: itertools.count(1), init=False,
                                     repr=False)

    def next_id(self):
        return next(self._ids)

    def authorised(self, headers):
        """Whether `headers` carry the API key (always, when none is set)."""
        if self.api_key is None:
            return True
        scheme, _, token = headers.get('authorization', '').partition(' ')
        return scheme.lower() == 'bearer' and hmac.compare_digest(
            token.strip().encode('latin-1', 'replace'), self.api_key.encode('latin-1'))

    # ----------------------------------------------------------------------
    # One request, in a worker thread
    # ----------------------------------------------------------------------
    def answer(self, body, request_id=None, cancelled=None):
        """(response dict, audio seconds) of a request body (bytes);
        RequestError for a bad request, helper.Cancelled once `cancelled`
        (an Event) is set."""
        request = parse_request(body, self.limits)
        try:
            return self.recognise(request, request_id, cancelled)
        except audio.TooLong as error:
            raise RequestError(413, error.problem) from None
        except helper.InputError as error:
            raise RequestError(400, error.problem) from None
        except streaming.StreamError as error:
            raise RequestError(400, str(error)) from None

    def recognise(self, request, request_id=None, cancelled=None):
        stage = functools.partial(timed, self.metrics, request_id)
        words, fallbacks, source = request['words'], 0, 'words'
        recognising = (self.recognise_words and words is None and request['transcript'] is None
                       and self.predictor.modality != 'audio')
        rates = [self.predictor.sample_rate]
        if request['transcript'] is not None or recognising:
            rates.append(alignment.SAMPLE_RATE)
        with stage('decoding'):
            decoded = audio.decode_bytes(request['audio'], rates, self.limits.max_audio_seconds,
                                         AUDIO_NAME, cancelled)
        samples = decoded[self.predictor.sample_rate]
        duration = len(samples) / self.predictor.sample_rate
        if words is not None:
            streaming.check_speakable([word for _, _, word in words], duration)
            streaming.check_words_inside(words, duration)
        if request['transcript'] is not None:
            streaming.check_speakable(normalise_words(request['transcript']), duration)
            with stage('alignment'):
                words, fallbacks = inference.align_plain_text(
                    decoded[alignment.SAMPLE_RATE], request['transcript'], self.language,
                    AUDIO_NAME, align=functools.partial(self.aligner.align_text,
                                                        cancelled=cancelled))
            source = 'transcript'
        if recognising:
            with stage('recognition'):
                words, source = self.recognised(decoded[alignment.SAMPLE_RATE], request_id,
                                                cancelled), 'recognised'
        del decoded
        # A model trained on audio alone zeroes the embeddings itself: no vectors needed.
        heard = None if self.predictor.modality == 'audio' else words
        with stage('model'):
            timestamps, predictions = self.predictor.timeline(samples, heard,
                                                              self.limits.chunk_seconds,
                                                              cancelled)
        response = {'status': 'ok', 'service': SERVICE}
        response.update(emotion.summary(predictions, self.predictor.step_ms, duration))
        response.update(self.described_words(words, source))
        response.update({'model': self.model_description(), 'duration': duration})
        if fallbacks:
            response['alignment'] = ('words spread by character length (neither the phonetic '
                                     'aligner nor aeneas could align them)')
        if request['timeline']:
            response['timeline'] = [{'timestamp': t, 'arousal': a, 'valence': v} for t, a, v
                                    in inference.timeline_rows(timestamps, predictions)]
        return response, duration

    def recognised(self, samples, request_id, cancelled):
        """The words the recogniser hears in 16-kHz samples; none (acoustic
        only) where it fails, which is no fault of the caller's."""
        try:
            return self.aligner.recognise(samples, cancelled=cancelled)
        except recognition.RecognitionError as error:
            logging.warning('request %s: no words recognised (%s)', request_id, error)
            return []

    def described_words(self, words, source):
        """The response's `words` ([{word, start, end}] as aligned, given or
        recognised) and `text` (none, transcript, words or recognised)."""
        return {'words': [{'word': word, 'start': start, 'end': end}
                          for start, end, word in words or []],
                'text': 'none' if words is None else source}

    def model_description(self):
        return {'step': self.predictor.description['step'],
                'modality': self.predictor.modality}

    def health(self):
        if not self.aligner.ensure_running():
            raise RequestError(503, 'the aligner is closed: the service is stopping')
        return {'status': 'ok', 'service': SERVICE, 'model': self.model_description(),
                'sample_rate': self.predictor.sample_rate, 'language': self.language,
                'max_audio_seconds': self.limits.max_audio_seconds,
                'max_request_bytes': self.limits.max_request_bytes}


@contextlib.contextmanager
def timed(recorder, request_id, stage):
    """Times one stage of a request into the metrics (and, with --verbose,
    the log)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        recorder.stage_seconds.labels(stage).observe(seconds)
        helper.development_msg('request %s: %s %.0f ms', request_id, stage, 1000 * seconds)


# --------------------------------------------------------------------------
# What a request body must hold
# --------------------------------------------------------------------------
class InvalidJSON(ValueError):
    """Text that is not one JSON value this service reads."""


def _not_json(constant):
    raise InvalidJSON('%s is not a JSON number' % constant)


def parse_json(text, what):
    """The JSON value of `text` (str or UTF-8 bytes); InvalidJSON naming
    `what`, in the caller's terms, for anything else: NaN and Infinity (not
    JSON), nesting deeper than the parser goes, bytes that are not text."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except InvalidJSON as error:
        raise InvalidJSON('%s is not valid JSON: %s' % (what, error)) from None
    except json.JSONDecodeError as error:
        raise InvalidJSON('%s is not valid JSON (line %d, column %d)'
                          % (what, error.lineno, error.colno)) from None
    except UnicodeDecodeError:
        raise InvalidJSON('%s is not valid JSON: it is not UTF-8 text' % what) from None
    except RecursionError:
        raise InvalidJSON('%s is not valid JSON this service reads: it is nested too deeply'
                          % what) from None
    except ValueError:   # an integer of more digits than Python converts
        raise InvalidJSON('%s is not valid JSON this service reads: a number is too long'
                          % what) from None


def parse_request(body, limits=Limits()):
    """{'audio': bytes, 'transcript': str or None, 'timeline': bool,
    'words': [(start, end, word)] or None} of a request body; RequestError
    400 naming what is wrong."""
    try:
        request = parse_json(body, 'the body')
    except InvalidJSON as error:
        raise RequestError(400, str(error)) from None
    if not isinstance(request, dict):
        raise RequestError(400, 'the body must be a JSON object with "audio" and "transcript"')
    data = decoded_audio(request.get('audio'))
    transcript = request.get('transcript')
    if transcript is not None:
        if not isinstance(transcript, str):
            raise RequestError(400, '"transcript" must be a string of plain text, not %s'
                               % type(transcript).__name__)
        if len(transcript) > limits.max_transcript_characters:
            raise RequestError(400, '"transcript" has %d characters, more than can be spoken '
                               'in the %g s accepted' % (len(transcript),
                                                         limits.max_audio_seconds))
        try:
            streaming.check_text(transcript, '"transcript"')
        except streaming.StreamError as error:
            raise RequestError(400, str(error)) from None
    timeline = request.get('timeline', False)
    if not isinstance(timeline, bool):
        raise RequestError(400, '"timeline" must be true or false')
    if transcript is not None and not normalise_words(transcript):
        transcript = None   # empty, or fillers and punctuation only: acoustic only
    words = request.get('words')
    if words is not None:
        if transcript is not None:
            raise RequestError(400, 'give "transcript" (plain text, aligned here) or "words" '
                               '(timed by the recogniser), not both')
        try:
            words = streaming.timed_words(words, '"words"', limits.max_words)
        except streaming.StreamError as error:
            raise RequestError(400, str(error)) from None
    return {'audio': data, 'transcript': transcript, 'timeline': timeline, 'words': words}


def decoded_audio(audio_field):
    """The bytes of the request's "audio" (base64, as a data URL or wrapped
    as e-mail wraps it); RequestError 400."""
    if audio_field is None:
        raise RequestError(400, 'no "audio": send the audio file as base64')
    if not isinstance(audio_field, str):
        raise RequestError(400, '"audio" must be a base64 string, not %s'
                           % type(audio_field).__name__)
    if audio_field.startswith('data:') and ',' in audio_field:
        audio_field = audio_field.split(',', 1)[1]
    try:
        data = base64.b64decode(''.join(audio_field.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"audio" is not valid base64 (letters, digits, +, / and = '
                           'padding)') from None
    if not data:
        raise RequestError(400, '"audio" is empty')
    return data


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
def error_body(message):
    """An error as the voicebot reads it: its client shows `text`."""
    return {'status': 'error', 'service': SERVICE, 'error': message, 'text': message}


def error_response(status, message, headers=None):
    return JSONResponse(error_body(message), status_code=status, headers=headers)


UNAUTHORISED = 'this service needs an "Authorization: Bearer <key>" header with its key'


async def read_body(request, limits):
    """The body; RequestError 413 once it is known to exceed the limit (what
    was sent is read and dropped, up to DRAIN_FACTOR times the limit, so
    that the client sees the answer), 408 when it is not all there within
    the client timeout."""
    limit = limits.max_request_bytes
    declared = request.headers.get('content-length', '')
    declared = int(declared) if declared.isdigit() else None
    too_large = RequestError(413, 'request body over the limit of %d bytes' % limit)
    if declared is not None and declared > DRAIN_FACTOR * limit:
        raise too_large
    chunks, size = [], 0
    with anyio.move_on_after(limits.client_timeout_seconds) as timer:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > DRAIN_FACTOR * limit:
                    raise too_large
                if size <= limit:
                    chunks.append(chunk)
        except ClientDisconnect:   # gone, or its framing broke: nobody to answer
            raise helper.Cancelled('the client left before its body arrived') from None
    if timer.cancelled_caught:
        raise RequestError(408, 'the request body did not arrive within %g s'
                           % limits.client_timeout_seconds)
    if size > limit:
        raise too_large
    return b''.join(chunks)


async def run_while_connected(request, function, limiter):
    """function(cancelled) in a worker thread, `cancelled` (an Event) set if
    the client of `request` (its body read) leaves before it returns."""
    cancelled, outcome = threading.Event(), {}

    async def watch():
        while (await request.receive())['type'] != 'http.disconnect':
            pass
        cancelled.set()

    async with anyio.create_task_group() as watching:
        watching.start_soon(watch)
        try:
            outcome['value'] = await anyio.to_thread.run_sync(function, cancelled,
                                                              limiter=limiter)
        except Exception as error:   # raised below, outside the task group
            outcome['error'] = error
        watching.cancel_scope.cancel()
    if 'error' in outcome:
        raise outcome['error']
    return outcome['value']


# --------------------------------------------------------------------------
# WebSocket /emotion-stream
# --------------------------------------------------------------------------
STREAM_FORMATS = ('pcm_s16le',)
# Close codes (RFC 6455): normal, bad input, server busy, server fault.
CLOSE_NORMAL, CLOSE_BAD_INPUT, CLOSE_BUSY, CLOSE_FAULT = 1000, 1008, 1013, 1011


class StreamClosed(Exception):
    """The client went away."""


class StreamIdle(Exception):
    """The client sent nothing (or too little audio) in time."""


def open_stream(service, message):
    """(Stream, options) of the client's first message, {"type": "start",
    "format": "pcm_s16le", "sample_rate": Hz, "channels": 1, "words": false,
    "timeline": false}; StreamError naming what is wrong."""
    start = parse_stream_message(message)
    if start.get('type') != 'start':
        raise streaming.StreamError('the first message must be {"type": "start", "format": '
                                    '"pcm_s16le", "sample_rate": ...}')
    if start.get('format', 'pcm_s16le') not in STREAM_FORMATS:
        raise streaming.StreamError('"format" must be one of %s' % ', '.join(STREAM_FORMATS))
    rate, channels = start.get('sample_rate'), start.get('channels', 1)
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise streaming.StreamError('"sample_rate" must be an integer number of Hz')
    if not isinstance(channels, int) or isinstance(channels, bool):
        raise streaming.StreamError('"channels" must be an integer')
    try:
        audio.check_format(rate, channels, 'the stream')
    except helper.InputError as error:
        raise streaming.StreamError('"sample_rate" and "channels": %s' % error.problem) from None
    options = {name: start.get(name, False) for name in ('words', 'timeline')}
    for name, value in options.items():
        if not isinstance(value, bool):
            raise streaming.StreamError('"%s" must be true or false' % name)
    with_words = options['words'] and service.predictor.modality != 'audio'
    return streaming.Stream(service.predictor, rate, channels, with_words,
                            service.limits.max_audio_seconds), options


def parse_stream_message(text):
    try:
        message = parse_json(text, 'the message')
    except InvalidJSON as error:
        raise streaming.StreamError(str(error)) from None
    if not isinstance(message, dict):
        raise streaming.StreamError('a text message must be a JSON object with a "type"')
    return message


def stream_summary(service, stream, options):
    """What POST /emotion-recognition answers for the same audio and words."""
    response = {'type': 'summary', 'status': 'ok', 'service': SERVICE}
    response.update(stream.summary())
    heard_words = options['words'] or stream.words
    response.update(service.described_words(stream.words if heard_words else None, 'words'))
    response.update({'model': service.model_description(), 'duration': stream.duration})
    if options['timeline']:
        response['timeline'] = [{'timestamp': t, 'arousal': a, 'valence': v} for t, a, v
                                in inference.timeline_rows(
                                    np.arange(stream.frames_done) * service.predictor.step_ms,
                                    stream.predictions)]
    return response


def frame_messages(frames, chunks):
    return ([{'type': 'frame', 'timestamp': int(t), 'arousal': a, 'valence': v}
             for t, a, v in frames] + [dict(chunk, type='chunk') for chunk in chunks])


class Pace:
    """When a stream must have sent its next message: within the idle
    timeout of the last one, and soon enough that its audio keeps up with
    MIN_STREAM_AUDIO_RATE of real time once the idle timeout's grace is
    over (trickling bytes resets the first, never the second)."""

    def __init__(self, idle_seconds):
        self.idle_seconds = idle_seconds
        self.opened = time.monotonic()

    def wait_seconds(self, stream):
        behind = (self.opened + self.idle_seconds + stream.duration / MIN_STREAM_AUDIO_RATE
                  - time.monotonic())
        return max(0.0, min(self.idle_seconds, behind))

    def reason(self, stream):
        if time.monotonic() - self.opened > self.idle_seconds + (
                stream.duration / MIN_STREAM_AUDIO_RATE):
            return ('audio arrived slower than %g of real time' % MIN_STREAM_AUDIO_RATE)
        return 'idle for %g s' % self.idle_seconds


async def receive(websocket, wait_seconds):
    """The next message ('bytes' or 'text'); StreamIdle when the client sent
    nothing for wait_seconds, StreamClosed when it left."""
    with anyio.move_on_after(wait_seconds) as timer:
        message = await websocket.receive()
    if timer.cancelled_caught:
        raise StreamIdle('idle for %g s' % wait_seconds)
    if message['type'] == 'websocket.disconnect':
        raise StreamClosed('the client left (code %s)' % message.get('code'))
    return message


async def serve_stream(service, websocket, limiter):
    """One stream from the start message to the summary; returns (audio
    seconds, outcome for the log, outcome for the metrics)."""
    stream = None
    limits = service.limits

    async def run_and_send(step):
        """stream.advance or stream.finish in a worker thread, its frames and
        chunks sent."""
        for reply in frame_messages(*await anyio.to_thread.run_sync(step, limiter=limiter)):
            await websocket.send_json(reply)

    try:
        first = await receive(websocket, limits.stream_idle_seconds)
        if first.get('text') is None:
            raise streaming.StreamError('the first message must be the JSON start message, not '
                                        'audio')
        stream, options = open_stream(service, first['text'])
        await websocket.send_json({'type': 'ready', 'sample_rate': service.predictor.sample_rate,
                                   'frame_ms': service.predictor.step_ms,
                                   'chunk_ms': emotion.CHUNK_MS,
                                   'model': service.model_description()})
        pace, reason = Pace(limits.stream_idle_seconds), None
        while reason is None:
            try:
                message = await receive(websocket, pace.wait_seconds(stream))
            except StreamIdle:
                reason = pace.reason(stream)
                break
            if message.get('bytes') is not None:
                stream.add_audio(message['bytes'])
                if stream.full:
                    reason = 'the audio reached the %g s limit' % limits.max_audio_seconds
            else:
                reason = apply_text_message(stream, message['text'], limits.max_words)
            if stream.ready_frames():
                await run_and_send(stream.advance)
        if stream.heard == 0:
            raise streaming.StreamError('the stream ended without audio')
        await run_and_send(stream.finish)
        summary = stream_summary(service, stream, options)
        if reason != 'end':
            summary['closed'] = reason
        await websocket.send_json(summary)
        await websocket.close(CLOSE_NORMAL)
        return stream.duration, '%s, %s' % (summary['emotion'], reason), 'summary'
    except streaming.StreamError as error:
        await close_with_error(websocket, CLOSE_BAD_INPUT, str(error))
        return stream and stream.duration, str(error), 'bad_input'
    except StreamIdle as idle:
        await close_with_error(websocket, CLOSE_NORMAL, 'no start message: %s' % idle)
        return None, str(idle), 'idle'
    except (StreamClosed, WebSocketDisconnect, OSError) as closed:
        return stream and stream.duration, str(closed) or 'the client left', 'left'


def apply_text_message(stream, text, max_words):
    """Words (at most `max_words` in one message) or the end of the stream;
    returns 'end' at the end."""
    message = parse_stream_message(text)
    kind = message.get('type')
    if kind == 'end':
        return 'end'
    if kind != 'words':
        raise streaming.StreamError('unknown message type %r (start, words, end)'
                                    % str(kind)[:40])
    until = message.get('until')
    if until is not None:
        until = streaming.time_in_seconds(until, '"until"')
    stream.add_words(streaming.timed_words(message.get('words'), '"words"', max_words), until)
    return None


async def close_with_error(websocket, code, message):
    try:
        await websocket.send_json(dict(error_body(message), type='error'))
        await websocket.close(code)
    except (RuntimeError, OSError):
        pass    # the client is gone already


# --------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------
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
        if not service.authorised(websocket.headers):
            await websocket.close(CLOSE_BAD_INPUT)     # before the handshake: HTTP 403
            recorder.stream_done('unauthorised', None)
            logging.info('stream %d: refused, no valid API key', stream_id)
            return
        await websocket.accept()
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
