"""The voicebot's emotion service as an ASGI application (Starlette), served
by serve.py with uvicorn.

    POST /emotion-recognition   {"audio": base64 audio file, "transcript": plain text,
                                 "timeline": false}
                                or, with the recogniser's word times instead of a transcript,
                                {"audio": ..., "words": [{"word", "start", "end"}, ...]}
      200 {"status": "ok", "service": "emotion recognition service", "emotion": label,
           "arousal", "valence", "thayers", "chunks", "words", "text", "model",
           "duration", ["timeline"]}
      400 / 413 {"status": "error", "service": ..., "error": "what is wrong"}
    GET /health                 200 {"status": "ok", "model": {"step", "modality"}, ...}

A request is decoded in memory, its transcript aligned word by word to its
audio (ser.isolated_alignment), the utterance run through the model in chunks
(ser.inference.Predictor) and the timeline labelled by ser.emotion. Requests
run in worker threads, at most `threads` at once; the model is shared
(Session.run is thread-safe) and each alignment runs in its own process.

WebSocket /emotion-stream: one live utterance per connection (ser.streaming).
Text messages are JSON objects with a "type"; audio goes in binary messages.

    client -> server
      {"type": "start", "format": "pcm_s16le", "sample_rate": 16000, "channels": 1,
       "words": false, "timeline": false}               first, once
      <binary>  16-bit little-endian PCM, channels interleaved, split anyhow
      {"type": "words", "words": [{"word": "engine", "start": 1.20, "end": 1.55}],
       "until": 1.6}                                    optional, in order of time
      {"type": "end"}                                   the utterance is over
    server -> client
      {"type": "ready", "sample_rate", "frame_ms": 250, "chunk_ms": 5000, "model"}
      {"type": "frame", "timestamp": ms, "arousal", "valence"}      per 250 ms frame
      {"type": "chunk", "start": s, "end": s, "arousal", "valence", "emotion"}  per 5 s
      {"type": "summary", ...}   after "end": what POST /emotion-recognition answers for
                                 the same audio and words (plus "closed": why, when the
                                 stream ended without "end")
      {"type": "error", "error"}  then the close: 1008 bad input, 1013 too many
                                 streams, 1011 a fault of the server

Times are seconds (ms for a frame's timestamp) from the stream's first
sample. A frame is answered once the audio reaches a few milliseconds past
its end (the convolutions read them); with "words": true, also once the words
are final up to its end ("until": no word still to come starts before it;
default the end of the last word sent), so each frame hears the word spoken
in it. Words sent without "words": true
reach only the frames not yet answered. A stream silent for
`stream_idle_seconds` gets its summary with "closed" and is closed (1000);
one over `max_streams` is refused (1013). Streams run the model in their own
`stream_threads` worker threads, so they do not take the requests'.
"""

import base64
import binascii
import functools
import itertools
import json
import logging
import time

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

import helper
from ser import alignment, emotion, inference, page, streaming

SERVICE = 'emotion recognition service'
# More words than anyone says in the audio (fast speech is 5-6 a second) can
# only be a wrong transcript, and would cost minutes of alignment.
MAX_WORDS_PER_SECOND = 10
# The name bad input is reported under (the request has no file name).
AUDIO_NAME = 'audio'
# What a 2-core CPU held at real time beside other work, POST requests still
# served (bench/bench_stream.py); a stream over the limit is closed with 1013.
DEFAULT_MAX_STREAMS = 12
DEFAULT_STREAM_IDLE_SECONDS = 30.0


class RequestError(Exception):
    """A request the service cannot answer: HTTP status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Service:
    """What a request needs: the model, the aligner and the limits."""

    def __init__(self, predictor, aligner, language='eng', max_request_bytes=32 << 20,
                 max_audio_seconds=600.0, threads=4,
                 chunk_seconds=inference.DEFAULT_CHUNK_SECONDS, max_streams=DEFAULT_MAX_STREAMS,
                 stream_idle_seconds=DEFAULT_STREAM_IDLE_SECONDS, stream_threads=2):
        self.predictor = predictor
        self.aligner = aligner
        self.language = language
        self.max_request_bytes = max_request_bytes
        self.max_audio_seconds = max_audio_seconds
        self.threads = threads
        self.chunk_seconds = chunk_seconds
        self.max_streams = max_streams
        self.stream_idle_seconds = stream_idle_seconds
        self.stream_threads = stream_threads
        self._ids = itertools.count(1)

    def next_id(self):
        return next(self._ids)

    # ----------------------------------------------------------------------
    # One request, in a worker thread
    # ----------------------------------------------------------------------
    def answer(self, body, request_id=None):
        """(response dict, audio seconds) of a request body (bytes);
        RequestError for a bad request."""
        request = parse_request(body)
        try:
            return self.recognise(request, request_id)
        except inference.TooLong as error:
            raise RequestError(413, error.problem) from None
        except helper.InputError as error:
            raise RequestError(400, error.problem) from None

    def recognise(self, request, request_id=None):
        started = time.perf_counter()
        rates = [self.predictor.sample_rate]
        if request['transcript'] is not None:
            rates.append(alignment.SAMPLE_RATE)
        decoded = inference.decode_audio(request['audio'], rates, self.max_audio_seconds,
                                         AUDIO_NAME)
        samples = decoded[self.predictor.sample_rate]
        duration = len(samples) / self.predictor.sample_rate
        decoded_at = time.perf_counter()
        words, fallbacks = request['words'], 0
        if request['transcript'] is not None:
            check_speakable(request['transcript'], duration)
            words, fallbacks = inference.align_plain_text(
                decoded[alignment.SAMPLE_RATE], request['transcript'], self.language, AUDIO_NAME,
                align=self.aligner.align_text)
        aligned_at = time.perf_counter()
        # A model trained on audio alone zeroes the embeddings itself: no vectors needed.
        heard = None if self.predictor.modality == 'audio' else words
        timestamps, predictions = self.predictor.timeline(samples, heard, self.chunk_seconds)
        helper.development_msg('request %s: decoding %.0f ms, alignment %.0f ms, model %.0f ms',
                               request_id, 1000 * (decoded_at - started),
                               1000 * (aligned_at - decoded_at),
                               1000 * (time.perf_counter() - aligned_at))
        response = {'status': 'ok', 'service': SERVICE}
        response.update(emotion.summary(predictions, self.predictor.step_ms, duration))
        response.update(self.described_words(words, 'transcript' if request['transcript']
                                             else 'words'))
        response.update({'model': self.model_description(), 'duration': duration})
        if fallbacks:
            response['alignment'] = 'words spread by character length (aeneas could not align)'
        if request['timeline']:
            response['timeline'] = [{'timestamp': t, 'arousal': a, 'valence': v} for t, a, v
                                    in inference.timeline_rows(timestamps, predictions)]
        return response, duration

    @staticmethod
    def described_words(words, source):
        """The response's `words` and `text` (none, transcript or words)."""
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
                'sample_rate': self.predictor.sample_rate, 'language': self.language}


def parse_request(body):
    """{'audio': bytes, 'transcript': str or None, 'timeline': bool} of a
    request body; RequestError 400 naming what is wrong."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, 'the body is not valid JSON: %s' % error) from None
    if not isinstance(request, dict):
        raise RequestError(400, 'the body must be a JSON object with "audio" and "transcript"')
    audio = request.get('audio')
    if audio is None:
        raise RequestError(400, 'no "audio": send the audio file as base64')
    if not isinstance(audio, str):
        raise RequestError(400, '"audio" must be a base64 string, not %s' % type(audio).__name__)
    # A data URL's header and line breaks (base64 as e-mail wraps it) are not data.
    if audio.startswith('data:') and ',' in audio:
        audio = audio.split(',', 1)[1]
    try:
        data = base64.b64decode(''.join(audio.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(400, '"audio" is not valid base64: %s' % error) from None
    if not data:
        raise RequestError(400, '"audio" is empty')
    transcript = request.get('transcript')
    if transcript is not None and not isinstance(transcript, str):
        raise RequestError(400, '"transcript" must be a string of plain text, not %s'
                           % type(transcript).__name__)
    timeline = request.get('timeline', False)
    if not isinstance(timeline, bool):
        raise RequestError(400, '"timeline" must be true or false')
    if transcript is not None and not helper.normalise_words(transcript):
        transcript = None   # empty, or fillers and punctuation only: acoustic only
    words = request.get('words')
    if words is not None:
        if transcript is not None:
            raise RequestError(400, 'give "transcript" (plain text, aligned here) or "words" '
                               '(timed by the recogniser), not both')
        try:
            words = streaming.timed_words(words, '"words"')
        except streaming.StreamError as error:
            raise RequestError(400, str(error)) from None
    return {'audio': data, 'transcript': transcript, 'timeline': timeline, 'words': words}


def check_speakable(transcript, duration):
    count, limit = len(helper.normalise_words(transcript)), MAX_WORDS_PER_SECOND * (duration + 1)
    if count > limit:
        raise helper.InputError(AUDIO_NAME, None, 'the transcript has %d words, more than can be '
                                'spoken in %.2f s of audio' % (count, duration))


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
def error_response(status, message):
    return JSONResponse({'status': 'error', 'service': SERVICE, 'error': message},
                        status_code=status)


async def read_body(request, limit):
    """The body, refused with 413 as soon as it is known to exceed `limit`
    bytes (from Content-Length, or while it streams in)."""
    declared = request.headers.get('content-length')
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, 'request body of %d bytes, over the limit of %d bytes'
                           % (int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, 'request body over the limit of %d bytes' % limit)
        chunks.append(chunk)
    return b''.join(chunks)


# --------------------------------------------------------------------------
# WebSocket /emotion-stream
# --------------------------------------------------------------------------
STREAM_FORMATS = ('pcm_s16le',)
MAX_CHANNELS = 8
# Close codes (RFC 6455): normal, bad input, server busy, server fault.
CLOSE_NORMAL, CLOSE_BAD_INPUT, CLOSE_BUSY, CLOSE_FAULT = 1000, 1008, 1013, 1011


class StreamClosed(Exception):
    """The client went away."""


class StreamIdle(Exception):
    """The client sent nothing for the idle timeout."""


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
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 384000:
        raise streaming.StreamError('"sample_rate" must be an integer number of Hz '
                                    '(1000-384000)')
    if not isinstance(channels, int) or isinstance(channels, bool) \
            or not 1 <= channels <= MAX_CHANNELS:
        raise streaming.StreamError('"channels" must be an integer from 1 to %d' % MAX_CHANNELS)
    options = {name: start.get(name, False) for name in ('words', 'timeline')}
    for name, value in options.items():
        if not isinstance(value, bool):
            raise streaming.StreamError('"%s" must be true or false' % name)
    with_words = options['words'] and service.predictor.modality != 'audio'
    return streaming.Stream(service.predictor, rate, channels, with_words), options


def parse_stream_message(text):
    try:
        message = json.loads(text)
    except ValueError as error:
        raise streaming.StreamError('not valid JSON: %s' % error) from None
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


async def receive(websocket, idle_seconds):
    """The next message ('bytes' or 'text'); StreamIdle when the client sent
    nothing for idle_seconds, StreamClosed when it left."""
    with anyio.move_on_after(idle_seconds) as timer:
        message = await websocket.receive()
    if timer.cancelled_caught:
        raise StreamIdle('idle for %g s' % idle_seconds)
    if message['type'] == 'websocket.disconnect':
        raise StreamClosed('the client left (code %s)' % message.get('code'))
    return message


async def serve_stream(service, websocket, limiter):
    """One stream from the start message to the summary; returns (audio
    seconds, outcome) for the log line."""
    stream = None

    async def run_and_send(step):
        """stream.advance or stream.finish in a worker thread, its frames and
        chunks sent."""
        for reply in frame_messages(*await anyio.to_thread.run_sync(step, limiter=limiter)):
            await websocket.send_json(reply)

    try:
        first = await receive(websocket, service.stream_idle_seconds)
        if first.get('text') is None:
            raise streaming.StreamError('the first message must be the JSON start message, not '
                                        'audio')
        stream, options = open_stream(service, first['text'])
        await websocket.send_json({'type': 'ready', 'sample_rate': service.predictor.sample_rate,
                                   'frame_ms': service.predictor.step_ms,
                                   'chunk_ms': emotion.CHUNK_MS,
                                   'model': service.model_description()})
        reason = None
        while reason is None:
            try:
                message = await receive(websocket, service.stream_idle_seconds)
            except StreamIdle as idle:
                reason = str(idle)
                break
            if message.get('bytes') is not None:
                stream.add_audio(message['bytes'])
            else:
                reason = apply_text_message(stream, message['text'])
            if stream.ready_frames():
                await run_and_send(stream.advance)
        if stream.received == 0:
            raise streaming.StreamError('the stream ended without audio')
        await run_and_send(stream.finish)
        summary = stream_summary(service, stream, options)
        if reason != 'end':
            summary['closed'] = reason
        await websocket.send_json(summary)
        await websocket.close(CLOSE_NORMAL)
        return stream.duration, '%s, %s' % (summary['emotion'], reason)
    except streaming.StreamError as error:
        await close_with_error(websocket, CLOSE_BAD_INPUT, str(error))
        return stream and stream.duration, str(error)
    except StreamIdle as idle:
        await close_with_error(websocket, CLOSE_NORMAL, 'no start message: %s' % idle)
        return None, str(idle)
    except (StreamClosed, WebSocketDisconnect, OSError) as closed:
        return stream and stream.duration, str(closed) or 'the client left'


def apply_text_message(stream, text):
    """Words or the end of the stream; returns 'end' at the end."""
    message = parse_stream_message(text)
    kind = message.get('type')
    if kind == 'end':
        return 'end'
    if kind != 'words':
        raise streaming.StreamError('unknown message type %r (start, words, end)' % kind)
    until = message.get('until')
    if until is not None and (not isinstance(until, (int, float)) or isinstance(until, bool)):
        raise streaming.StreamError('"until" must be a time in seconds')
    stream.add_words(streaming.timed_words(message.get('words'), '"words"'), until)
    return None


async def close_with_error(websocket, code, message):
    try:
        await websocket.send_json({'type': 'error', 'status': 'error', 'service': SERVICE,
                                   'error': message})
        await websocket.close(code)
    except (RuntimeError, OSError):
        pass    # the client is gone already


def create_app(service, with_page=True):
    """The Starlette application of `service` (a Service); with_page adds
    the live page (ser.page) at GET /."""
    limiter = anyio.CapacityLimiter(service.threads)

    async def recognise(request):
        request_id, started, seconds = service.next_id(), time.perf_counter(), None
        try:
            body = await read_body(request, service.max_request_bytes)
            response, seconds = await anyio.to_thread.run_sync(
                functools.partial(service.answer, body, request_id), limiter=limiter)
            reply, outcome = JSONResponse(response), response['emotion']
        except RequestError as error:
            reply, outcome = error_response(error.status, str(error)), str(error)
        except Exception:  # a fault of the service: logged in full, answered without details
            logging.exception('request %d failed', request_id)
            reply, outcome = error_response(500, 'internal error'), 'internal error'
        reply.headers['X-Request-ID'] = str(request_id)
        logging.info('request %d: %s audio, %.0f ms, %d %s', request_id,
                     '-' if seconds is None else '%.2f s' % seconds,
                     1000 * (time.perf_counter() - started), reply.status_code, outcome)
        return reply

    stream_limiter = anyio.CapacityLimiter(service.stream_threads)
    open_streams = set()

    async def emotion_stream(websocket):
        stream_id, started = service.next_id(), time.perf_counter()
        await websocket.accept()
        if len(open_streams) >= service.max_streams:
            await close_with_error(websocket, CLOSE_BUSY, '%d streams are open, the most this '
                                   'server takes; try again later' % service.max_streams)
            seconds, outcome = None, 'refused: %d streams open' % service.max_streams
        else:
            open_streams.add(stream_id)
            try:
                seconds, outcome = await serve_stream(service, websocket, stream_limiter)
            except Exception:  # a fault of the service: logged in full
                logging.exception('stream %d failed', stream_id)
                await close_with_error(websocket, CLOSE_FAULT, 'internal error')
                seconds, outcome = None, 'internal error'
            finally:
                open_streams.discard(stream_id)
        logging.info('stream %d: %s audio, %.1f s open, %s', stream_id,
                     '-' if seconds is None else '%.2f s' % seconds,
                     time.perf_counter() - started, outcome)

    async def health(request):
        try:
            return JSONResponse(service.health())
        except RequestError as error:
            return error_response(error.status, str(error))

    async def http_error(request, error):
        return error_response(error.status_code, error.detail)

    routes = [Route('/emotion-recognition', recognise, methods=['POST']),
              Route('/health', health, methods=['GET']),
              WebSocketRoute('/emotion-stream', emotion_stream)]
    if with_page:
        routes += page.routes()
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
