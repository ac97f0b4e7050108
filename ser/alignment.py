"""Word-level forced alignment: plain text by the phonetic aligner for English
(ser.phonetic_alignment, PocketSphinx's acoustic model), else by aeneas,
tuned to follow speech (below); each step falls back to the next.

align_plain (and align_text, its shape as the service and predict.py take
it) tries, in order: the phonetic aligner (English, unless aeneas is asked
for), aeneas, and last the words spread over the recording by character
length; it says which one gave the words. align_sentences does the same for
each sentence of a transcript, within its span.

aeneas: the words of a transcript (lower case, punctuation stripped, fillers such as
<filler> dropped) are synthesised with espeak and the synthetic speech is
matched to the recording by dynamic time warping of MFCCs. aeneas with its
default settings lets a word swallow the silence around it, so it is
configured to follow speech:
  * MFCCs every 10 ms over 25 ms windows (the defaults, 40 ms over 100 ms, are
    made for paragraphs), computed once per recording from samples already in
    memory; each sentence is a window of them (aeneas's head/middle/tail);
  * non-speech frames are masked out of the warping (mfcc_mask_nonspeech), with
    an energy threshold set per recording between its noise floor and its
    speech level instead of aeneas's fixed offset above the quietest frame;
  * a place-holder sound is synthesised where the transcript marks a filler, so
    the hesitation it stands for is not given to a neighbouring word;
  * every word boundary within 150 ms of a pause (60 ms or more) is moved to its
    edges (the earlier word ends where the pause begins, the next starts where
    it ends), and each word is trimmed to its first and last speech frame.
A sentence aeneas cannot align (no speech in its span, a synthesis failure)
gets its words spread over its span by character length and is reported as a
fallback. espeak's voice flutter carries over from one synthesis to the next
within a process, so a boundary may move by a frame or so between runs that
process recordings in another order.
"""
import collections
import os
import re
import tempfile

import numpy as np
import soundfile
import soxr
import aeneas.cmfcc.cmfcc
from aeneas.audiofilemfcc import AudioFileMFCC
from aeneas.dtw import DTWAligner
from aeneas.runtimeconfiguration import RuntimeConfiguration
from aeneas.synthesizer import Synthesizer
from aeneas.textfile import TextFile, TextFragment

import helper
from ser import defaults, phonetic_alignment
from ser.text import normalise_words

# Language codes espeak supports through aeneas (eng, deu, fra, ...).
LANGUAGES = helper.aeneas_languages()

# aeneas extracts MFCCs at 16 kHz (its ffmpeg rate); the mel bands reach 6.9 kHz.
SAMPLE_RATE = 16000
FRAME_SECONDS = 0.010
AENEAS_SETTINGS = {
    RuntimeConfiguration.MFCC_WINDOW_LENGTH: '0.025',
    RuntimeConfiguration.MFCC_WINDOW_SHIFT: '%.3f' % FRAME_SECONDS,
    RuntimeConfiguration.MFCC_MASK_NONSPEECH: 'True',
    # A Sakoe-Chiba band of +-10 s: ample for a sentence, bounded memory for long ones.
    RuntimeConfiguration.DTW_MARGIN: '10.000',
}
# Speech threshold: this fraction of the way from the noise floor (10th
# percentile of frame energy) to the speech level (95th percentile). Relative,
# so it holds from quiet studio audio to a noisy cabin.
NOISE_PERCENTILE, SPEECH_PERCENTILE, SPEECH_THRESHOLD = 10, 95, 0.2
MIN_PAUSE_FRAMES = 6         # 60 ms below threshold is a pause, shorter is a stop consonant
SNAP_TOLERANCE_FRAMES = 15   # a boundary up to 150 ms from a pause is moved onto it
FILLER_TAG = re.compile(r'(<[^>]*>)')
FILLER_SOUND = 'um'          # synthesised where the transcript marks a filler
# Plain-text aligners in the order they are tried, and the last resort.
PHONETIC, AENEAS = defaults.ALIGNERS[1:]
SPREAD = 'spread'
ALIGNERS = (PHONETIC, AENEAS)
# What align_plain did: words [(start, end, word)]; method PHONETIC, AENEAS,
# SPREAD or None (no words); guessed, the number of distinct words the phonetic
# aligner pronounced with espeak; failures, [(aligner, reason)] of the
# aligners that were tried and failed.
PlainAlignment = collections.namedtuple('PlainAlignment', 'words method guessed failures')


class AlignmentError(Exception):
    """aeneas could not align a sentence; its words get spread instead."""


# --------------------------------------------------------------------------
# Alignment of one recording
# --------------------------------------------------------------------------
def align_sentences(samples, sample_rate, sentences, language='eng', aligner=None):
    """Word timings of transcript sentences in a recording.

    samples: mono audio (1-D; 2-D is taken as [time, channel] and averaged) at
    `sample_rate`; sentences: [(start, end, text)] in seconds; language: an
    aeneas language code; aligner as align_plain takes it. Each sentence is
    aligned within its span by the phonetic aligner (English), and when it
    cannot, or for other languages, by aeneas. Returns (rows, fallbacks): rows
    [(id, start, end, word)] in seconds (rounded to ms) with id
    s<sentence>w<word>, and fallbacks [(sentence index, reason)] for the
    sentences whose words were spread over their span by character length. A
    sentence without words (punctuation or fillers only) gives no rows but
    keeps its index."""
    aligner = chosen_aligner(aligner, language)
    samples = to_aeneas_rate(samples, sample_rate)
    rconf = aeneas_configuration()
    recording = recording_mfcc(samples, rconf)
    speech = speech_frames(recording)
    heard = phonetic_alignment.speech_frames(samples) if aligner == PHONETIC else None
    synthesizer = Synthesizer(rconf=rconf)
    rows, fallbacks = [], []
    for index, (start, end, text) in enumerate(sentences):
        words = normalise_words(text)
        if not words:
            continue
        try:
            spans = None if heard is None else phonetic_sentence(samples, heard, start, end, words)
            if spans is None:
                spans = align_sentence(recording, speech, synthesizer, (start, end, text),
                                       language, rconf)
        except AlignmentError as error:
            fallbacks.append((index, str(error)))
            spans = spread_by_characters(words, start, end)
        rows += [('s%dw%d' % (index, number), round(word_start, 3), round(word_end, 3), word)
                 for number, (word, (word_start, word_end)) in enumerate(zip(words, spans))]
    return rows, fallbacks


def align_text(samples, sample_rate, text, language='eng'):
    """Word timings of plain text spoken over the whole recording, by the
    default aligner for the language (align_plain).

    text may carry fillers (<filler>), which are not returned. Returns
    (words, fallbacks): words [(start, end, word)] in seconds (rounded to
    ms), normalised words in text order; fallbacks is 1 when no aligner could
    align and the words were spread over the recording by character length,
    else 0. Text without words gives ([], 0)."""
    result = align_plain(samples, sample_rate, text, language)
    return result.words, int(result.method == SPREAD)


def default_aligner(language):
    """The phonetic aligner for a language its acoustic model speaks, else aeneas."""
    return PHONETIC if language in phonetic_alignment.LANGUAGES else AENEAS


def chosen_aligner(aligner, language):
    """`aligner`, or the default one for the language when None; ValueError
    for the phonetic aligner and a language it does not speak."""
    aligner = aligner or default_aligner(language)
    if aligner == PHONETIC and language not in phonetic_alignment.LANGUAGES:
        raise ValueError('the phonetic aligner speaks %s, not %r'
                         % (', '.join(sorted(phonetic_alignment.LANGUAGES)), language))
    return aligner


def phonetic_sentence(samples, heard, start, end, words):
    """(start, end) of each word of a sentence spoken in [start, end] s of
    16-kHz `samples` by the phonetic aligner, `heard` the recording's speech
    frames; None when it cannot align them (aeneas then tries)."""
    first, last = (int(round(t / phonetic_alignment.FRAME_SECONDS)) for t in (start, end))
    try:
        spans, _ = phonetic_alignment.align_words(
            samples[int(round(start * SAMPLE_RATE)):int(round(end * SAMPLE_RATE))], words,
            heard[first:last])
    except phonetic_alignment.PhoneticAlignmentError as error:
        helper.development_msg('sentence at %.3f-%.3f s: %s; aeneas aligns it', start, end, error)
        return None
    return [(word_start + start, word_end + start) for word_start, word_end in spans]


def align_plain(samples, sample_rate, text, language='eng', aligner=None):
    """A PlainAlignment of plain text spoken over the whole recording.
    aligner: PHONETIC, AENEAS or None (default_aligner); PHONETIC for a
    language the phonetic aligner does not speak is a ValueError. When the
    phonetic aligner fails, aeneas aligns; when aeneas fails, the words are
    spread. AlignmentError when the recording is too short for aeneas."""
    aligner = chosen_aligner(aligner, language)
    words = normalise_words(text)
    if not words:
        return PlainAlignment([], None, 0, [])
    samples = to_aeneas_rate(samples, sample_rate)
    failures = []
    if aligner == PHONETIC:
        try:
            spans, guessed = phonetic_alignment.align_words(samples, words)
            return PlainAlignment([(start, end, word) for word, (start, end)
                                   in zip(words, spans)], PHONETIC, guessed, [])
        except phonetic_alignment.PhoneticAlignmentError as error:
            helper.development_msg('the phonetic aligner could not align %d words (%s); '
                                   'aeneas aligns them', len(words), error)
            failures.append((PHONETIC, str(error)))
    rows, spread = align_sentences(samples, SAMPLE_RATE,
                                   [(0.0, len(samples) / SAMPLE_RATE, text)], language, AENEAS)
    failures += [(AENEAS, reason) for _, reason in spread]
    return PlainAlignment([(start, end, word) for _, start, end, word in rows],
                          SPREAD if spread else AENEAS, 0, failures)


def aeneas_configuration():
    return RuntimeConfiguration('|'.join('%s=%s' % item for item in AENEAS_SETTINGS.items()))


def to_aeneas_rate(samples, sample_rate):
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE)
    return samples


def compute_mfcc(samples, rconf):
    """aeneas's MFCC matrix [coefficients, frames] of 16-kHz samples in memory."""
    settings = [rconf[key] for key in (
        RuntimeConfiguration.MFCC_FILTERS, RuntimeConfiguration.MFCC_SIZE,
        RuntimeConfiguration.MFCC_FFT_ORDER, RuntimeConfiguration.MFCC_LOWER_FREQUENCY,
        RuntimeConfiguration.MFCC_UPPER_FREQUENCY, RuntimeConfiguration.MFCC_EMPHASIS_FACTOR,
        RuntimeConfiguration.MFCC_WINDOW_LENGTH, RuntimeConfiguration.MFCC_WINDOW_SHIFT)]
    samples = np.asarray(samples, dtype=np.float64)
    return aeneas.cmfcc.cmfcc.compute_from_data(samples, SAMPLE_RATE, *settings)[0].T


def recording_mfcc(samples, rconf):
    """The recording as an aeneas AudioFileMFCC whose speech mask follows an
    energy threshold relative to this recording's noise floor and speech level."""
    matrix = compute_mfcc(samples, rconf)
    if matrix.shape[1] < 2:
        raise AlignmentError('recording shorter than two MFCC frames')
    wave = AudioFileMFCC(mfcc_matrix=matrix, rconf=rconf)
    energy = matrix[0]
    floor, speech = np.percentile(energy, [NOISE_PERCENTILE, SPEECH_PERCENTILE])
    threshold = floor + SPEECH_THRESHOLD * (speech - floor)
    wave.run_vad(log_energy_threshold=threshold - energy.min(),
                 min_nonspeech_length=MIN_PAUSE_FRAMES, extend_before=0, extend_after=0)
    return wave


def speech_frames(wave):
    mask = np.zeros(wave.all_length, dtype=bool)
    mask[wave.masked_map] = True
    return mask


def sentence_tokens(text):
    """The sentence's words, with None where the transcript marks a filler."""
    tokens = []
    for piece in FILLER_TAG.split(text):
        tokens += [None] if FILLER_TAG.fullmatch(piece) else normalise_words(piece)
    return tokens


def align_sentence(recording, speech, synthesizer, sentence, language, rconf):
    """(start, end) in seconds of each word of one sentence (start, end, text):
    aeneas aligns the recording's frames of the sentence span (its MIDDLE)
    with the synthesised words, then boundaries are snapped to pauses."""
    start, end, text = sentence
    recording.middle_begin = min(int(round(start / FRAME_SECONDS)), recording.all_length - 1)
    recording.middle_end = max(min(int(round(end / FRAME_SECONDS)), recording.all_length),
                               recording.middle_begin + 1)
    if recording.masked_middle_length == 0:
        raise AlignmentError('no speech found in %.3f-%.3f s' % (start, end))
    tokens = sentence_tokens(text)
    synthetic, anchors = synthesize(tokens, language, synthesizer, rconf)
    try:
        boundaries = DTWAligner(real_wave_mfcc=recording, synt_wave_mfcc=synthetic,
                                rconf=rconf).compute_boundaries(anchors)
    except Exception as error:  # aeneas raises bare Exceptions of many kinds
        raise AlignmentError('aeneas failed: %s' % error) from error
    spans = snap_to_pauses(np.asarray(boundaries, dtype=int), speech)
    return [(float(first) * FRAME_SECONDS, float(last) * FRAME_SECONDS)
            for token, (first, last) in zip(tokens, spans) if token is not None]


def synthesize(tokens, language, synthesizer, rconf):
    """espeak speech of the tokens, as an AudioFileMFCC with aeneas's own
    (clean-audio) speech mask, and the time anchor of each token."""
    text_file = TextFile(rconf=rconf)
    for index, token in enumerate(tokens):
        spoken = [FILLER_SOUND if token is None else token]
        text_file.add_fragment(TextFragment(identifier='t%d' % index, language=language,
                                            lines=spoken, filtered_lines=spoken))
    handle, path = tempfile.mkstemp(prefix='sync_map_', suffix='.wav')
    os.close(handle)
    try:
        anchors = synthesizer.synthesize(text_file, path)[0]
        samples, rate = soundfile.read(path, dtype='float32')
    except Exception as error:  # cew and espeak report failures as bare Exceptions
        raise AlignmentError('espeak could not synthesise the sentence: %s' % error) from error
    finally:
        os.remove(path)
    if samples.size == 0:
        raise AlignmentError('espeak synthesised no audio for the sentence')
    synthetic = AudioFileMFCC(mfcc_matrix=compute_mfcc(to_aeneas_rate(samples, rate), rconf),
                              rconf=rconf)
    synthetic.run_vad(
        log_energy_threshold=rconf[RuntimeConfiguration.MFCC_MASK_LOG_ENERGY_THRESHOLD],
        min_nonspeech_length=rconf[RuntimeConfiguration.MFCC_MASK_MIN_NONSPEECH_LENGTH],
        extend_before=0, extend_after=0)
    return synthetic, anchors


def pauses(speech, begin, end):
    """[first, last) frames of the pauses of at least MIN_PAUSE_FRAMES in [begin, end)."""
    steps = np.diff(np.concatenate([[1], speech[begin:end].astype(np.int8), [1]]))
    found = zip(np.flatnonzero(steps == -1) + begin, np.flatnonzero(steps == 1) + begin)
    return [(first, last) for first, last in found if last - first >= MIN_PAUSE_FRAMES]


def snap_to_pauses(boundaries, speech):
    """[first, last) frames of each token from aeneas's n + 1 boundaries: a
    boundary near a pause moves onto it (the pause belongs to neither token),
    then each token is trimmed to its speech frames."""
    starts, ends = list(boundaries[:-1]), list(boundaries[1:])
    free = pauses(speech, boundaries[0], boundaries[-1])
    for index in range(1, len(boundaries) - 1):
        pause = nearest_pause(free, boundaries[index])
        if pause and starts[index - 1] < pause[0] and pause[1] < boundaries[index + 1]:
            ends[index - 1], starts[index] = pause
            free.remove(pause)
    return [trim_to_speech(speech, first, last) for first, last in zip(starts, ends)]


def nearest_pause(pauses_left, frame):
    def distance(pause):
        return max(pause[0] - frame, frame - pause[1], 0)
    near = [pause for pause in pauses_left if distance(pause) <= SNAP_TOLERANCE_FRAMES]
    return min(near, key=distance) if near else None


def trim_to_speech(speech, first, last):
    """The token's span without the non-speech at its ends (unchanged if it
    has no speech frame: aeneas's span is the best guess left)."""
    spoken = np.flatnonzero(speech[first:last])
    if spoken.size:
        return first + spoken[0], first + spoken[-1] + 1
    return first, last


def spread_by_characters(words, start, end):
    """Spans sharing [start, end] in proportion to the words' lengths."""
    edges = np.cumsum([0] + [len(word) for word in words], dtype=float)
    edges = start + (end - start) * edges / max(edges[-1], 1.0)
    return list(zip(edges[:-1], edges[1:]))


# --------------------------------------------------------------------------
# Accuracy against true word timings
# --------------------------------------------------------------------------
def alignment_accuracy(rows, truth_rows):
    """Compare aligned rows with true rows, word by word in order; both end in
    (start, end, word) (an aligned row may lead with its id). Returns
    {'mean_abs_start_error' (s), 'midpoint_inside_fraction' (aligned
    midpoints inside the true word), 'first_start_error' (s, of the first
    word), 'words'}. ValueError if the two do not
    hold the same words."""
    aligned = [row[-1] for row in rows]
    truth = [' '.join(normalise_words(row[-1])) for row in truth_rows]
    if aligned != truth:
        first = next((i for i, pair in enumerate(zip(aligned, truth)) if pair[0] != pair[1]),
                     min(len(aligned), len(truth)))
        raise ValueError('aligned and true words differ (%d vs %d words; first at word %d)'
                         % (len(aligned), len(truth), first))
    if not rows:
        return {'mean_abs_start_error': float('nan'), 'midpoint_inside_fraction': float('nan'),
                'first_start_error': float('nan'), 'words': 0}
    start, end = np.array([row[-3:-1] for row in rows], dtype=float).T
    true_start, true_end = np.array([row[-3:-1] for row in truth_rows], dtype=float).T
    middle = (start + end) / 2
    return {'mean_abs_start_error': float(np.mean(np.abs(start - true_start))),
            'midpoint_inside_fraction': float(np.mean((middle >= true_start)
                                                      & (middle <= true_end))),
            'first_start_error': float(abs(start[0] - true_start[0])),
            'words': len(rows)}


def pooled_accuracy(accuracies):
    """One accuracy over several recordings: start error and midpoints
    weighted by words, the first word's start error averaged over recordings."""
    counted = [a for a in accuracies if a['words']]
    words = sum(a['words'] for a in counted)
    pooled = {key: sum(a[key] * a['words'] for a in counted) / words
              for key in ('mean_abs_start_error', 'midpoint_inside_fraction')}
    return dict(pooled, first_start_error=float(np.mean([a['first_start_error'] for a in counted])),
                recordings=len(counted), words=words)
