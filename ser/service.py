"""The voicebot's emotion service: its settings (Limits), the Service that
answers POST /emotion-recognition, and reading a request and its errors.
The protocols, this one and the /emotion-stream WebSocket
(ser.stream_protocol), are described once, in docs/SERVICE.md; its limits
in the README. ser.application makes the Starlette application of a Service.

A request is decoded in memory (ser.audio: accepted containers only, in
bounded memory), its transcript aligned word by word to its audio
(ser.isolated_alignment), the utterance run through the model in chunks
(ser.inference.Predictor) and the timeline labelled by ser.emotion. Requests
run in worker threads, at most `threads` at once; the model is shared
(Session.run is thread-safe) and each alignment runs in its own process.
When the client leaves, its request stops: the alignment process is killed
and the model stops at the next chunk.
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
import re
import threading
import time

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

import helper
from ser import alignment, audio, emotion, inference, metrics, recognition, streaming
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
# nginx's code for a request whose client left before the answer.
CLIENT_LEFT = 499
# A browser sets no header on a WebSocket, but offers subprotocols: a stream
# may carry the API key as the subprotocol KEY_SUBPROTOCOL_PREFIX + the key in
# unpadded base64url, offered beside STREAM_SUBPROTOCOL, the one the service
# accepts, so that the key is never sent back.
KEY_SUBPROTOCOL_PREFIX = 'bearer.'
STREAM_SUBPROTOCOL = 'emotion-stream'
BASE64URL = re.compile(r'[A-Za-z0-9_-]*')


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

    def authorised(self, headers, subprotocols=()):
        """Whether a request carries the API key (always, when none is set):
        in `headers`, as "Authorization: Bearer <key>", or among the
        WebSocket `subprotocols` it offers (see KEY_SUBPROTOCOL_PREFIX)."""
        if self.api_key is None:
            return True
        scheme, _, token = headers.get('authorization', '').partition(' ')
        presented = [key_of_subprotocol(subprotocol) for subprotocol in subprotocols]
        if scheme.lower() == 'bearer':
            presented.append(token.strip().encode('latin-1', 'replace'))
        expected = self.api_key.encode('latin-1')
        # Every candidate is compared (a list, not any()'s shortcut), so the time
        # taken does not tell which came close.
        return any([hmac.compare_digest(key, expected) for key in presented if key is not None])

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
                'recognise': self.recognise_words,
                'max_audio_seconds': self.limits.max_audio_seconds,
                'max_request_bytes': self.limits.max_request_bytes,
                'api_key_required': self.api_key is not None}


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


def key_of_subprotocol(subprotocol):
    """The key (bytes) a WebSocket subprotocol KEY_SUBPROTOCOL_PREFIX +
    base64url(key) carries; None for any other subprotocol, and for any but
    the one canonical spelling of a key (base64 decoders skip stray
    characters and ignore trailing bits)."""
    if not subprotocol.startswith(KEY_SUBPROTOCOL_PREFIX):
        return None
    encoded = subprotocol[len(KEY_SUBPROTOCOL_PREFIX):]
    if not BASE64URL.fullmatch(encoded):
        return None
    try:
        key = base64.urlsafe_b64decode(encoded + '=' * (-len(encoded) % 4))
    except binascii.Error:
        return None
    return key if base64.urlsafe_b64encode(key).rstrip(b'=').decode() == encoded else None


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
