"""Word-level synchronisation maps of MuSe-CaR segments.

A sync map, sync_maps/<Id>/<Id>_<seg>.csv, header id,start,end,word, gives
each word of a segment in seconds from the start of the segment's audio;
words normalised (helper.normalise_words), fillers dropped; id w<n>, 0-based.
Two aligners:
  given   MuSe's word times converted to segment-relative seconds
          (ser.muse.segment_relative_words); a token that normalises to
          several words shares its span among them by character length;
  aeneas  the segment's tokens, in order, re-aligned against its audio
          (ser.alignment.align_text), for word times missing or wrong.
A segment with audio but no transcript gets a header-only sync map, so it is
kept downstream (with zero embeddings).
"""
import collections
import os

import helper
from ser import alignment, audio, muse

ALIGNERS = ('given', 'aeneas')
SYNC_MAP_HEADER = ('id', 'start', 'end', 'word')
TRUTH_COLUMNS = [('start', float), ('end', float), ('word', str)]
MIN_AUDIO_SECONDS = 0.1      # aeneas needs a few MFCC frames
MISMATCH_SECONDS = 1.0       # WAV duration vs label span beyond this is reported

# One segment to do. start_ms: its start in video ms; estimated: True when no
# label file gave it; label_span: seconds between its first and last label
# timestamp, or None.
Job = collections.namedtuple(
    'Job', 'name audio transcript output start_ms estimated label_span aligner language truth')
# What happened to one segment: status done or failed; reading the time base of
# its word times (muse.VIDEO_TIME, muse.SEGMENT_TIME, None); mismatch a message
# or None; accuracy a dict of alignment.alignment_accuracy or None.
Outcome = collections.namedtuple(
    'Outcome', 'name status seconds words reading fallbacks transcript mismatch accuracy error')


def truth_path(truth_dir, name):
    """True word timings of a segment: word_timings/<Id>/<Id>_<seg>.csv."""
    return os.path.join(truth_dir, 'word_timings', helper.video_of(name), name + '.csv')


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
                if helper.video_of(name) == video_id and name not in names:
                    orphans.append(helper.InputError(layout.transcript_path(name), None,
                                                     'transcript of segment %s, which has no '
                                                     'audio file in %s'
                                                     % (name, layout.audio_dir(video_id))))
            except ValueError:
                continue
    return names, orphans


def segment_starts(layout, video_id, names):
    """{name: (start ms, estimated, label span s or None)} of a video's
    segments: the first label timestamp of the segment in the video's label
    file (arousal, or valence when only that is there); without one, the start
    estimated from the audio durations (muse.estimated_starts), or None when
    an earlier segment's audio cannot be read."""
    labelled = {}
    for dimension in helper.DIMENSIONS:
        path = layout.label_path(dimension, video_id)
        if os.path.isfile(path):
            labelled = muse.read_label_segments(path)
            break
    rows = {name: labelled.get(helper.split_segment_name(name)[1]) for name in names}
    guesses = {}
    if not all(rows.values()):
        durations = []
        for name in names:
            try:
                durations.append(audio.duration(layout.audio_path(name)))
            except helper.InputError:
                break
        guesses = dict(zip(names, muse.estimated_starts(durations)))
    return {name: (muse.segment_start(rows[name]), False, muse.label_span_seconds(rows[name]))
            if rows[name] else (guesses.get(name), True, None) for name in names}


def plan_video(layout, video_id, work_dir, aligner, language, truth_dir):
    """(jobs, errors) of one video: one Job per segment with audio; errors
    are InputErrors of what cannot be done."""
    names, errors = video_segments(layout, video_id)
    if not names:
        return [], errors + [helper.InputError(layout.audio_dir(video_id), None,
                                               'no segment audio for video %s' % video_id)]
    try:
        starts = segment_starts(layout, video_id, names)
    except helper.InputError as error:
        return [], errors + [error]
    jobs = []
    for name in names:
        transcript = layout.transcript_path(name)
        start_ms, estimated, span = starts[name]
        jobs.append(Job(name, layout.audio_path(name),
                        transcript if os.path.isfile(transcript) else None,
                        helper.sync_map_path(work_dir, name), start_ms, estimated, span, aligner,
                        language, truth_path(truth_dir, name) if truth_dir else None))
    return jobs, errors


# --------------------------------------------------------------------------
# One segment (runs in a worker process)
# --------------------------------------------------------------------------
def given_rows(words):
    """(start, end, word) of segment-relative (row, start, end, token) words:
    normalised, fillers dropped, a token of several words shared among them."""
    rows = []
    for _, start, end, token in words:
        tokens = helper.normalise_words(token)
        spans = [(start, end)] if len(tokens) == 1 else \
            alignment.spread_by_characters(tokens, start, end)
        rows += [(word_start, word_end, word) for word, (word_start, word_end) in zip(tokens, spans)]
    return rows


def segment_words(job, samples, duration):
    """(rows (start, end, word), time-base reading, fallbacks) of one segment."""
    words = muse.read_transcript(job.transcript)
    segment = helper.split_segment_name(job.name)[1]
    for word in words:
        if word.segment != segment:
            raise helper.InputError(job.transcript, word.row, 'segment_id %d in the transcript '
                                    'of segment %d' % (word.segment, segment))
    if job.aligner == 'given':
        if job.start_ms is None:
            raise helper.InputError(job.audio, None, 'start of the segment in the video unknown: '
                                    'no label rows, and an earlier segment\'s audio is unreadable')
        relative, reading = muse.segment_relative_words(job.transcript, words, job.start_ms,
                                                        duration)
        return given_rows(relative), reading, 0
    reading = None if job.start_ms is None else \
        muse.word_time_base(words, job.start_ms, duration * 1000.0)
    rows, fallbacks = alignment.align_text(samples, alignment.SAMPLE_RATE,
                                           muse.transcript_text(words), job.language)
    return rows, reading, fallbacks


def make_sync_map(job):
    """Write one segment's sync map; an Outcome either way."""
    try:
        samples = audio.read_file(job.audio, alignment.SAMPLE_RATE)
        duration = len(samples) / alignment.SAMPLE_RATE
        if job.aligner == 'aeneas' and duration < MIN_AUDIO_SECONDS:
            raise helper.InputError(job.audio, None, 'audio lasts %.3f s, too short to align'
                                    % duration)
        rows, reading, fallbacks = ([], None, 0) if job.transcript is None else \
            segment_words(job, samples, duration)
        helper.write_csv(job.output, SYNC_MAP_HEADER,
                         [('w%d' % i, '%.3f' % start, '%.3f' % end, word)
                          for i, (start, end, word) in enumerate(rows)])
    except helper.InputError as error:
        return Outcome(job.name, 'failed', 0.0, 0, None, 0, job.transcript is not None, None,
                       None, str(error))
    helper.development_msg('%s: %d words (%s time) -> %s', job.name, len(rows), reading,
                           job.output)
    return Outcome(job.name, 'done', duration, len(rows), reading, fallbacks,
                   job.transcript is not None, duration_mismatch(job, duration),
                   truth_accuracy(job, rows), None)


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
