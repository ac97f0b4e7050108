"""ser.streaming in this process: a live utterance fed piece by piece gives
the timeline, chunks and summary of the whole utterance in one pass (the
WebSocket endpoint over it is tested in test_serve.py). The model is a
seeded random checkpoint at the tiny dataset's shapes (1000 Hz, S = 250)."""

import numpy as np
import pytest
import soxr

from model_fixtures import write_random_checkpoint
from ser import emotion, inference, streaming

TOLERANCE = 1e-4
RATE = 1000
WORDS = [(0.3, 0.9, 'engine'), (1.0, 1.6, 'seat'), (5.1, 6.0, 'great'), (12.0, 14.2, 'awful'),
         (14.2, 15.0, 'quiet')]


@pytest.fixture(scope='module')
def predictor(tiny_dataset, tmp_path_factory):
    checkpoint = write_random_checkpoint(tmp_path_factory.mktemp('stream_model'), tiny_dataset)
    with inference.Predictor.from_checkpoint(checkpoint, device=-1) as loaded:
        yield loaded


def pcm(seconds, rate=RATE, channels=1, seed=0):
    """16-bit PCM noise whose loudness changes each second: [samples, channels] int16."""
    rng = np.random.default_rng(seed)
    loudness = np.repeat(rng.uniform(0.05, 0.9, int(seconds) + 1), rate)[:int(seconds * rate)]
    noise = rng.uniform(-1, 1, (len(loudness), channels)) * loudness[:, None]
    return np.round(noise * 32767).astype('<i2')


def as_float(samples):
    return (samples.astype(np.float32) / 32768.0).mean(axis=1, dtype=np.float32)


def stream_through(stream, data, pieces, words=(), words_lag=0.5, seed=1):
    """Feed `data` (bytes) in `pieces` random-sized messages, each word once
    the audio is words_lag s past its end (as a recogniser lags); returns
    the frames and chunks answered, in order."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(data)), pieces - 1, replace=False))
    frames, chunks, pending = [], [], list(words)
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(data)]):
        stream.add_audio(data[start:stop])
        heard_until = stream.received / stream.predictor.sample_rate
        ready = [word for word in pending if word[1] + words_lag <= heard_until]
        pending = pending[len(ready):]
        if ready or stream.with_words:
            # Final up to where the recogniser has heard, short of a word still being heard.
            until = min([heard_until - words_lag] + [start for start, _, _ in pending[:1]])
            stream.add_words(ready, until=max(0.0, until))
        new_frames, new_chunks = stream.advance()
        frames += new_frames
        chunks += new_chunks
    new_frames, new_chunks = stream.finish()
    return frames + new_frames, chunks + new_chunks


def test_a_stream_gives_the_one_pass_timeline_chunks_and_summary(predictor):
    samples = pcm(23.13)
    _, one_pass = predictor.timeline(as_float(samples), WORDS, chunk_seconds=0)
    stream = streaming.Stream(predictor, RATE, with_words=True)
    # Odd-sized pieces: samples split between messages.
    frames, chunks = stream_through(stream, samples.tobytes(), 97, WORDS)
    assert [t for t, _, _ in frames] == list(range(0, 250 * len(one_pass), 250))
    assert np.max(np.abs(np.array([f[1:] for f in frames]) - one_pass)) <= TOLERANCE
    expected = emotion.summary(one_pass, predictor.step_ms, len(samples) / RATE)
    assert len(chunks) == len(expected['chunks']) == 5
    for got, want in zip(chunks, expected['chunks']):
        assert (got['start'], got['end'], got['emotion']) == (want['start'], want['end'],
                                                              want['emotion'])
        assert got['arousal'] == pytest.approx(want['arousal'], abs=TOLERANCE)
    summary = stream.summary()
    assert summary['emotion'] == expected['emotion']
    assert summary['arousal'] == pytest.approx(expected['arousal'], abs=TOLERANCE)
    assert stream.duration == pytest.approx(23.13)


def test_frames_wait_for_their_words(predictor):
    """With words, a frame is answered only once the words up to its end are
    known; without, as soon as its audio (and 184 samples more) arrived."""
    samples = pcm(4).tobytes()
    with_words = streaming.Stream(predictor, RATE, with_words=True)
    with_words.add_audio(samples)
    assert with_words.advance() == ([], [])
    with_words.add_words([(0.3, 0.9, 'engine')], until=1.1)
    assert [t for t, _, _ in with_words.advance()[0]] == [0, 250, 500, 750]
    acoustic = streaming.Stream(predictor, RATE)
    acoustic.add_audio(samples[:2 * (1000 + inference.REACH_AFTER - 1)])
    assert len(acoustic.advance()[0]) == 3
    acoustic.add_audio(samples[2 * (1000 + inference.REACH_AFTER - 1):2 * (1000 + 184)])
    assert len(acoustic.advance()[0]) == 1


def test_another_rate_and_stereo_are_resampled_and_mixed(predictor):
    samples = pcm(7.3, rate=8000, channels=2, seed=3)
    expected_samples = soxr.resample(as_float(samples), 8000, RATE)
    _, one_pass = predictor.timeline(expected_samples, chunk_seconds=0)
    stream = streaming.Stream(predictor, 8000, channels=2)
    frames, _ = stream_through(stream, samples.tobytes(), 40)
    assert len(frames) == len(one_pass)
    assert np.max(np.abs(np.array([f[1:] for f in frames]) - one_pass)) <= TOLERANCE


def test_only_the_last_frames_of_audio_are_kept(predictor):
    stream = streaming.Stream(predictor, RATE)
    data = pcm(20).tobytes()
    for start in range(0, len(data), 500):
        stream.add_audio(data[start:start + 500])
        stream.advance()
        assert len(stream._audio) <= 3 * predictor.frame_samples
    assert stream.frames_done == 79


@pytest.mark.parametrize('words, message', [
    ([(2.0, 2.5, 'seat'), (1.0, 1.5, 'engine')], 'in order of time'),
])
def test_words_out_of_order_are_refused(predictor, words, message):
    stream = streaming.Stream(predictor, RATE, with_words=True)
    with pytest.raises(streaming.StreamError, match=message):
        stream.add_words(words)


@pytest.mark.parametrize('rows, message', [
    ('engine', 'must be a list'),
    ([{'word': 'engine', 'start': 1.0}], r'"words"\[0\] must be'),
    ([{'word': 5, 'start': 1.0, 'end': 2.0}], r'"words"\[0\] must be \{"word": text'),
    ([{'word': 'engine', 'start': 2.0, 'end': 1.0}], 'ends at 1.0 s, not after its start'),
    ([{'word': 'engine', 'start': 1.0, 'end': 1.0}], 'ends at 1.0 s, not after its start'),
    ([{'word': 'engine', 'start': '1', 'end': 2.0}], r'"start" must be a number of seconds'),
])
def test_malformed_words(rows, message):
    with pytest.raises(streaming.StreamError, match=message):
        streaming.timed_words(rows, '"words"')


def test_recognised_words_are_normalised():
    assert streaming.timed_words([{'word': 'Engine!', 'start': 0.5, 'end': 1},
                                  {'word': '<laugh>', 'start': 1, 'end': 2}], '"words"') == [
        (0.5, 1.0, 'engine')]


def test_nothing_after_the_end(predictor):
    stream = streaming.Stream(predictor, RATE)
    stream.add_audio(pcm(1).tobytes())
    stream.finish()
    with pytest.raises(streaming.StreamError, match='after the end'):
        stream.add_audio(b'\x00\x00')


# --------------------------------------------------------------------------
# Blocks of a stream's audio for its words to be recognised
# --------------------------------------------------------------------------
def phrases(pieces, rate=streaming.RECOGNITION_RATE, seed=0):
    """Mono float32 audio of (seconds, amplitude) pieces: noise, loud for
    speech and faint (-60 dBFS) for a pause."""
    rng = np.random.default_rng(seed)
    return np.concatenate([amplitude * rng.uniform(-1, 1, int(round(seconds * rate)))
                           for seconds, amplitude in pieces]).astype(np.float32)


def blocks_of(samples, pieces, sample_rate=streaming.RECOGNITION_RATE, max_seconds=None,
              seed=1):
    """The blocks SpeechBlocks cuts `samples` into, fed in `pieces` random messages."""
    blocks = streaming.SpeechBlocks(sample_rate, max_seconds)
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(samples)), pieces - 1,
                                                       replace=False))
    got = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(samples)]):
        got += blocks.add(samples[start:stop])
    last = blocks.finish()
    return got + ([last] if last is not None else [])


def test_blocks_are_cut_in_the_first_pause_past_the_minimum():
    speech, pause = 0.3, 0.001
    # A pause before 3 s is no cut; the one at 4.4-4.9 s is, in its middle.
    samples = phrases([(2.0, speech), (0.4, pause), (2.0, speech), (0.5, pause), (3.0, speech)])
    whole = blocks_of(samples, 1)
    assert [round(start, 3) for start, _ in whole] == [0.0, 4.52]
    np.testing.assert_array_equal(np.concatenate([block for _, block in whole]), samples)
    for pieces, seed in [(7, 1), (200, 2), (3000, 3)]:
        split = blocks_of(samples, pieces, seed=seed)
        assert [start for start, _ in split] == [start for start, _ in whole]
        for (_, a), (_, b) in zip(split, whole):
            np.testing.assert_array_equal(a, b)


def test_speech_without_a_pause_is_cut_at_the_longest_block():
    samples = phrases([(1.0, amplitude) for amplitude in
                       np.random.default_rng(4).uniform(0.2, 0.9, 25)])
    whole = blocks_of(samples, 1)
    lengths = [len(block) / streaming.RECOGNITION_RATE for _, block in whole]
    assert all(streaming.BLOCK_MIN_SECONDS <= length <= streaming.BLOCK_MAX_SECONDS
               for length in lengths[:-1]), lengths
    assert len(whole) >= 3
    split = blocks_of(samples, 500)
    assert [start for start, _ in split] == [start for start, _ in whole]


def test_blocks_are_at_the_recognisers_rate_and_within_the_limit():
    rate = 8000
    samples = phrases([(3.5, 0.3), (0.5, 0.001), (4.0, 0.3)], rate=rate)
    whole = blocks_of(samples, 1, sample_rate=rate)
    expected = soxr.resample(samples, rate, streaming.RECOGNITION_RATE)
    np.testing.assert_allclose(np.concatenate([block for _, block in whole]), expected,
                               atol=1e-6)
    assert len(whole) == 2
    split = blocks_of(samples, 300, sample_rate=rate)
    for (a_start, a), (b_start, b) in zip(split, whole):
        assert a_start == b_start
        np.testing.assert_array_equal(a, b)
    limited = blocks_of(samples, 10, sample_rate=rate, max_seconds=5.0)
    assert sum(len(block) for _, block in limited) == 5 * streaming.RECOGNITION_RATE
