"""The /emotion-stream WebSocket protocol (described in docs/SERVICE.md): the
start message, audio and words as they come, a frame message per 250 ms of
audio, and the summary POST /emotion-recognition would answer for the same
audio and words. A stream is held to a pace (Pace) and to the service's
limits; ser.streaming runs the model frame by frame and, where the service
recognises words and the stream brings none, cuts its audio into the blocks
they are recognised from (SpeechBlocks)."""

import time

import anyio
import anyio.to_thread
import numpy as np
from starlette.websockets import WebSocketDisconnect

import helper
from ser import audio, emotion, inference, streaming
from ser.service import SERVICE, InvalidJSON, error_body, parse_json

# A stream's audio must keep up with this share of real time.
MIN_STREAM_AUDIO_RATE = 0.5
STREAM_FORMATS = ('pcm_s16le',)
# Close codes (RFC 6455): normal, bad input, server busy, server fault.
CLOSE_NORMAL, CLOSE_BAD_INPUT, CLOSE_BUSY, CLOSE_FAULT = 1000, 1008, 1013, 1011


class StreamClosed(Exception):
    """The client went away."""


class StreamIdle(Exception):
    """The client sent nothing (or too little audio) in time."""


def open_stream(service, message):
    """(Stream, options, blocks) of the client's first message, {"type":
    "start", "format": "pcm_s16le", "sample_rate": Hz, "channels": 1,
    "words": false, "timeline": false}; blocks: the SpeechBlocks its words
    are recognised from (a service that recognises, a stream that brings no
    words, a model that hears them), else None. StreamError naming what is
    wrong."""
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
    hears_words = service.predictor.modality != 'audio'
    blocks = None
    if service.recognise_words and not options['words'] and hears_words:
        blocks = streaming.SpeechBlocks(rate, service.limits.max_audio_seconds)
    stream = streaming.Stream(service.predictor, rate, channels,
                              hears_words and (options['words'] or blocks is not None),
                              service.limits.max_audio_seconds)
    return stream, options, blocks


def parse_stream_message(text):
    try:
        message = parse_json(text, 'the message')
    except InvalidJSON as error:
        raise streaming.StreamError(str(error)) from None
    if not isinstance(message, dict):
        raise streaming.StreamError('a text message must be a JSON object with a "type"')
    return message


def stream_summary(service, stream, options, recognised):
    """What POST /emotion-recognition answers for the same audio and words."""
    response = {'type': 'summary', 'status': 'ok', 'service': SERVICE}
    response.update(stream.summary())
    heard_words = options['words'] or recognised or stream.words
    response.update(service.described_words(stream.words if heard_words else None,
                                            'recognised' if recognised else 'words'))
    response.update({'model': service.model_description(), 'duration': stream.duration})
    if options['timeline']:
        response['timeline'] = [{'timestamp': t, 'arousal': a, 'valence': v} for t, a, v
                                in inference.timeline_rows(
                                    np.arange(stream.frames_done) * service.predictor.step_ms,
                                    stream.predictions)]
    return response


def recognise_block(service, stream, block):
    """The words of a (start, samples) block of SpeechBlocks, recognised and
    given to the stream as final up to the block's end."""
    start, samples = block
    words = service.recognised(samples, None, None)
    stream.add_words([(round(start + word_start, 3), round(start + word_end, 3), word)
                      for word_start, word_end, word in words],
                     until=start + len(samples) / streaming.RECOGNITION_RATE)


def frame_messages(frames, chunks):
    return ([{'type': 'frame', 'timestamp': int(t), 'arousal': a, 'valence': v}
             for t, a, v in frames] + [dict(chunk, type='chunk') for chunk in chunks])


class Pace:
    """When a stream must have sent its next message: within the idle
    timeout of the last one, and soon enough that its audio keeps up with
    MIN_STREAM_AUDIO_RATE of real time once the idle timeout's grace is
    over (trickling bytes resets the first, never the second). The time the
    server spends on the stream (`excuse`) does not count against the
    client: its messages wait meanwhile."""

    def __init__(self, idle_seconds):
        self.idle_seconds = idle_seconds
        self.opened = time.monotonic()

    def excuse(self, seconds):
        self.opened += seconds

    def behind_seconds(self, stream):
        """How far past its deadline the stream's audio is (negative: ahead)."""
        return time.monotonic() - (self.opened + self.idle_seconds
                                   + stream.duration / MIN_STREAM_AUDIO_RATE)

    def wait_seconds(self, stream):
        return max(0.0, min(self.idle_seconds, -self.behind_seconds(stream)))

    def reason(self, stream):
        if self.behind_seconds(stream) > 0:
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
    stream = pace = None
    limits = service.limits

    async def in_worker(function, *arguments):
        """function(*arguments) in a worker thread, the time excused the client."""
        started = time.monotonic()
        try:
            return await anyio.to_thread.run_sync(function, *arguments, limiter=limiter)
        finally:
            if pace is not None:
                pace.excuse(time.monotonic() - started)

    async def run_and_send(step):
        """stream.advance or stream.finish, its frames and chunks sent."""
        for reply in frame_messages(*await in_worker(step)):
            await websocket.send_json(reply)

    async def recognise(blocks):
        for block in blocks:
            await in_worker(recognise_block, service, stream, block)

    try:
        first = await receive(websocket, limits.stream_idle_seconds)
        if first.get('text') is None:
            raise streaming.StreamError('the first message must be the JSON start message, not '
                                        'audio')
        stream, options, blocks = open_stream(service, first['text'])
        await websocket.send_json({'type': 'ready', 'sample_rate': service.predictor.sample_rate,
                                   'frame_ms': service.predictor.step_ms,
                                   'chunk_ms': emotion.CHUNK_MS,
                                   'recognising': blocks is not None,
                                   'model': service.model_description()})
        pace, reason = Pace(limits.stream_idle_seconds), None
        while reason is None:
            try:
                message = await receive(websocket, pace.wait_seconds(stream))
            except StreamIdle:
                reason = pace.reason(stream)
                break
            if message.get('bytes') is not None:
                mono = stream.add_audio(message['bytes'])
                if blocks is not None:
                    await recognise(blocks.add(mono))
                if stream.full:
                    reason = 'the audio reached the %g s limit' % limits.max_audio_seconds
            else:
                reason = apply_text_message(stream, message['text'], limits.max_words,
                                            recognising=blocks is not None)
            if stream.ready_frames():
                await run_and_send(stream.advance)
        if stream.heard == 0:
            raise streaming.StreamError('the stream ended without audio')
        if blocks is not None:
            await recognise([block for block in [blocks.finish()] if block is not None])
        await run_and_send(stream.finish)
        summary = stream_summary(service, stream, options, recognised=blocks is not None)
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


def apply_text_message(stream, text, max_words, recognising=False):
    """Words (at most `max_words` in one message; none when the service
    recognises them) or the end of the stream; returns 'end' at the end."""
    message = parse_stream_message(text)
    kind = message.get('type')
    if kind == 'end':
        return 'end'
    if kind != 'words':
        raise streaming.StreamError('unknown message type %r (start, words, end)'
                                    % str(kind)[:40])
    if recognising:
        raise streaming.StreamError('this service recognises the words of a stream itself; '
                                    'to send them, start with "words": true')
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
