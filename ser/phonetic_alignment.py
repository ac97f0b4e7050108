"""Word-level forced alignment with PocketSphinx's en-us acoustic model.

The words of a transcript (normalised, fillers dropped) are looked up in the
CMU pronouncing dictionary that ships in PocketSphinx's wheel; a word it lacks
gets a pronunciation from espeak (ser.pronunciation) and is counted. The
decoder then aligns the word sequence, with optional silences between words,
to the recording's frames (10 ms) with the real acoustic model: no synthetic
voice is involved, so the alignment holds on human speech.

One decoder per process, built on first use (ser.isolated_alignment builds it
in its helper process before forking). What a call leaves in it cannot change
the next call's answer: the front end (its noise estimate) is reset before
each recording, cepstral mean normalisation is computed per recording (`cmn
batch`), and a word added to the dictionary is only ever added with the
pronunciation espeak gives it, which is what a fresh process would add.
"""
import re

import numpy as np
from pocketsphinx import Decoder

import helper
from ser import pronunciation

# Language codes (aeneas's, as --language takes them) the en-us model serves:
# every English one, the British and Scottish voices too.
LANGUAGES = frozenset({'eng', 'eng-USA', 'eng-GBR', 'eng-SCT', 'en', 'en-us', 'en-gb', 'en-sc',
                       'en-uk-north', 'en-uk-rp', 'en-uk-wmids', 'en-wi'})
SAMPLE_RATE = 16000
FRAME_SECONDS = 0.010
# Acoustic scores of every other frame (ds 2): a third less CPU per
# alignment, the same accuracy on human speech (BENCHMARKS.md).
DECODER_SETTINGS = {'lm': None, 'loglevel': 'FATAL', 'cmn': 'batch', 'ds': 2}
ALTERNATIVE = re.compile(r'\(\d+\)$')        # cmudict's second pronunciation: word(2)
NOT_WORDS = frozenset({'<s>', '</s>', '<sil>', '[NOISE]', '[SPEECH]'})
# The decoder may give a word the breath or noise before or after it. Frames
# below this fraction of the way from the recording's noise floor (10th
# percentile of frame energy) to its speech level (95th) are not speech, and a
# run of them of at least MIN_PAUSE_SECONDS at a word's edge is cut off it;
# shorter runs are stop closures and stay.
NOISE_PERCENTILE, SPEECH_PERCENTILE, SPEECH_THRESHOLD = 10, 95, 0.2
WINDOW_SECONDS = 0.025
MIN_PAUSE_SECONDS = 0.1

_decoder = None
_guessed = {}                                # word -> phones this process added from espeak


class PhoneticAlignmentError(Exception):
    """PocketSphinx could not align the words; the caller falls back."""


def decoder():
    """The process's decoder (acoustic model and dictionary), built once."""
    global _decoder
    if _decoder is None:
        _decoder = Decoder(**DECODER_SETTINGS)
    return _decoder


def align_words(samples, words, speech=None):
    """(spans, guessed): (start, end) in seconds (rounded to ms) of each of
    `words` (normalised, in order) spoken over 16-kHz mono `samples`, and the
    number of distinct words whose pronunciation came from espeak. speech:
    the samples' speech frames (speech_frames), when they are part of a
    longer recording whose levels set the threshold. PhoneticAlignmentError
    when they cannot be aligned, or there is no speech to align them to."""
    if not words:
        return [], 0
    speech = speech_frames(samples) if speech is None else speech
    if not speech.any():
        raise PhoneticAlignmentError('no speech found')
    guessed = add_missing_words(words)
    segments = decode(samples, words)
    spoken = [(word, start, end) for word, start, end in segments if word not in NOT_WORDS]
    if [word for word, _, _ in spoken] != list(words):
        raise PhoneticAlignmentError('the decoder returned %d of the %d words'
                                     % (len(spoken), len(words)))
    spans = [trim_pauses(speech, start, end) for _, start, end in spoken]
    return [(round(start, 3), round(end, 3)) for start, end in spans], guessed


def add_missing_words(words):
    """Give the dictionary the words it lacks; the number of distinct words
    that needed espeak (in this call or an earlier one of this process)."""
    engine = decoder()
    unknown = sorted({word for word in words if word in _guessed
                      or engine.lookup_word(word) is None})
    new = [word for word in unknown if word not in _guessed]
    try:
        found = pronunciation.pronounce(new)
    except pronunciation.PronunciationError as error:
        raise PhoneticAlignmentError(str(error)) from None
    for word, phones in found.items():
        try:
            # No search to update: set_align_text builds its own from the dictionary.
            engine.add_word(word, phones, False)
        except RuntimeError as error:
            raise PhoneticAlignmentError('cannot add %r (%s): %s' % (word, phones, error)) from None
        _guessed[word] = phones
    return len(unknown)


def decode(samples, words):
    """[(word, start s, end s)] of the decoder's alignment of `words`."""
    engine = decoder()
    try:
        engine.set_align_text(' '.join(words))
        # The front end's noise estimate would carry over from the last recording.
        engine.reinit_feat()
        run_utterance(engine, samples)
    except RuntimeError as error:
        raise PhoneticAlignmentError('PocketSphinx failed: %s' % error) from None
    if engine.hyp() is None:
        raise PhoneticAlignmentError('PocketSphinx found no alignment of the words')
    return [(ALTERNATIVE.sub('', segment.word), segment.start_frame * FRAME_SECONDS,
             (segment.end_frame + 1) * FRAME_SECONDS) for segment in engine.seg()]


def run_utterance(engine, samples):
    """16-kHz float `samples` through a PocketSphinx decoder as one
    utterance, as 16-bit PCM; RuntimeError from PocketSphinx passes."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype('<i2')
    engine.start_utt()
    engine.process_raw(pcm.tobytes(), full_utt=True)
    engine.end_utt()


def speech_frames(samples):
    """True for each 10-ms frame whose energy is above the recording's
    speech threshold."""
    samples = np.asarray(samples, dtype=np.float64)
    hop, window = int(FRAME_SECONDS * SAMPLE_RATE), int(WINDOW_SECONDS * SAMPLE_RATE)
    count = max(1, 1 + (len(samples) - window) // hop)
    padded = np.pad(samples, (0, max(0, (count - 1) * hop + window - len(samples))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    floor, level = np.percentile(energy, [NOISE_PERCENTILE, SPEECH_PERCENTILE])
    return energy > floor + SPEECH_THRESHOLD * (level - floor)


def trim_pauses(speech, start, end):
    """(start, end) in seconds without a pause at either edge; a span with no
    speech frame is left as the decoder gave it."""
    first, last = int(round(start / FRAME_SECONDS)), int(round(end / FRAME_SECONDS))
    spoken = np.flatnonzero(speech[first:last])
    if spoken.size == 0:
        return start, end
    shortest = int(round(MIN_PAUSE_SECONDS / FRAME_SECONDS))
    lead, tail = spoken[0], (last - first) - 1 - spoken[-1]
    return float(first + lead if lead >= shortest else first) * FRAME_SECONDS, \
        float(last - tail if tail >= shortest else last) * FRAME_SECONDS


def warm_up():
    """Build the decoder and align once, so that a process forked after this
    (ser.isolated_alignment) inherits the first call's costs paid."""
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.01
    try:
        align_words(noise, ['one'])
    except PhoneticAlignmentError:
        helper.development_msg('the warm-up alignment of noise found no word, as it may')
