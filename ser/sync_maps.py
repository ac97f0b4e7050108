"""Word-level synchronisation maps of MuSe-CaR segments.

A sync map, sync_maps/<Id>/<Id>_<seg>.csv, header id,start,end,word, gives
each word of a segment in seconds from the start of the segment's audio;
words normalised (ser.text.normalise_words), fillers dropped; id w<n>, 0-based.
Three aligners:
  given     MuSe's word times converted to segment-relative seconds
            (ser.muse.segment_relative_words); a token that normalises to
            several words shares its span among them by character length;
  phonetic  the segment's tokens, in order, re-aligned against its audio by
            PocketSphinx (ser.alignment.align_plain), for word times missing
            or wrong; English only;
  aeneas    the same with aeneas, for the other languages.
A re-aligned segment the phonetic aligner cannot align is aligned by aeneas,
one aeneas cannot by spreading its words by character length; the outcome
says which aligner gave the words.
A segment with audio but no transcript gets a header-only sync map, so it is
kept downstream (with zero embeddings).

Given times need the segment's start in the video. It is the segment's first
label timestamp in the video's label file; for a video without label files
(MuSe's official test videos), its first timestamp in a label-aligned feature
file; without either, or when the words fit neither reading of those times,
the segment is placed by its words: they are aligned to its audio (the default
aligner for the language) and the start is the median difference between the
given and the aligned onsets, on the label grid (muse.start_from_words). A
segment its words cannot place is a warning, never a failure: its sync map then
holds the words as the aligner placed them.
"""
import collections
import os

import helper
from ser import alignment, audio, muse
from ser import paths
from ser.text import normalise_words

SYNC_MAP_HEADER = ('id', 'start', 'end', 'word')
TRUTH_COLUMNS = [('start', float), ('end', float), ('word', str)]
MIN_AUDIO_SECONDS = 0.1      # aeneas needs a few MFCC frames
MISMATCH_SECONDS = 1.0       # WAV duration vs label span beyond this is reported

# Where a segment's start in the video came from.
LABELS, FEATURES, WORDS, UNPLACED = 'labels', 'features', 'words', 'unplaced'

# One segment to do. start_ms: its start in video ms, or None; placement: LABELS
# or FEATURES (the file that gave start_ms) or WORDS (to be placed by its words);
# label_span: seconds between its first and last label timestamp, or None.
Job = collections.namedtuple(
    'Job', 'name audio transcript output start_ms placement label_span aligner language truth')
# The words of one segment: rows (start, end, word); reading the time base of
# the given times; alignment an alignment.PlainAlignment (method 'given' for
# MuSe's times); placement where the start came from (given aligner; UNPLACED
# when nothing placed it), else None; note the warning of an unplaced segment.
SegmentWords = collections.namedtuple('SegmentWords', 'rows reading alignment placement note')
# What happened to one segment: status done or failed; reading the time base of
# its word times (muse.VIDEO_TIME, muse.SEGMENT_TIME, None when neither fits,
# UNPLACED when the segment's start is not known); placement and note
# as in SegmentWords; method the aligner
# that gave the words (given, or an alignment.PlainAlignment method); guessed
# the words pronounced by espeak; failures [(aligner, reason)] of the aligners
# that failed before it; mismatch a message or None; accuracy a dict of
# alignment.alignment_accuracy or None.
Outcome = collections.namedtuple(
    'Outcome', 'name status seconds words reading placement note method guessed failures '
               'transcript mismatch accuracy error')


def truth_path(truth_dir, name):
    """True word timings of a segment: word_timings/<Id>/<Id>_<seg>.csv."""
    return os.path.join(truth_dir, 'word_timings', paths.video_of(name), name + '.csv')


# --------------------------------------------------------------------------
# Planning: the segments of a video and where each starts
# --------------------------------------------------------------------------
def video_segments(layout, video_id):
    """(segment names with audio, transcripts without audio): the second are
    errors (InputError) naming the transcript file."""
    names = layout.audio_segments(video_id)
    orphans = []
    directory = layout.transcript_dir(video_id)
    if os.path.isdir(directory):
        for name in helper.list_ids(directory, '.csv'):
            try:
                if paths.video_of(name) == video_id and name not in names:
                    orphans.append(helper.InputError(layout.transcript_path(name), None,
                                                     'transcript of segment %s, which has no '
                                                     'audio file in %s'
                                                     % (name, layout.audio_dir(video_id))))
            except ValueError:
                continue
    return names, orphans


def segment_starts(layout, video_id, names):
    """({name: (start ms or None, placement, label span s or None)}, warnings)
    of a video's segments: the first label timestamp of the segment in the
    video's label file (arousal, or valence when only that is there; LABELS),
    or without one in its label-aligned feature file (FEATURES); a segment
    neither holds is (None, WORDS, None). A feature file that cannot be read
    is a warning and its segments are placed by their words."""
    source, placement, warnings = {}, WORDS, []
    for dimension in paths.DIMENSIONS:
        path = layout.label_path(dimension, video_id)
        if os.path.isfile(path):
            source, placement = muse.read_label_segments(path), LABELS
            break
    else:
        path = muse.label_aligned_path(layout, video_id)
        if path:
            try:
                source, placement = muse.read_feature_segments(path), FEATURES
            except helper.InputError as error:
                warnings.append('%s; the segments of video %s are placed by their words'
                                % (error, video_id))
    rows = {name: source.get(paths.split_segment_name(name)[1]) for name in names}
    return {name: (muse.segment_start(rows[name]), placement,
                   muse.label_span_seconds(rows[name]) if placement == LABELS else None)
            if rows[name] else (None, WORDS, None) for name in names}, warnings


def plan_video(layout, video_id, work_dir, aligner, language, truth_dir):
    """(jobs, errors, warnings) of one video: one Job per segment with audio;
    errors are InputErrors of what cannot be done, warnings messages."""
    names, errors = video_segments(layout, video_id)
    if not names:
        return [], errors + [helper.InputError(layout.audio_dir(video_id), None,
                                               'no segment audio for video %s' % video_id)], []
    try:
        starts, warnings = segment_starts(layout, video_id, names)
    except helper.InputError as error:
        return [], errors + [error], []
    jobs = []
    for name in names:
        transcript = layout.transcript_path(name)
        start_ms, placement, span = starts[name]
        jobs.append(Job(name, layout.audio_path(name),
                        transcript if os.path.isfile(transcript) else None,
                        paths.sync_map_path(work_dir, name), start_ms, placement, span, aligner,
                        language, truth_path(truth_dir, name) if truth_dir else None))
    return jobs, errors, warnings


# --------------------------------------------------------------------------
# One segment (runs in a worker process)
# --------------------------------------------------------------------------
def given_rows(words):
    """(start, end, word) of segment-relative (row, start, end, token) words:
    normalised, fillers dropped, a token of several words shared among them."""
    rows = []
    for _, start, end, token in words:
        tokens = normalise_words(token)
        spans = [(start, end)] if len(tokens) == 1 else \
            alignment.spread_by_characters(tokens, start, end)
        rows += [(word_start, word_end, word) for word, (word_start, word_end) in zip(tokens, spans)]
    return rows


def segment_words(job, samples, duration):
    """SegmentWords of one segment with a transcript."""
    words = muse.read_transcript(job.transcript)
    segment = paths.split_segment_name(job.name)[1]
    for word in words:
        if word.segment != segment:
            raise helper.InputError(job.transcript, word.row, 'segment_id %d in the transcript '
                                    'of segment %d' % (word.segment, segment))
    if job.aligner == 'given':
        return given_words(job, words, samples, duration)
    reading = UNPLACED if job.start_ms is None else \
        muse.word_time_base(words, job.start_ms, duration * 1000.0)
    result = alignment.align_plain(samples, alignment.SAMPLE_RATE, muse.transcript_text(words),
                                   job.language, job.aligner)
    return SegmentWords(result.words, reading, result, None, None)


def given_words(job, words, samples, duration):
    """SegmentWords of MuSe's times, the segment placed as the module says."""
    start_ms, placement = job.start_ms, job.placement
    fits = start_ms is not None and muse.word_time_base(words, start_ms, duration * 1000.0)
    if not fits and placement != LABELS:
        aligned = alignment.align_plain(samples, alignment.SAMPLE_RATE,
                                        muse.transcript_text(words), job.language)
        if aligned.method is None:      # only fillers and punctuation: no word to place
            return SegmentWords([], None, aligned, None, None)
        start_ms, reason = (None, 'its words could not be aligned') \
            if aligned.method == alignment.SPREAD else muse.start_from_words(words, aligned.words)
        if start_ms is None or not muse.word_time_base(words, start_ms, duration * 1000.0):
            return SegmentWords(aligned.words, UNPLACED, aligned, UNPLACED, (
                'segment %s cannot be placed in its video (%s): its sync map holds the words as '
                'the %s aligner placed them' % (job.name, reason or 'its words fit no start',
                                                aligned.method)))
        placement = WORDS
    relative, reading = muse.segment_relative_words(job.transcript, words, start_ms, duration)
    rows = given_rows(relative)
    return SegmentWords(rows, reading, alignment.PlainAlignment(rows, 'given', 0, []),
                        placement, None)


def make_sync_map(job):
    """Write one segment's sync map; an Outcome either way."""
    try:
        samples = audio.read_file(job.audio, alignment.SAMPLE_RATE)
        duration = len(samples) / alignment.SAMPLE_RATE
        if job.aligner != 'given' and duration < MIN_AUDIO_SECONDS:
            raise helper.InputError(job.audio, None, 'audio lasts %.3f s, too short to align'
                                    % duration)
        found = SegmentWords([], None, alignment.PlainAlignment([], None, 0, []), None, None) \
            if job.transcript is None else segment_words(job, samples, duration)
        helper.write_csv(job.output, SYNC_MAP_HEADER,
                         [('w%d' % i, '%.3f' % start, '%.3f' % end, word)
                          for i, (start, end, word) in enumerate(found.rows)])
    except helper.InputError as error:
        return Outcome(job.name, 'failed', 0.0, 0, None, None, None, None, 0, [],
                       job.transcript is not None, None, None, str(error))
    helper.development_msg('%s: %d words (%s time) -> %s', job.name, len(found.rows),
                           found.reading, job.output)
    result = found.alignment
    return Outcome(job.name, 'done', duration, len(found.rows), found.reading, found.placement,
                   found.note, result.method, result.guessed, result.failures,
                   job.transcript is not None, duration_mismatch(job, duration),
                   truth_accuracy(job, found.rows), None)


def duration_mismatch(job, duration):
    """A message when the audio and the label span disagree by > MISMATCH_SECONDS."""
    if job.label_span is None or abs(duration - job.label_span) <= MISMATCH_SECONDS:
        return None
    return ('%s: audio lasts %.3f s, its label timestamps span %.3f s: the segment audio may '
            'not start at the first label timestamp' % (job.audio, duration, job.label_span))


def truth_accuracy(job, rows):
    """Accuracy against the true timings, or None when there are none."""
    if job.truth is None or job.transcript is None or not os.path.isfile(job.truth):
        return None
    try:
        return alignment.alignment_accuracy(rows, helper.read_table(job.truth, TRUTH_COLUMNS))
    except (helper.InputError, ValueError) as error:
        return {'error': str(error), 'words': 0}
