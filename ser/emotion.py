"""From an arousal/valence timeline to the voicebot's emotion label.

The labels and their order are those of the service this project replaces:
each 5 s chunk of the timeline (20 frames of 250 ms; the last chunk may be
shorter) gets the first label whose rule holds for its mean arousal a and
valence v, and the utterance gets its most common chunk label, or `mixed`
when the two most common are equally common.

    neutral     |a| <= .5 and |v| <= .5
    excited     a > .5    and |v| <= .5
    sleepy      a < -.5   and |v| <= .5
    happy       a >= 0    and v > .5
    relaxed     a < 0     and v > .5
    frustrated  a >= 0    and v < -.5
    sad         otherwise (a < 0 and v < -.5)
"""

import collections

import numpy as np

CHUNK_MS = 5000
MIXED = 'mixed'
# The rules in the order they are tried.
RULES = (
    ('neutral', lambda a, v: abs(a) <= 0.5 and abs(v) <= 0.5),
    ('excited', lambda a, v: a > 0.5 and abs(v) <= 0.5),
    ('sleepy', lambda a, v: a < -0.5 and abs(v) <= 0.5),
    ('happy', lambda a, v: a >= 0 and v > 0.5),
    ('relaxed', lambda a, v: a < 0 and v > 0.5),
    ('frustrated', lambda a, v: a >= 0 and v < -0.5),
)
OTHERWISE = 'sad'
LABELS = tuple(name for name, _ in RULES) + (OTHERWISE,)


def label(arousal, valence):
    """The emotion of one mean arousal and valence."""
    for name, holds in RULES:
        if holds(arousal, valence):
            return name
    return OTHERWISE


def chunks(predictions, step_ms, duration=None):
    """[{start, end, arousal, valence, emotion}] of each CHUNK_MS chunk of
    `predictions` [N, 2] (arousal, valence per step_ms frame); start and end in
    seconds, the last end clipped to `duration` (seconds) when given."""
    predictions = np.asarray(predictions, dtype=np.float64)
    size = max(1, CHUNK_MS // step_ms)
    result = []
    for first in range(0, len(predictions), size):
        arousal, valence = predictions[first:first + size].mean(axis=0)
        end = min(first + size, len(predictions)) * step_ms / 1000.0
        result.append({'start': first * step_ms / 1000.0,
                       'end': end if duration is None else min(end, duration),
                       'arousal': float(arousal), 'valence': float(valence),
                       'emotion': label(arousal, valence)})
    return result


def overall(labels):
    """The most common of the chunk labels; MIXED when the first two tie."""
    ranked = collections.Counter(labels).most_common(2)
    if not ranked:
        raise ValueError('no chunk labels')
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return MIXED
    return ranked[0][0]


def summary(predictions, step_ms, duration=None):
    """{emotion, arousal, valence, thayers, chunks} of one utterance's
    timeline: the label, the means over all frames, Thayer's point
    "<valence>,<arousal>" (what later voicebot versions read) and the chunks."""
    predictions = np.asarray(predictions, dtype=np.float64)
    parts = chunks(predictions, step_ms, duration)
    arousal, valence = predictions.mean(axis=0)
    return {'emotion': overall([part['emotion'] for part in parts]),
            'arousal': float(arousal), 'valence': float(valence),
            'thayers': '%.6f,%.6f' % (valence, arousal),
            'chunks': parts}
