"""The voicebot's emotion service over HTTP (a drop-in for the service this
project replaces).

    python serve.py --checkpoint checkpoints/ [--steps N] [--port 8000]
    python serve.py --saved_model exported/ [--device -1]

    POST /emotion-recognition  {"audio": "<base64 audio>", "transcript": "plain text"}
      -> {"status": "ok", "service": "emotion recognition service", "emotion": "happy",
          "arousal", "valence", "thayers": "<valence>,<arousal>", "chunks", "words",
          "text", "model", "duration"[, "timeline" when the request has "timeline": true]}
    GET /health -> 200 {"status": "ok", "model": {"step", "modality"}, ...} once ready
    GET /metrics -> Prometheus' text format
    WebSocket /emotion-stream: live audio in, a prediction per 250 ms frame and a
      label per 5 s chunk out while the caller speaks, the summary at the end
      (the protocols: docs/SERVICE.md)

The model is loaded once and shared by all requests; requests are served in
parallel (--threads at a time), each transcript aligned in a fresh process
(see ser/isolated_alignment.py). Bad requests get a 4xx with {"status":
"error", "error": "...", "text": "..."}. Every resource a caller can make the
server spend is bounded by a flag below (README, "The service's limits").
One log line per request: its id, audio seconds, latency and status. Ctrl-C
or SIGTERM stops it gracefully.
"""

import logging

from absl import app, flags
import numpy as np

import helper
from ser import alignment, application, connections, inference, isolated_alignment, service

# ---- Model flags ----
helper.define_flags('checkpoint', 'steps', 'saved_model')

# ---- Text flags ----
helper.define_flags('language')
helper.define_flags('recognise')

# ---- Server flags ----
flags.DEFINE_string('host', '0.0.0.0', 'Address to listen on (127.0.0.1: this machine only).')
flags.DEFINE_integer('port', 8000, 'TCP port to listen on.', lower_bound=1, upper_bound=65535)
helper.define_flags('threads')
flags.DEFINE_float('max_request_mb', 32.0, 'Largest request body accepted, in MiB (base64 '
                   'makes audio a third larger); larger ones get 413.', lower_bound=0.001)
flags.DEFINE_float('max_audio_seconds', 600.0, 'Longest audio accepted, in seconds: a '
                   'request\'s longer audio gets 413, a stream ends with its summary there.',
                   lower_bound=0.25)
flags.DEFINE_float('client_timeout_seconds', service.DEFAULT_CLIENT_TIMEOUT_SECONDS,
                   'A client must send a request\'s head within a third of this, and its body '
                   'within this, of opening the connection or of its last answer; past it the '
                   'connection is closed (408 for a late body).', lower_bound=1.0)
flags.DEFINE_integer('max_connections', 100, 'Open connections and requests at once (streams '
                     'included); past it a request gets 503 at once.', lower_bound=1)
flags.DEFINE_string('api_key_file', None, 'A file holding the key callers must send as '
                    '"Authorization: Bearer <key>" (POST, streams and /metrics; /health stays '
                    'open), or on a stream as the subprotocol bearer.<key in base64url> (as a '
                    'browser must). Default: no key, as the voicebot sends none.')
flags.DEFINE_bool('no_page', False, 'Serve the API alone, without the live page at GET / '
                  '(microphone or file in, arousal and valence curves out).')

# ---- Inference flags ----
helper.define_flags('chunk_seconds')

# ---- Stream flags ----
flags.DEFINE_integer('max_streams', service.DEFAULT_MAX_STREAMS,
                     'WebSocket streams (/emotion-stream) open at once; one more is closed with '
                     'code 1013 (try again later). Each stream costs CPU at real time: see '
                     'bench/bench_stream.py for what the machine holds.', lower_bound=0)
flags.DEFINE_float('stream_idle_seconds', service.DEFAULT_STREAM_IDLE_SECONDS,
                   'A stream that sends nothing for this long is ended: the server sends the '
                   'summary of what arrived (with "closed") and closes it. So is one whose audio '
                   'falls behind half of real time, after this long of grace.', lower_bound=0.1)
helper.define_flags('stream_threads')

# ---- Device flags ----
helper.define_flags('device')

# ---- Logging flags ----
helper.define_flags('verbose')

FLAGS = flags.FLAGS
GRACEFUL_SHUTDOWN_SECONDS = 30


def check_flags():
    inference.check_model_choice(checkpoint=FLAGS.checkpoint, saved_model=FLAGS.saved_model,
                                 steps=FLAGS.steps)
    inference.check_recognition_language(recognise=FLAGS.recognise, language=FLAGS.language)


def read_api_key():
    """The key of --api_key_file (its first line), or None."""
    if not FLAGS.api_key_file:
        return None
    try:
        with open(FLAGS.api_key_file, encoding='ascii') as handle:
            key = handle.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise app.UsageError('--api_key_file %s: %s' % (FLAGS.api_key_file, error))
    if not key:
        raise app.UsageError('--api_key_file %s holds no key' % FLAGS.api_key_file)
    return key


def warm_up(predictor, aligner):
    """Silence through the model (two seconds: in one pass, and in one-second
    chunks, as streams run it, so that the state is carried at least once) and
    one second through the aligner, so that the first request pays neither
    graph optimisation nor the aligner's start-up; and the word vectors
    loaded now, not by the first request with text."""
    if predictor.modality != 'audio':
        predictor.embedder
    silence = np.zeros(2 * predictor.sample_rate, dtype=np.float32)
    predictor.timeline(silence, chunk_seconds=0)
    predictor.timeline(silence, chunk_seconds=1.0)   # chunks, as streams run them
    try:
        aligner.align_text(np.zeros(alignment.SAMPLE_RATE, dtype=np.float32), 'ready',
                           FLAGS.language)
    except alignment.AlignmentError:
        pass  # silence has nothing to align; the aligner answered, which is the point


def main(argv):
    del argv
    check_flags()
    # uvicorn's own start and stop lines are worth seeing (helper lets it log warnings only).
    for name in ('uvicorn', 'asyncio'):
        logging.getLogger(name).setLevel(logging.INFO)
    with inference.load_predictor(checkpoint=FLAGS.checkpoint, saved_model=FLAGS.saved_model,
                                  steps=FLAGS.steps, device=FLAGS.device) as predictor, \
            isolated_alignment.IsolatedAligner(recogniser=FLAGS.recognise) as aligner:
        warm_up(predictor, aligner)
        if predictor.modality != 'both':
            logging.warning('the model was trained on %s alone: requests %s', predictor.modality,
                            'are heard without their words' if predictor.modality == 'audio'
                            else 'without a transcript give it nothing but zeros')
        limits = service.Limits(
            max_request_bytes=int(FLAGS.max_request_mb * (1 << 20)),
            max_audio_seconds=FLAGS.max_audio_seconds, threads=FLAGS.threads,
            chunk_seconds=FLAGS.chunk_seconds, max_streams=FLAGS.max_streams,
            stream_idle_seconds=FLAGS.stream_idle_seconds, stream_threads=FLAGS.stream_threads,
            client_timeout_seconds=FLAGS.client_timeout_seconds)
        app_service = service.Service(predictor=predictor, aligner=aligner,
                                      language=FLAGS.language, limits=limits,
                                      api_key=read_api_key(), recognise_words=FLAGS.recognise)
        source = predictor.description.get('checkpoint') or predictor.description['saved_model']
        logging.info('model %s (step %s, modality %s, %d Hz); serving POST '
                     'http://%s:%d/emotion-recognition, %d request(s) at a time, and '
                     'ws://%s:%d/emotion-stream, %d stream(s) at most%s', source,
                     predictor.description['step'], predictor.modality, predictor.sample_rate,
                     FLAGS.host, FLAGS.port, FLAGS.threads, FLAGS.host, FLAGS.port,
                     FLAGS.max_streams, '; callers need the API key' if app_service.api_key
                     else '')
        server = connections.server(
            application.create_app(app_service, with_page=not FLAGS.no_page), FLAGS.host,
            FLAGS.port, head_timeout=FLAGS.client_timeout_seconds / 3,
            max_connections=FLAGS.max_connections,
            graceful_shutdown_seconds=GRACEFUL_SHUTDOWN_SECONDS,
            bad_request_body=service.error_body('the request is not valid HTTP/1.1'))
        server.run()
    return 0 if server.started else 1


if __name__ == '__main__':
    helper.run(main)
