"""The voicebot's emotion labels (ser.emotion): the rules in their order, the
5 s chunks, the utterance's label and the tie."""

import numpy as np
import pytest

from ser import emotion

# (arousal, valence) -> label, on and around every boundary of the rules.
CASES = [
    ((0.0, 0.0), 'neutral'),
    ((0.5, 0.5), 'neutral'),            # the bounds belong to neutral
    ((-0.5, -0.5), 'neutral'),
    ((0.51, 0.5), 'excited'),
    ((0.9, -0.5), 'excited'),
    ((-0.51, 0.0), 'sleepy'),
    ((-0.9, 0.5), 'sleepy'),
    ((0.0, 0.51), 'happy'),             # a >= 0 is happy, not relaxed
    ((0.9, 0.9), 'happy'),
    ((-0.01, 0.51), 'relaxed'),
    ((-0.9, 0.9), 'relaxed'),
    ((0.0, -0.51), 'frustrated'),
    ((0.9, -0.9), 'frustrated'),
    ((-0.01, -0.51), 'sad'),
    ((-0.9, -0.9), 'sad'),
]


@pytest.mark.parametrize('point, expected', CASES)
def test_rules(point, expected):
    assert emotion.label(*point) == expected


def test_every_point_gets_one_of_the_labels():
    grid = np.linspace(-1, 1, 41)
    found = {emotion.label(a, v) for a in grid for v in grid}
    assert found == set(emotion.LABELS)


def timeline(*chunk_values, last_frames=20):
    """20 frames per (arousal, valence) pair; the last pair gets last_frames."""
    counts = [20] * (len(chunk_values) - 1) + [last_frames]
    return np.concatenate([np.tile(values, (count, 1))
                           for values, count in zip(chunk_values, counts)])


def test_chunks_of_five_seconds_the_last_shorter():
    predictions = timeline((0.9, 0.0), (0.0, 0.9), (-0.9, -0.9), last_frames=7)
    chunks = emotion.chunks(predictions, 250, duration=11.6)
    assert [(c['start'], c['end'], c['emotion']) for c in chunks] == [
        (0.0, 5.0, 'excited'), (5.0, 10.0, 'happy'), (10.0, 11.6, 'sad')]
    assert chunks[2]['arousal'] == pytest.approx(-0.9)
    # Without the duration the last chunk ends with its last frame.
    assert emotion.chunks(predictions, 250)[-1]['end'] == 11.75


def test_chunk_label_is_of_the_chunk_mean():
    # Half the frames excited, half sleepy: the mean (0, 0) is neutral.
    predictions = np.array([(0.9, 0.0)] * 10 + [(-0.9, 0.0)] * 10)
    assert [c['emotion'] for c in emotion.chunks(predictions, 250)] == ['neutral']


def test_utterance_label():
    assert emotion.overall(['happy', 'sad', 'happy']) == 'happy'
    assert emotion.overall(['happy']) == 'happy'
    # The two most common tie: mixed, even when a third one trails.
    assert emotion.overall(['happy', 'sad', 'neutral', 'sad', 'happy']) == 'mixed'
    assert emotion.overall(['happy', 'sad']) == 'mixed'


def test_summary():
    predictions = timeline((0.9, 0.0), (0.9, 0.1), (0.0, 0.9))
    result = emotion.summary(predictions, 250, duration=15.0)
    assert result['emotion'] == 'excited'
    assert result['arousal'] == pytest.approx(0.6)
    assert result['valence'] == pytest.approx(1.0 / 3)
    valence, arousal = map(float, result['thayers'].split(','))
    assert (valence, arousal) == (pytest.approx(1.0 / 3, abs=1e-6), pytest.approx(0.6, abs=1e-6))
    assert len(result['chunks']) == 3
