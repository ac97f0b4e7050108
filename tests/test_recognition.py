"""ser.recognition: words recognised by PocketSphinx where audio comes without
text, on the real-speech reference (tests/data/sonnet): the shape predict.py
takes, words inside the audio and in order, the ones it gets right placed
inside the spoken word, and an answer that does not depend on what came
before."""
import difflib

import numpy as np
import pytest

from ser import recognition, streaming
from ser.text import normalise_words
from sonnet_fixtures import REFERENCE_SECONDS, SAMPLE_RATE, read_reference, read_sonnet

# Each test recognises the recording at least once: slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sonnet():
    assert SAMPLE_RATE == recognition.SAMPLE_RATE
    truth = [(start, end, normalise_words(word)[0]) for start, end, word in read_reference()]
    return read_sonnet(), truth


@pytest.fixture(scope='module')
def recognised(sonnet):
    return recognition.recognise_words(sonnet[0][:int(REFERENCE_SECONDS * recognition.SAMPLE_RATE)])


def test_recognised_words_are_normalised_timed_and_in_order(recognised):
    assert len(recognised) >= 15
    starts, ends = np.array([(start, end) for start, end, _ in recognised]).T
    assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-9)
    assert starts[0] >= 0 and ends[-1] <= REFERENCE_SECONDS
    assert all([word] == normalise_words(word) for _, _, word in recognised)


def matched(heard, truth):
    """[(heard word, true word)] of the words heard right, in order."""
    matcher = difflib.SequenceMatcher(a=[w for _, _, w in heard], b=[w for _, _, w in truth],
                                      autojunk=False)
    return [(heard[block.a + k], truth[block.b + k])
            for block in matcher.get_matching_blocks() for k in range(block.size)]


def test_the_words_it_gets_right_are_where_they_were_said(sonnet, recognised):
    pairs = matched(recognised, sonnet[1])
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


def test_a_stream_cut_into_blocks_is_recognised_about_as_well_as_whole(sonnet, recognised):
    """The blocks a stream is recognised in (ser.streaming.SpeechBlocks) are
    cut between the reference's words, and recognised one by one they give
    about as many right words as the whole recording."""
    samples, truth = sonnet
    blocks = streaming.SpeechBlocks(recognition.SAMPLE_RATE)
    cut = blocks.add(samples[:int(REFERENCE_SECONDS * recognition.SAMPLE_RATE)])
    cut.append(blocks.finish())
    assert len(cut) >= 2
    for start, _ in cut[1:]:
        assert not [word for word in truth if word[0] < start < word[1]], start
    heard = [(start + word_start, start + word_end, word) for start, block in cut
             for word_start, word_end, word in recognition.recognise_words(block)]
    assert len(matched(heard, truth)) >= len(matched(recognised, truth)) - 2
