"""ser.service in this process: what a request body must hold (the server
itself, over HTTP, is tested in test_serve.py)."""

import base64
import json

import pytest

from ser import service

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
                       'end must not precede start'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_requests_are_400(case):
    content, message = BAD[case]
    with pytest.raises(service.RequestError) as error:
        service.parse_request(content)
    assert error.value.status == 400
    assert message in str(error.value)
