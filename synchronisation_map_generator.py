"""Step 1 of the pipeline: word-level synchronisation maps by forced alignment.

MuSe-CaR transcribes each recording sentence by sentence
(transcriptions/<Id>.csv, header start,end,sentence, seconds). The model needs
to know which word is spoken when, so every sentence is aligned word by word
with aeneas: its words (lower case, punctuation stripped, fillers such as
<filler> dropped) are synthesised with espeak and the synthetic speech is
matched to the recording's stretch by dynamic time warping of MFCCs. Times are
shifted by the sentence start and written to <work_dir>/sync_maps/<Id>.csv,
header id,start,end,word (seconds; id s<sentence>w<word>, both 0-based).

aeneas with its default settings lets a word swallow the silence around it, so
it is configured to follow speech:
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
gets its words spread over its span by character length; it is counted and
reported at the end, and never stops the run.

On the demo corpus (make_demo_corpus.py, 16 x 60 s) this gives a mean |start
error| of about 0.02 s with 99.8% of word midpoints inside the true word, where
aeneas's defaults give 0.045 s and 91%. espeak's voice flutter carries over
from one synthesis to the next within a process, so a boundary may move by a
frame or so between runs that process recordings in another order.

Recordings run in parallel; a bad recording (no audio, unreadable audio, a bad
transcript row) is reported with file, row and problem, and the others are
still processed; the exit status is non-zero if any failed. Existing sync maps
are kept unless --overwrite, so an interrupted run resumes where it stopped.
With --truth_dir (word_timings/<Id>.csv, header start,end,word, as written by
make_demo_corpus.py) the summary also gives the accuracy against true timings.

    python synchronisation_map_generator.py --muse_dir ./MuSe-CaR --work_dir .
"""
import collections
import logging
import os
import re
import tempfile
import time

import numpy as np
import soundfile
import soxr
from absl import app, flags
import aeneas.cmfcc.cmfcc
from aeneas.audiofilemfcc import AudioFileMFCC
from aeneas.dtw import DTWAligner
from aeneas.runtimeconfiguration import RuntimeConfiguration
from aeneas.synthesizer import Synthesizer
from aeneas.textfile import TextFile, TextFragment
from aeneas.ttswrappers.espeakttswrapper import ESPEAKTTSWrapper

import helper

# Flags allow override: the pipeline's scripts share flag names and tests
# import several of them into one process.
FLAGS = flags.FLAGS
flags.DEFINE_string('muse_dir', helper.DEFAULT_MUSE_DIR,
                    'MuSe-CaR directory: metadata/partition.csv, audio/ and transcriptions/ '
                    'are read.', allow_override=True)
flags.DEFINE_string('work_dir', helper.DEFAULT_WORK_DIR,
                    'Output root: sync maps go to <work_dir>/sync_maps/<Id>.csv.',
                    allow_override=True)
flags.DEFINE_string('language', 'eng',
                    'Language of the transcripts, as an aeneas/espeak language code '
                    '(eng, deu, fra, ...): it picks the voice the words are synthesised with.',
                    allow_override=True)
flags.register_validator('language', lambda code: code in ESPEAKTTSWrapper.LANGUAGE_TO_VOICE_CODE,
                         message='--language must be a language code espeak supports in aeneas '
                         '(e.g. eng, deu, fra, ita, spa)')
flags.DEFINE_integer('workers', helper.default_workers(),
                     'Recordings aligned in parallel (default: all cores).', lower_bound=1,
                     allow_override=True)
flags.DEFINE_boolean('overwrite', False,
                     'Rewrite sync maps that already exist (by default they are skipped, so an '
                     'interrupted run resumes).', allow_override=True)
flags.DEFINE_list('ids', None,
                  'Only these recording ids (comma separated); default: every recording of '
                  'the partition.', allow_override=True)
flags.DEFINE_string('truth_dir', None,
                    'Optional folder with true word timings, word_timings/<Id>.csv (header '
                    'start,end,word, seconds): the summary then reports alignment accuracy.',
                    allow_override=True)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', allow_override=True)

SYNC_MAP_HEADER = ('id', 'start', 'end', 'word')
TRANSCRIPT_COLUMNS = [('start', float), ('end', float), ('sentence', str)]
TRUTH_COLUMNS = [('start', float), ('end', float), ('word', str)]

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
END_TOLERANCE = 0.05         # seconds a transcript may run past the audio (rounding)
MIN_AUDIO_SECONDS = 0.1      # aeneas needs a few MFCC frames

# What happened to one recording: status is done or failed; fallbacks are
# messages naming the sentences spread by character length; accuracy is a
# dict of alignment_accuracy, or None.
Outcome = collections.namedtuple(
    'Outcome', 'recording_id status seconds sentences words fallbacks accuracy error')
Job = collections.namedtuple('Job', 'recording_id muse_dir output language truth_dir')


class AlignmentError(Exception):
    """aeneas could not align a sentence; its words get spread instead."""


# --------------------------------------------------------------------------
# Alignment of one recording (reused by predict.py)
# --------------------------------------------------------------------------
def align_sentences(samples, sample_rate, sentences, language='eng'):
    """Word timings of transcript sentences in a recording.

    samples: mono audio (1-D; 2-D is taken as [time, channel] and averaged) at
    `sample_rate`; sentences: [(start, end, text)] in seconds; language: an
    aeneas language code. Returns (rows, fallbacks): rows [(id, start, end,
    word)] in seconds (rounded to ms) with id s<sentence>w<word>, and fallbacks
    [(sentence index, reason)] for the sentences whose words were spread over
    their span by character length. A sentence without words (punctuation or
    fillers only) gives no rows but keeps its index."""
    rconf = aeneas_configuration()
    recording = recording_mfcc(to_aeneas_rate(samples, sample_rate), rconf)
    speech = speech_frames(recording)
    synthesizer = Synthesizer(rconf=rconf)
    rows, fallbacks = [], []
    for index, (start, end, text) in enumerate(sentences):
        words = helper.normalise_words(text)
        if not words:
            continue
        try:
            spans = align_sentence(recording, speech, synthesizer, (start, end, text), language,
                                   rconf)
        except AlignmentError as error:
            fallbacks.append((index, str(error)))
            spans = spread_by_characters(words, start, end)
        rows += [('s%dw%d' % (index, number), round(word_start, 3), round(word_end, 3), word)
                 for number, (word, (word_start, word_end)) in enumerate(zip(words, spans))]
    return rows, fallbacks


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
        tokens += [None] if FILLER_TAG.fullmatch(piece) else helper.normalise_words(piece)
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
    """Compare aligned rows (id, start, end, word) with true rows (start, end,
    word), word by word in order. Returns {'mean_abs_start_error' (s),
    'midpoint_inside_fraction' (aligned midpoints inside the true word),
    'words'}. ValueError if the two do not hold the same words."""
    aligned = [row[3] for row in rows]
    truth = [' '.join(helper.normalise_words(row[2])) for row in truth_rows]
    if aligned != truth:
        first = next((i for i, pair in enumerate(zip(aligned, truth)) if pair[0] != pair[1]),
                     min(len(aligned), len(truth)))
        raise ValueError('aligned and true words differ (%d vs %d words; first at word %d)'
                         % (len(aligned), len(truth), first))
    if not rows:
        return {'mean_abs_start_error': float('nan'), 'midpoint_inside_fraction': float('nan'),
                'words': 0}
    start, end = np.array([row[1:3] for row in rows], dtype=float).T
    true_start, true_end = np.array([row[:2] for row in truth_rows], dtype=float).T
    middle = (start + end) / 2
    return {'mean_abs_start_error': float(np.mean(np.abs(start - true_start))),
            'midpoint_inside_fraction': float(np.mean((middle >= true_start)
                                                      & (middle <= true_end))),
            'words': len(rows)}


def pooled_accuracy(accuracies):
    """One accuracy over several recordings, weighting each by its words."""
    words = sum(accuracy['words'] for accuracy in accuracies)
    pooled = {key: sum(a[key] * a['words'] for a in accuracies if a['words']) / words
              for key in ('mean_abs_start_error', 'midpoint_inside_fraction')}
    return dict(pooled, words=words)


# --------------------------------------------------------------------------
# Inputs of one recording
# --------------------------------------------------------------------------
def read_transcript(path, duration):
    """[(start, end, sentence)] of a transcript, checked against the audio's
    duration; and the row number of each sentence in the file."""
    numbered = helper.read_table(path, TRANSCRIPT_COLUMNS, line_numbers=True)
    rows = [line for line, _ in numbered]
    sentences = [sentence for _, sentence in numbered]
    for row, (start, end, text) in numbered:
        if start < 0 or end <= start:
            raise helper.InputError(path, row, 'start %.3f s and end %.3f s do not make a '
                                    'span (end must come after start, both >= 0)' % (start, end))
        if end > duration + END_TOLERANCE:
            raise helper.InputError(path, row, 'sentence ends at %.3f s, past the end of the '
                                    'audio (%.3f s)' % (end, duration))
        if not helper.normalise_words(text):
            raise helper.InputError(path, row, 'sentence %r has no words once punctuation and '
                                    'fillers are removed' % text)
    return sentences, rows


def read_truth(truth_dir, recording_id):
    return helper.read_table(os.path.join(truth_dir, 'word_timings', recording_id + '.csv'),
                             TRUTH_COLUMNS)


# --------------------------------------------------------------------------
# One recording, end to end (runs in a worker process)
# --------------------------------------------------------------------------
def generate_sync_map(job):
    """Align one recording and write its sync map; an Outcome either way."""
    try:
        samples, transcript, sentences, row_numbers = read_recording(job)
        rows, fallbacks = align_sentences(samples, SAMPLE_RATE, sentences, job.language)
        helper.write_csv(job.output, SYNC_MAP_HEADER,
                         [(i, '%.3f' % start, '%.3f' % end, word) for i, start, end, word in rows])
    except helper.InputError as error:
        return Outcome(job.recording_id, 'failed', 0.0, 0, 0, [], None, str(error))
    helper.development_msg('%s: %d sentences, %d words -> %s', job.recording_id,
                           len(sentences), len(rows), job.output)
    messages = ['%s, row %d: sentence not aligned (%s); its words were spread over its span by '
                'character length' % (transcript, row_numbers[index], reason)
                for index, reason in fallbacks]
    return Outcome(job.recording_id, 'done', len(samples) / SAMPLE_RATE, len(sentences),
                   len(rows), messages, truth_accuracy(job, rows), None)


def read_recording(job):
    """(samples at SAMPLE_RATE, transcript path, sentences, their row numbers)."""
    audio = helper.audio_path(job.muse_dir, job.recording_id)
    samples = helper.read_audio(audio, SAMPLE_RATE)
    if len(samples) < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise helper.InputError(audio, None, 'audio lasts %.3f s, too short to align'
                                % (len(samples) / SAMPLE_RATE))
    transcript = helper.transcript_path(job.muse_dir, job.recording_id)
    sentences, row_numbers = read_transcript(transcript, len(samples) / SAMPLE_RATE)
    return samples, transcript, sentences, row_numbers


def truth_accuracy(job, rows):
    """Accuracy against the true timings, or None (with a warning) if there are none."""
    if job.truth_dir is None:
        return None
    try:
        return alignment_accuracy(rows, read_truth(job.truth_dir, job.recording_id))
    except (helper.InputError, ValueError) as error:
        logging.warning('recording %s: no accuracy against the truth: %s', job.recording_id, error)
        return None


# --------------------------------------------------------------------------
# The run: which recordings, in parallel, and the summary
# --------------------------------------------------------------------------
def summarise(outcomes, skipped, wall_seconds, workers):
    """Log what happened; return the number of failed recordings."""
    done = [o for o in outcomes if o.status == 'done']
    failed = [o for o in outcomes if o.status == 'failed']
    fallbacks = [message for o in done for message in o.fallbacks]
    for message in fallbacks:
        logging.warning('%s', message)
    for outcome in failed:
        logging.error('recording %s failed: %s', outcome.recording_id, outcome.error)
    logging.info('sync maps: %d recording(s) done, %d skipped (already there; --overwrite '
                 'redoes them), %d failed; %d sentences, %d words, %d fallback(s) (sentences '
                 'spread by character length)', len(done), len(skipped), len(failed),
                 sum(o.sentences for o in done), sum(o.words for o in done), len(fallbacks))
    seconds = sum(o.seconds for o in done)
    if seconds:
        logging.info('speed: %.1f s of audio in %.1f s: %.1f s of audio per wall second '
                     '(%d worker(s), %.1f per worker)', seconds, wall_seconds,
                     seconds / wall_seconds, workers, seconds / wall_seconds / workers)
    accuracies = [o.accuracy for o in done if o.accuracy and o.accuracy['words']]
    if accuracies:
        pooled = pooled_accuracy(accuracies)
        logging.info('accuracy vs truth (%d recording(s), %d words): mean |start error| %.3f s, '
                     'midpoints inside the true word %.1f%%', len(accuracies), pooled['words'],
                     pooled['mean_abs_start_error'], 100 * pooled['midpoint_inside_fraction'])
    return len(failed)


def main(argv):
    del argv  # unused
    helper.setup_logging(FLAGS.verbose)
    try:
        recording_ids = helper.select_recordings(FLAGS.muse_dir, FLAGS.ids)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    outputs = {i: helper.sync_map_path(FLAGS.work_dir, i) for i in recording_ids}
    skipped = [i for i in recording_ids if os.path.exists(outputs[i]) and not FLAGS.overwrite]
    jobs = [Job(i, FLAGS.muse_dir, outputs[i], FLAGS.language, FLAGS.truth_dir or None)
            for i in recording_ids if i not in skipped]
    workers = max(1, min(FLAGS.workers, len(jobs)))
    started = time.time()
    outcomes = list(helper.parallel_map(generate_sync_map, jobs, workers, 'alignment'))
    return 1 if summarise(outcomes, skipped, time.time() - started, workers) else 0


if __name__ == '__main__':
    app.run(main)
