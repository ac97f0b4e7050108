"""ser.service in this process: what a request body must hold, the
application's answers, limits, key and metrics over a model without
TensorFlow, and property-based tests of everything a client sends (the
server itself, over HTTP, is tested in test_serve.py)."""

import base64
import io
import json
import struct
import time
import zlib

from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import pytest
import soundfile
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ser import alignment, application, embeddings, inference, service, stream_protocol, streaming
from ser.text import normalise_words

AUDIO = b'RIFF....WAVE'


def body(**fields):
    return json.dumps(fields).encode()


def test_the_replaced_services_request():
    request = service.parse_request(body(audio=base64.b64encode(AUDIO).decode(),
                                         transcript='The engine, quiet!'))
    assert request == {'audio': AUDIO, 'transcript': 'The engine, quiet!', 'timeline': False,
                       'words': None}


def test_the_recognisers_word_times_instead_of_a_transcript():
    request = service.parse_request(body(audio=base64.b64encode(AUDIO).decode(), words=[
        {'word': 'The', 'start': 0.1, 'end': 0.3}, {'word': 'engine,', 'start': 0.3, 'end': 0.8},
        {'word': '<laugh>', 'start': 0.9, 'end': 1.2}]))
    assert request['transcript'] is None
    assert request['words'] == [(0.1, 0.3, 'the'), (0.3, 0.8, 'engine')]


def test_base64_as_mail_and_data_urls_carry_it():
    wrapped = base64.encodebytes(AUDIO * 20).decode()   # line breaks every 76 characters
    assert '\n' in wrapped
    assert service.parse_request(body(audio=wrapped))['audio'] == AUDIO * 20
    data_url = 'data:audio/wav;base64,' + base64.b64encode(AUDIO).decode()
    assert service.parse_request(body(audio=data_url))['audio'] == AUDIO


@pytest.mark.parametrize('transcript', [None, '', ' \n', '<laugh> ... !'])
def test_no_words_means_acoustic_only(transcript):
    fields = {'audio': base64.b64encode(AUDIO).decode()}
    if transcript is not None:
        fields['transcript'] = transcript
    assert service.parse_request(body(**fields))['transcript'] is None


BAD = {
    'malformed_json': (b'{"audio": ', 'not valid JSON'),
    'not_utf8': (b'\xff\xfe\x00', 'not valid JSON'),
    'array': (b'[]', 'must be a JSON object'),
    'missing_audio': (body(transcript='hi'), 'no "audio"'),
    'null_audio': (body(audio=None), 'no "audio"'),
    'empty_audio': (body(audio=''), '"audio" is empty'),
    'audio_a_number': (body(audio=5), 'must be a base64 string, not int'),
    'invalid_base64': (body(audio='abc$'), 'not valid base64'),
    'bad_padding': (body(audio='abcde'), 'not valid base64'),
    'transcript_a_list': (body(audio='UklGRg==', transcript=['a']),
                          '"transcript" must be a string of plain text, not list'),
    'timeline_a_string': (body(audio='UklGRg==', timeline='true'), 'true or false'),
    'words_and_transcript': (body(audio='UklGRg==', transcript='hi',
                                  words=[{'word': 'hi', 'start': 0, 'end': 1}]), 'not both'),
    'words_a_string': (body(audio='UklGRg==', words='hi'), 'must be a list'),
    'word_without_end': (body(audio='UklGRg==', words=[{'word': 'hi', 'start': 0}]),
                         '"words"[0] must be'),
    'word_backwards': (body(audio='UklGRg==', words=[{'word': 'hi', 'start': 2, 'end': 1}]),
                       'ends at 1.0 s, not after its start at 2.0 s'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_requests_are_400(case):
    content, message = BAD[case]
    with pytest.raises(service.RequestError) as error:
        service.parse_request(content)
    assert error.value.status == 400
    assert message in str(error.value)


# --------------------------------------------------------------------------
# The application in this process, over a model without TensorFlow
# --------------------------------------------------------------------------
class FakeEmbedder:
    dim = 4

    def vectors(self, words):
        return np.array([[zlib.crc32(('%s%d' % (word, i)).encode()) / 2 ** 32 - 0.5
                          for i in range(self.dim)] for word in words],
                        dtype=np.float32).reshape(-1, self.dim)


class FakePredictor(inference.Predictor):
    """The Predictor's framing, chunking and word embedding (the service's
    own code paths) over a stand-in for the network: each frame's arousal is
    the tanh of its mean sample, its valence that of its mean embedding."""

    sample_rate, frame_samples, embedding_dim, step_ms = 1000, 250, FakeEmbedder.dim, 250
    modality = 'both'

    def __init__(self):
        self._embedder, self._inputs = FakeEmbedder(), {'state_c': None}
        self.description = {'step': 7, 'modality': 'both'}

    def run_chunk(self, audio_frames, embedding_frames, context=(0, 0), state=None):
        before, after = context
        heard = np.asarray(audio_frames)[before:len(audio_frames) - after]
        values = np.stack([np.tanh(50 * heard.mean(axis=1)),
                           np.tanh(np.asarray(embedding_frames).mean(axis=1))], axis=1)
        return values.astype(np.float32), state


class FakeAligner:
    """Spreads the words over the audio by their length."""

    def align_text(self, samples, text, language, cancelled=None):
        words = normalise_words(text)
        spans = alignment.spread_by_characters(words, 0.0, len(samples) / alignment.SAMPLE_RATE)
        return [(float(a), float(b), w) for w, (a, b) in zip(words, spans)], 0

    def recognise(self, samples, cancelled=None):
        return [(0.5, 1.0, 'quiet'), (1.0, 1.5, 'engine')]

    def ensure_running(self):
        return True


def make_client(api_key=None, recognise_words=False, **limits):
    settings = service.Limits(**dict({'max_audio_seconds': 30.0, 'stream_idle_seconds': 5.0},
                                     **limits))
    app = application.create_app(service.Service(
        predictor=FakePredictor(), aligner=FakeAligner(), language='eng', limits=settings,
        api_key=api_key, recognise_words=recognise_words), with_page=False)
    return TestClient(app, raise_server_exceptions=False)


def wav_of(samples, rate=1000, subtype='PCM_16'):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format='WAV')
    return buffer.getvalue()


SPEECH = wav_of(0.2 * np.sin(np.arange(4000) / 3.0))   # 4 s at 1 kHz


def post(client, headers=None, **fields):
    fields.setdefault('audio', base64.b64encode(SPEECH).decode())
    return client.post('/emotion-recognition', content=json.dumps(fields), headers=headers)


def test_an_answer_in_process():
    with make_client() as client:
        reply = post(client, transcript='the engine is quiet', timeline=True)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer['text'] == 'transcript' and len(answer['timeline']) == 16
    assert [w['word'] for w in answer['words']] == ['the', 'engine', 'is', 'quiet']


def test_words_recognised_only_where_no_text_came():
    with make_client(recognise_words=True) as client:
        recognised, given, aligned = (post(client, **fields).json() for fields in (
            {}, {'words': [{'word': 'seat', 'start': 0.2, 'end': 0.6}]},
            {'transcript': 'the seat'}))
    assert recognised['text'] == 'recognised'
    assert [w['word'] for w in recognised['words']] == ['quiet', 'engine']
    assert (given['text'], aligned['text']) == ('words', 'transcript')
    with make_client() as client:
        assert post(client).json()['text'] == 'none'


HTTP_BAD = {
    # name: (fields, words of the error)
    'word_after_the_audio': ({'words': [{'word': 'late', 'start': 4.5, 'end': 4.8}]},
                             "'late' at 4.500-4.800 s is not inside the audio (4.000 s)"),
    'word_ending_after': ({'words': [{'word': 'long', 'start': 1, 'end': 100}]},
                          "'long' at 1.000-100.000 s is not inside the audio"),
    'word_time_absurd': ({'words': [{'word': 'far', 'start': 1, 'end': 1e308}]},
                         '"words"[0] "end" must be a time from 0 to 1e+06 s'),
    'zero_length_word': ({'words': [{'word': 'flat', 'start': 1, 'end': 1}]},
                         'not after its start'),
    'word_time_a_bool': ({'words': [{'word': 'yes', 'start': True, 'end': 2}]},
                         'must be a number of seconds'),
    'word_time_huge_integer': ({'words': [{'word': 'big', 'start': 0, 'end': 10 ** 400}]},
                               'must be a time from 0'),
    'lone_surrogate_word': ({'words': [{'word': '\ud800', 'start': 0, 'end': 1}]},
                            'half of a UTF-16 pair'),
    'lone_surrogate_transcript': ({'transcript': 'quiet \udc00 engine'},
                                  '"transcript" is not text: character 7'),
    'word_longer_than_spoken': ({'transcript': 'a' * 51}, 'a word of 51 letters'),
    'letters_faster_than_speech': ({'transcript': ' '.join(['abcdefghij'] * 21)},
                                   '210 letters of words, more than can be spoken in 4.00 s'),
    'words_faster_than_speech': ({'transcript': 'a ' * 51},
                                 '51 words, more than can be spoken in 4.00 s'),
    'nan_samples': ({'audio': base64.b64encode(wav_of(np.full(2000, np.nan),
                                                      subtype='FLOAT')).decode()},
                    'not numbers'),
    'playlist': ({'audio': base64.b64encode(b'#EXTM3U\n/etc/hostname\n').decode()},
                 'not an audio format this service accepts'),
    'absurd_rate': ({'audio': base64.b64encode(wav_of(np.zeros(3840), 384000)).decode()},
                    'sample rate of 384000 Hz'),
}


@pytest.mark.parametrize('case', sorted(HTTP_BAD))
def test_bad_input_is_a_400_with_text(case):
    fields, message = HTTP_BAD[case]
    with make_client() as client:
        reply = post(client, **fields)
    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert message in answer['error']
    assert answer['text'] == answer['error']   # what the voicebot shows
    assert '/tmp' not in answer['error'] and 'ffmpeg' not in answer['error']


@pytest.mark.parametrize('body, message', [
    (b'{"audio": NaN}', 'NaN is not a JSON number'),
    (b'[' * 100000 + b']' * 100000, 'nested too deeply'),
    (b'{"audio": ' + b'1' * 5000 + b'}', 'a number is too long'),
    (b'{"audio": "x" "y"}', 'line 1, column 15')])
def test_json_that_is_not_json_this_service_reads(body, message):
    with make_client() as client:
        reply = client.post('/emotion-recognition', content=body)
    assert reply.status_code == 400
    assert message in reply.json()['text']


def test_speech_limits_at_their_edges():
    """10 words, 40 letters a second (and a second of slack), 50 letters a word."""
    streaming.check_speakable(['word'] * 20, 1.0)
    with pytest.raises(streaming.StreamError, match='21 words'):
        streaming.check_speakable(['a'] * 21, 1.0)
    streaming.check_speakable(['abcdefgh'] * 10, 1.0)
    with pytest.raises(streaming.StreamError, match='81 letters'):
        streaming.check_speakable(['abcdefgh'] * 10 + ['a'], 1.0)
    streaming.check_speakable(['a' * 50], 1.0)
    with pytest.raises(streaming.StreamError, match='a word of 51 letters'):
        streaming.check_speakable(['a' * 51], 1.0)


def test_health_states_the_limits_a_client_must_keep():
    with make_client(max_request_bytes=1 << 20) as client:
        health = client.get('/health').json()
    assert (health['max_audio_seconds'], health['max_request_bytes']) == (30.0, 1 << 20)
    assert health['sample_rate'] == FakePredictor.sample_rate


def test_the_api_key_guards_all_but_health(tmp_path):
    with make_client(api_key='s3cret') as client:
        assert post(client).status_code == 401
        assert post(client, headers={'Authorization': 'Bearer wrong'}).status_code == 401
        refused = post(client, headers={'Authorization': 'Basic s3cret'})
        assert refused.status_code == 401 and 'Bearer' in refused.json()['text']
        assert post(client, headers={'Authorization': 'Bearer s3cret'}).status_code == 200
        assert client.get('/health').status_code == 200
        assert client.get('/metrics').status_code == 401
        assert client.get('/metrics', headers={'Authorization': 'bearer s3cret'}).status_code \
            == 200
        with pytest.raises(WebSocketDisconnect) as refused_stream:
            with client.websocket_connect('/emotion-stream'):
                pass
        assert refused_stream.value.code == 1008
        with client.websocket_connect('/emotion-stream',
                                      headers={'Authorization': 'Bearer s3cret'}) as stream:
            assert stream.accepted_subprotocol is None


def key_subprotocol(key):
    """The subprotocol the live page offers for `key` (bytes)."""
    return service.KEY_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(key).decode().rstrip('=')


def test_a_stream_may_carry_the_api_key_in_a_subprotocol():
    # As a browser's WebSocket must: no header, the key among the subprotocols offered.
    key = '??>>s3cret'     # its base64 has a '+', its base64url a '-', both end in '='
    with make_client(api_key=key) as client:
        assert client.get('/health').json()['api_key_required'] is True
        offered = [service.STREAM_SUBPROTOCOL, key_subprotocol(key.encode())]
        with client.websocket_connect('/emotion-stream', subprotocols=offered) as stream:
            # The service accepts the plain one: the key is not sent back.
            assert stream.accepted_subprotocol == service.STREAM_SUBPROTOCOL
            stream.send_text(json.dumps({'type': 'start', 'sample_rate': 1000}))
            assert stream.receive_json()['type'] == 'ready'
        # Offered alone it still opens, with no subprotocol chosen.
        with client.websocket_connect('/emotion-stream', subprotocols=offered[1:]) as stream:
            assert stream.accepted_subprotocol is None
        for wrong in ([service.STREAM_SUBPROTOCOL], [key_subprotocol(b's3cret')],
                      [service.KEY_SUBPROTOCOL_PREFIX + 'not*base64'],
                      [service.KEY_SUBPROTOCOL_PREFIX + base64.b64encode(key.encode()).decode()],
                      [service.KEY_SUBPROTOCOL_PREFIX + key],
                      [key_subprotocol(key.encode() + b' ')]):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect('/emotion-stream', subprotocols=wrong):
                    pass
            assert refused.value.code == 1008, wrong
        # A POST is not let in by a subprotocol-shaped header.
        assert post(client, headers={'Sec-WebSocket-Protocol': offered[1]}).status_code == 401
    with make_client() as client:
        assert client.get('/health').json()['api_key_required'] is False


SUBPROTOCOLS = st.one_of(
    st.text(max_size=40), st.just(key_subprotocol(b's3cret')),
    st.builds(lambda text: service.KEY_SUBPROTOCOL_PREFIX + text,
              st.text(alphabet='czNjcmV0CZ=_-+/* ', max_size=12)))


@settings(max_examples=300, deadline=None)
@given(st.lists(SUBPROTOCOLS, max_size=6))
def test_no_offered_subprotocols_but_the_keys_own_let_a_stream_in(subprotocols):
    keyed = service.Service(predictor=None, aligner=None, api_key='s3cret')
    assert keyed.authorised({}, subprotocols) == (key_subprotocol(b's3cret') in subprotocols)


def metric(text, name, **labels):
    """The value of one sample in Prometheus' text format."""
    wanted = name + ('{%s}' % ','.join('%s="%s"' % item for item in sorted(labels.items()))
                     if labels else '')
    for line in text.splitlines():
        if line.split(' ')[0] == wanted:
            return float(line.split(' ')[1])
    raise AssertionError('%s not in the metrics:\n%s' % (wanted, text))


def test_metrics_count_what_happened():
    with make_client() as client:
        assert post(client, transcript='quiet engine').status_code == 200
        assert post(client, audio='@@').status_code == 400
        with client.websocket_connect('/emotion-stream') as stream:
            stream.send_text(json.dumps({'type': 'start', 'sample_rate': 1000}))
            stream.receive_json()
            stream.send_bytes(np.zeros(2000, dtype='<i2').tobytes())
            stream.send_text('{"type": "end"}')
            while stream.receive_json()['type'] != 'summary':
                pass
        text = client.get('/metrics').text
    assert metric(text, 'ser_requests_total', status='200') == 1
    assert metric(text, 'ser_requests_total', status='400') == 1
    assert metric(text, 'ser_request_seconds_count') == 2
    assert metric(text, 'ser_audio_seconds_total', route='emotion-recognition') == 4.0
    assert metric(text, 'ser_audio_seconds_total', route='emotion-stream') == 2.0
    for stage in ('decoding', 'alignment', 'model'):
        assert metric(text, 'ser_stage_seconds_count', stage=stage) == 1
    assert metric(text, 'ser_streams_total', outcome='summary') == 1
    assert metric(text, 'ser_streams_open') == 0
    assert metric(text, 'ser_requests_cancelled_total') == 0


# --------------------------------------------------------------------------
# The stream protocol, in this process
# --------------------------------------------------------------------------
def stream_replies(client, messages, pause=0.0):
    """Every message the server sends for `messages`, and its close code."""
    got = []
    with client.websocket_connect('/emotion-stream') as stream:
        for message in messages:
            if isinstance(message, bytes):
                stream.send_bytes(message)
            else:
                stream.send_text(message if isinstance(message, str) else json.dumps(message))
            time.sleep(pause)
        try:
            while True:
                got.append(stream.receive_json())
        except WebSocketDisconnect as closed:
            return got, closed.code


START_WITH_WORDS = {'type': 'start', 'sample_rate': 1000, 'words': True}
SECOND = np.zeros(1000, dtype='<i2').tobytes()

BAD_STREAM_MESSAGES = {
    'until_infinite': ([START_WITH_WORDS, SECOND, '{"type": "words", "words": [], '
                        '"until": 1e309}'], '"until" must be a time from 0'),
    'until_nan': ([START_WITH_WORDS, SECOND, '{"type": "words", "words": [], "until": NaN}'],
                  'NaN is not a JSON number'),
    'zero_length_word': ([START_WITH_WORDS, SECOND, {'type': 'words', 'words': [
        {'word': 'x', 'start': 0.5, 'end': 0.5}]}], 'not after its start'),
    'words_before_their_audio_that_never_comes': ([START_WITH_WORDS, {'type': 'words', 'words': [
        {'word': 'w', 'start': i / 10, 'end': i / 10 + 0.05} for i in range(25)]}, SECOND,
        {'type': 'end'}], '25 words, more than can be spoken in 1.00 s'),
    'word_past_the_end': ([START_WITH_WORDS, SECOND, {'type': 'words', 'words': [
        {'word': 'edge', 'start': 1.5, 'end': 1.8}]}, {'type': 'end'}],
        "'edge' at 1.500-1.800 s is not inside the audio"),
    'too_many_words': ([START_WITH_WORDS, {'type': 'words', 'words': [
        {'word': 'w', 'start': i / 100, 'end': i / 100 + 0.005} for i in range(311)]}],
        'more than the 310 accepted'),
    'more_words_than_the_longest_stream_holds': ([START_WITH_WORDS] + [
        {'type': 'words', 'words': [{'word': 'w', 'start': (100 * j + i) / 100,
                                     'end': (100 * j + i) / 100 + 0.005} for i in range(100)]}
        for j in range(4)], '400 words, more than can be spoken in 30.00 s'),
    'deep_start': (['[' * 100000 + ']' * 100000], 'nested too deeply'),
    'absurd_rate': ([{'type': 'start', 'sample_rate': 384000, 'channels': 8}],
                    'sample rate of 384000 Hz'),
}


def test_words_outside_the_frames_win_none():
    assert embeddings.frame_word_index([(5.0, 5.5, 'late')], 4, 0.25).tolist() == [-1] * 4


@pytest.mark.parametrize('case', sorted(BAD_STREAM_MESSAGES))
def test_bad_stream_messages_are_1008(case):
    messages, words = BAD_STREAM_MESSAGES[case]
    with make_client() as client:
        got, code = stream_replies(client, messages)
    assert code == 1008, got
    assert got[-1]['type'] == 'error' and words in got[-1]['text']


def test_a_short_stream_at_another_rate_is_heard():
    """0.1 s at 16 kHz: the resampler has given nothing yet when the stream
    ends, but audio came, so there is a summary."""
    with make_client() as client:
        got, code = stream_replies(client, [{'type': 'start', 'sample_rate': 16000},
                                            np.zeros(1600, dtype='<i2').tobytes(),
                                            {'type': 'end'}])
    assert code == 1000, got
    assert got[-1]['type'] == 'summary' and got[-1]['duration'] == pytest.approx(0.1, abs=0.01)


def test_a_stream_without_words_is_recognised_block_by_block():
    """With recognition on, a stream's audio is cut at its pause (4.0-4.5 s)
    into two blocks, each recognised (FakeAligner's two words, placed in
    their block), and the summary is what POST answers with those words."""
    rng = np.random.default_rng(3)
    audio = np.concatenate([0.3 * np.sin(np.arange(4000) / 3.0), 0.001 * rng.uniform(-1, 1, 500),
                            0.3 * np.sin(np.arange(3500) / 2.0)])
    data = np.round(audio * 32767).astype('<i2').tobytes()
    start = {'type': 'start', 'sample_rate': 1000, 'timeline': True}
    messages = [start] + [data[i:i + 700] for i in range(0, len(data), 700)] + [{'type': 'end'}]
    with make_client(recognise_words=True) as client:
        assert client.get('/health').json()['recognise'] is True
        got, code = stream_replies(client, messages)
        assert code == 1000, got[-1:]
        ready, summary = got[0], got[-1]
        assert ready['recognising'] is True and summary['text'] == 'recognised'
        # The cut: 0.12 s into the pause, and a frame for the resampler's ringing.
        assert [w['word'] for w in summary['words']] == ['quiet', 'engine'] * 2
        assert [(w['start'], w['end']) for w in summary['words']] == pytest.approx(
            [(0.5, 1.0), (1.0, 1.5), (4.63, 5.13), (5.13, 5.63)], abs=0.011)
        answer = post(client, audio=base64.b64encode(wav_of(np.frombuffer(data, '<i2'))).decode(),
                      words=summary['words'], timeline=True).json()
        assert answer['emotion'] == summary['emotion']
        assert [f['timestamp'] for f in got if f['type'] == 'frame'] == [
            r['timestamp'] for r in answer['timeline']]
        for key in ('arousal', 'valence'):
            np.testing.assert_allclose([r[key] for r in summary['timeline']],
                                       [r[key] for r in answer['timeline']], atol=1e-4)
        # The words are the service's to find, unless the stream said it brings them.
        refused, code = stream_replies(client, messages[:2] + [{'type': 'words', 'words': []}])
        assert code == 1008 and 'recognises the words of a stream itself' in refused[-1]['text']
        given, _ = stream_replies(client, [dict(start, words=True)] + messages[1:-1] + [
            {'type': 'words', 'words': [{'word': 'seat', 'start': 2, 'end': 3}], 'until': 8},
            {'type': 'end'}])
        assert given[0]['recognising'] is False and given[-1]['text'] == 'words'
    with make_client() as client:
        assert client.get('/health').json()['recognise'] is False
        plain, _ = stream_replies(client, messages)
    assert plain[0]['recognising'] is False and plain[-1]['text'] == 'none'


def test_the_servers_own_time_on_a_stream_is_not_the_clients():
    class Heard:
        duration = 0.0
    pace = stream_protocol.Pace(0.2)
    time.sleep(0.3)
    assert pace.wait_seconds(Heard) == 0.0
    assert pace.reason(Heard).startswith('audio arrived slower')
    pace.excuse(1.0)    # the server ran the model or the recogniser meanwhile
    assert 0.1 < pace.wait_seconds(Heard) <= 0.2
    assert pace.reason(Heard) == 'idle for 0.2 s'


def test_no_redirect_to_where_the_host_header_says():
    with make_client() as client:
        reply = client.get('/health/', headers={'Host': 'evil.example'},
                           follow_redirects=False)
    assert reply.status_code == 404 and reply.json()['status'] == 'error'


def test_a_stream_ends_at_the_audio_limit_with_its_summary():
    with make_client(max_audio_seconds=3.0) as client:
        got, code = stream_replies(client, [{'type': 'start', 'sample_rate': 1000}]
                                   + [SECOND] * 5)
    assert code == 1000
    assert got[-1]['type'] == 'summary' and got[-1]['duration'] == 3.0
    assert got[-1]['closed'] == 'the audio reached the 3 s limit'


def test_trickling_a_stream_does_not_keep_it_open():
    """Each message comes within the idle timeout, but its audio falls ever
    further behind real time: the stream is ended."""
    with make_client(stream_idle_seconds=0.5) as client:
        got, code = stream_replies(client, [{'type': 'start', 'sample_rate': 1000}]
                                   + [b'\x00\x00' * 5] * 30, pause=0.2)
    assert code == 1000
    assert got[-1]['closed'] == 'audio arrived slower than 0.5 of real time'
    # Ended within about a second, after a few of the 30 messages (5 ms of audio each).
    assert got[-1]['duration'] <= 0.05


# --------------------------------------------------------------------------
# Whatever a client sends: nothing escapes but the service's own 4xx / 1008
# --------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4), max_leaves=12)
WORD = st.fixed_dictionaries({'word': st.text(max_size=8), 'start': JSON_VALUES,
                              'end': JSON_VALUES}) | st.fixed_dictionaries({
                                  'word': st.sampled_from(['engine', 'Q7', "car's", '<laugh>']),
                                  'start': st.floats(-1, 6), 'end': st.floats(-1, 6)})


def wav_header(rate, channels, bits, data_size, riff_size, fmt_code):
    block = channels * max(bits // 8, 1)
    fmt = struct.pack('<HHIIHH', fmt_code, channels, rate, (rate * block) & 0xFFFFFFFF,
                      block & 0xFFFF, bits)
    return (b'RIFF' + struct.pack('<I', riff_size) + b'WAVEfmt ' + struct.pack('<I', len(fmt))
            + fmt + b'data' + struct.pack('<I', data_size))


AUDIO_BYTES = st.one_of(
    st.builds(lambda header, body: header + body,
              st.builds(wav_header, st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 16 - 1),
                        st.sampled_from([0, 1, 8, 16, 24, 32, 64, 65535]),
                        st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
                        st.sampled_from([1, 2, 3, 6, 7, 17, 49, 0xFFFE, 0])),
              st.binary(max_size=400)),
    st.builds(lambda prefix, body: prefix + body,
              st.sampled_from([b'fLaC', b'OggS', b'\x00\x00\x00\x18ftypM4A ', b'\x1a\x45\xdf\xa3',
                               b'ID3', b'\xff\xfb', b'\xff\xf1', b'#!AMR\n', b'FORM\x00\x00\x00\x10AIFF',
                               b'#EXTM3U\n', b'']), st.binary(max_size=300)),
    st.just(SPEECH))
BODIES = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda value: json.dumps(value).encode(), JSON_VALUES),
    st.builds(lambda data, extra: json.dumps(dict(extra, audio=base64.b64encode(data).decode()))
              .encode(),
              AUDIO_BYTES, st.fixed_dictionaries({}, optional={
                  'transcript': st.text(max_size=40) | JSON_VALUES,
                  'words': st.lists(WORD, max_size=4) | JSON_VALUES,
                  'timeline': JSON_VALUES})))


@settings(derandomize=True, max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_no_request_body_escapes_as_a_fault(body):
    answerer = service.Service(predictor=FakePredictor(), aligner=FakeAligner(), language='eng',
                               limits=service.Limits(max_audio_seconds=30.0))
    try:
        response, _ = answerer.answer(body)
    except service.RequestError as error:
        assert error.status in (400, 413)
        assert str(error)
        return
    assert response['status'] == 'ok'
    json.dumps(response, allow_nan=False)


STREAM_MESSAGES = st.lists(st.one_of(
    st.binary(max_size=600),
    st.builds(json.dumps, st.fixed_dictionaries({'type': st.just('words')}, optional={
        'words': st.lists(WORD, max_size=3) | JSON_VALUES, 'until': JSON_VALUES})),
    st.builds(json.dumps, JSON_VALUES),
    st.just('{"type": "end"}')), max_size=8)
STARTS = st.one_of(
    st.builds(json.dumps, st.fixed_dictionaries({'type': st.just('start')}, optional={
        'sample_rate': st.sampled_from([1000, 8000, 44100]) | JSON_VALUES,
        'channels': st.sampled_from([1, 2]) | JSON_VALUES,
        'format': st.just('pcm_s16le') | JSON_VALUES,
        'words': st.booleans() | JSON_VALUES, 'timeline': st.booleans()})),
    st.text(max_size=20))


@settings(derandomize=True, max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(STARTS, STREAM_MESSAGES, st.booleans())
def test_no_stream_message_escapes_as_a_fault(start, messages, recognise_words):
    """The protocol's steps as serve_stream takes them: only StreamError."""
    answerer = service.Service(predictor=FakePredictor(), aligner=FakeAligner(), language='eng',
                               limits=service.Limits(max_audio_seconds=30.0),
                               recognise_words=recognise_words)
    try:
        stream, options, blocks = stream_protocol.open_stream(answerer, start)
        for message in messages:
            if isinstance(message, bytes):
                mono = stream.add_audio(message)
                for block in blocks.add(mono) if blocks is not None else []:
                    stream_protocol.recognise_block(answerer, stream, block)
            elif stream_protocol.apply_text_message(stream, message, 12,
                                                    recognising=blocks is not None) == 'end':
                break
            stream.advance()
        if stream.received:
            last = blocks.finish() if blocks is not None else None
            if last is not None:
                stream_protocol.recognise_block(answerer, stream, last)
            stream.finish()
            json.dumps(stream_protocol.stream_summary(answerer, stream, options,
                                                      recognised=blocks is not None),
                       allow_nan=False)
    except streaming.StreamError as error:
        assert str(error)
