"""Reading MuSe-CaR 2020 as distributed: word transcripts and label segments.

Word transcripts, transcription_segments/<Id>/<Id>_<seg>.csv, header
start,end,segment_id,word: one row per token (MuSe's tokens: capitals,
punctuation, <filler>), times in integer ms. Label segments,
label_segments/<dimension>/<Id>.csv, header timestamp,value,segment_id: ms of
video time every 250 ms; a segment's last timestamp is repeated as the next
segment's first row, so that row belongs to both segments. Label-aligned
features, feature_segments/label_aligned/<feature>/<Id>.csv, whose first two
columns are timestamp,segment_id, one row per label step: every video has
them, the unlabelled test videos too, so they place those videos' segments.

Assumption (the MuSe 2020 baseline code reads the data this way; there is no
data sheet): a segment's audio starts at its first label timestamp, and
segment-relative time = video ms - that timestamp.

Word times are ms of video time in the baseline code; that was never checked
against a data sheet, so the other reading is tolerated, decided per segment
(word_time_base). Word times are never shifted by the segment's first word:
that would put every first word at 0 s.
"""
import collections
import csv
import os

import numpy as np

import helper
from ser import paths
from ser.text import normalise_words

TRANSCRIPT_COLUMNS = [('start', float), ('end', float), ('segment_id', str), ('word', str)]
LABEL_COLUMNS = [('timestamp', float), ('value', float), ('segment_id', str)]
FEATURE_KEY_COLUMNS = ('timestamp', 'segment_id')
# How far (ms) a word may run past its segment's audio and still be read; it is
# clipped to the audio. Recognisers' word edges are off by tens of ms.
WORD_TOLERANCE_MS = 500
VIDEO_TIME, SEGMENT_TIME = 'video', 'segment'
# A segment placed by its words: beyond this median spread (ms) of given minus
# aligned onsets, the words name no one start; half the label step, beyond
# which they could as well point to the next grid point.
MAX_OFFSET_SCATTER_MS = paths.LABEL_STEP_MS / 2

# One transcript row: its line in the file, times in ms, segment int, MuSe's token.
Word = collections.namedtuple('Word', 'row start end segment token')
# One label row: its line in the file, video timestamp in ms, value.
LabelRow = collections.namedtuple('LabelRow', 'row timestamp value')


def parse_segment_id(path, row, text):
    """The integer of a segment_id cell ('3' or '3.0')."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not np.isfinite(value) or value != int(value) or value < 0:
        raise helper.InputError(path, row, 'segment_id %r is not a non-negative integer' % text)
    return int(value)


# --------------------------------------------------------------------------
# Word transcripts
# --------------------------------------------------------------------------
def read_transcript(path):
    """[Word] of a segment's word transcript, in file order. InputError naming
    file and row for a wrong column count, a non-numeric or negative time, an
    end before its start, or bytes that are not UTF-8."""
    words = []
    for row, (start, end, segment_id, token) in helper.read_table(path, TRANSCRIPT_COLUMNS,
                                                                  line_numbers=True):
        segment = parse_segment_id(path, row, segment_id)
        if start < 0 or end < start:
            raise helper.InputError(path, row, 'start %g ms and end %g ms do not make a span '
                                    '(end must not come before start, both >= 0)' % (start, end))
        words.append(Word(row, start, end, segment, token))
    return words


def word_time_base(words, start_ms, duration_ms):
    """VIDEO_TIME or SEGMENT_TIME: how a segment's word times read.

    Video ms (the baseline's reading) when every word lies within the segment's
    stretch of the video [start, start + duration]. Otherwise, when the segment
    starts later in the video and every word lies within [0, duration], the
    times are already segment-relative. Both with WORD_TOLERANCE_MS of slack.
    None when neither reading fits."""
    def fits(offset):
        return all(word.start >= offset - WORD_TOLERANCE_MS
                   and word.end <= offset + duration_ms + WORD_TOLERANCE_MS for word in words)
    if fits(start_ms):
        return VIDEO_TIME
    if start_ms > 0 and fits(0):
        return SEGMENT_TIME
    return None


def segment_relative_words(path, words, start_ms, duration_s):
    """([(row, start_s, end_s, token)], reading) of a segment's words in
    seconds from the start of its audio, clipped to [0, duration]; reading is
    the time base found (word_time_base). InputError naming the first word
    outside the segment when neither reading fits."""
    duration_ms = duration_s * 1000.0
    reading = word_time_base(words, start_ms, duration_ms)
    if reading is None:
        outside = next(w for w in words if w.start < start_ms - WORD_TOLERANCE_MS
                       or w.end > start_ms + duration_ms + WORD_TOLERANCE_MS)
        raise helper.InputError(path, outside.row, 'word %r at %g-%g ms lies outside the segment '
                                '(video %d-%d ms, its audio lasting %.3f s), and not all words '
                                'fit the segment-relative reading either'
                                % (outside.token, outside.start, outside.end, start_ms,
                                   start_ms + duration_ms, duration_s))
    offset = start_ms if reading == VIDEO_TIME else 0
    rows = []
    for word in words:
        start = min(max(word.start - offset, 0.0), duration_ms) / 1000.0
        end = min(max(word.end - offset, 0.0), duration_ms) / 1000.0
        rows.append((word.row, start, end, word.token))
    return rows, reading


def transcript_text(words):
    """The segment's tokens in order as one text (fillers kept: they help an aligner)."""
    return ' '.join(word.token for word in words)


# --------------------------------------------------------------------------
# Label segments
# --------------------------------------------------------------------------
def read_label_segments(path):
    """{segment int: [LabelRow]} of one dimension's label file, in file order.
    Timestamps must be non-negative multiples of the label step and rise
    strictly within a segment."""
    return label_segments(path, [(row, timestamp, value, segment_id) for row, (
        timestamp, value, segment_id) in helper.read_table(path, LABEL_COLUMNS, line_numbers=True)])


def label_aligned_path(layout, video_id):
    """The first (by feature name) label-aligned feature file of the video,
    or None when it has none."""
    root = os.path.join(layout.task_path, 'feature_segments', 'label_aligned')
    if not os.path.isdir(root):
        return None
    paths = [os.path.join(root, feature, video_id + '.csv') for feature in helper.list_dir(root)]
    return next((path for path in sorted(paths) if os.path.isfile(path)), None)


def read_feature_segments(path):
    """{segment int: [LabelRow]} (value None) of a label-aligned feature
    file's first two columns, timestamp,segment_id; the feature columns after
    them are not read."""
    return label_segments(path, [(row, timestamp, None, segment_id)
                                 for row, timestamp, segment_id in read_feature_keys(path)])


def read_feature_keys(path):
    """[(row, timestamp, segment_id text)] of a label-aligned feature file;
    InputError naming file and row for another header, a short row or a
    timestamp that is not a number."""
    try:
        with open(path, encoding='utf-8', newline='') as handle:
            lines = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise helper.InputError(path, None, 'not valid UTF-8 (%s)' % error.reason) from None
    except csv.Error as error:
        raise helper.InputError(path, None, 'malformed CSV: %s' % error) from None
    header = [cell.strip().lstrip('\ufeff') for cell in lines[0][:2]] if lines else []
    if header != list(FEATURE_KEY_COLUMNS):
        raise helper.InputError(path, 1, 'header starts %s, expected %s,...'
                                % (','.join(header), ','.join(FEATURE_KEY_COLUMNS)))
    keys = []
    for row, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) < 2:
            raise helper.InputError(path, row, 'expected timestamp,segment_id,... (at least 2 '
                                    'columns), found %d' % len(cells))
        try:
            keys.append((row, float(cells[0]), cells[1].strip()))
        except ValueError:
            raise helper.InputError(path, row, 'timestamp %r is not a number' % cells[0]) from None
    return keys


def label_segments(path, rows):
    """{segment int: [LabelRow]} of (row, timestamp, value, segment_id text)
    rows, checked as read_label_segments says."""
    segments = collections.OrderedDict()
    for row, timestamp, value, segment_id in rows:
        segment = parse_segment_id(path, row, segment_id)
        if timestamp < 0 or timestamp % paths.LABEL_STEP_MS:
            raise helper.InputError(path, row, 'timestamp %g ms is not a non-negative multiple '
                                    'of %d ms' % (timestamp, paths.LABEL_STEP_MS))
        rows = segments.setdefault(segment, [])
        if rows and timestamp <= rows[-1].timestamp:
            raise helper.InputError(path, row, 'timestamp %d ms of segment %d does not follow '
                                    '%d ms' % (timestamp, segment, rows[-1].timestamp))
        rows.append(LabelRow(row, int(timestamp), value))
    if not segments:
        raise helper.InputError(path, None, 'no label rows after the header')
    return segments


def segment_start(rows):
    """A segment's start in video ms: its first label timestamp."""
    return rows[0].timestamp


def label_span_seconds(rows):
    return (rows[-1].timestamp - rows[0].timestamp) / 1000.0


def join_segment(segment, arousal, valence, arousal_path, valence_path):
    """Rows (relative ms, arousal, valence) of one segment from both
    dimensions' rows; relative to the segment's first timestamp. InputError
    naming file, row and timestamp when a timestamp is in one dimension only."""
    sides = ((arousal, arousal_path, valence, valence_path),
             (valence, valence_path, arousal, arousal_path))
    for rows, path, other_rows, other_path in sides:
        other = {row.timestamp for row in other_rows}
        missing = [row for row in rows if row.timestamp not in other]
        if missing:
            raise helper.InputError(path, missing[0].row, 'timestamp %d ms of segment %d is not '
                                    'in %s (%d timestamp(s) of this segment are missing there)'
                                    % (missing[0].timestamp, segment, other_path, len(missing)))
    start = segment_start(arousal)
    return [(a.timestamp - start, a.value, v.value) for a, v in zip(arousal, valence)]


def read_labels(path):
    """(timestamps int64 [N] ms, labels float64 [N, 2]) from a segment's
    joined labels, labels/<Id>/<Id>_<seg>.csv (join_segment's rows as
    label_generator.py writes them). Timestamps must rise strictly on the grid
    of label steps."""
    columns = [('timestamp', float)] + [(name, float) for name in paths.DIMENSIONS]
    rows = helper.read_table(path, columns, line_numbers=True)
    if not rows:
        raise helper.InputError(path, None, 'no label rows')
    previous = None
    for line, (timestamp, _, _) in rows:
        if timestamp < 0 or timestamp % paths.LABEL_STEP_MS:
            raise helper.InputError(path, line, 'timestamp %g ms is not a non-negative multiple '
                                    'of %d ms' % (timestamp, paths.LABEL_STEP_MS))
        if previous is not None and timestamp <= previous:
            raise helper.InputError(path, line, 'timestamp %g ms does not follow %g ms'
                                    % (timestamp, previous))
        previous = timestamp
    table = np.asarray([row for _, row in rows], dtype=np.float64)
    return table[:, 0].astype(np.int64), table[:, 1:]


# --------------------------------------------------------------------------
# Placing a segment in its video
# --------------------------------------------------------------------------
def start_from_words(words, aligned):
    """(start ms, None) of a segment in its video from its [Word] and the
    same words aligned to its audio ([(start s, end s, word)], normalised, in
    order): the median over the words of given onset - aligned onset, on the
    label grid (a segment starts at a label timestamp), 0 when the given times
    are segment-relative already. (None, reason) when the words scatter too
    widely to name one start."""
    onsets, position = [], 0
    for word in words:
        count = len(normalise_words(word.token))
        if count and position < len(aligned):
            onsets.append(word.start - 1000.0 * aligned[position][0])
        position += count
    if not onsets or position != len(aligned):
        return None, 'the aligned words are not the transcript\'s'
    offset = float(np.median(onsets))
    scatter = float(np.median(np.abs(np.array(onsets) - offset)))
    if scatter > MAX_OFFSET_SCATTER_MS:
        return None, ('its given and aligned onsets differ by %.0f ms give or take %.0f ms'
                      % (offset, scatter))
    step = paths.LABEL_STEP_MS
    return max(0, int(round(offset / step)) * step), None


def video_labels(layout, video_id):
    """({segment name: rows (relative ms, arousal, valence)}, {segment name or
    None: InputError}) of one video's label files, a segment at a time: a bad
    segment is an error and the others are still joined; None keys an error of
    a whole file. ({}, {}) when the video has no label files (labels
    withheld); one dimension's file alone is an error."""
    files = [layout.label_path(dimension, video_id) for dimension in paths.DIMENSIONS]
    found = [os.path.isfile(path) for path in files]
    if not any(found):
        return {}, {}
    if not all(found):
        return {}, {None: helper.InputError(files[found.index(False)], None, 'file not found, '
                                            'although %s exists' % files[found.index(True)])}
    try:
        arousal, valence = (read_label_segments(path) for path in files)
    except helper.InputError as error:
        return {}, {None: error}
    with_audio = set(layout.audio_segments(video_id))
    joined, errors = {}, {}
    for segment in sorted(set(arousal) | set(valence)):
        name = paths.segment_name(video_id, segment)
        if segment not in arousal or segment not in valence:
            present, path, other = ((arousal, files[0], files[1]) if segment in arousal
                                    else (valence, files[1], files[0]))
            errors[name] = helper.InputError(path, present[segment][0].row, 'segment %d has no '
                                             'rows in %s' % (segment, other))
        elif name not in with_audio:
            errors[name] = helper.InputError(files[0], arousal[segment][0].row, 'label rows of '
                                             'segment %d, which has no audio file in %s'
                                             % (segment, layout.audio_dir(video_id)))
        else:
            try:
                joined[name] = join_segment(segment, arousal[segment], valence[segment], *files)
            except helper.InputError as error:
                errors[name] = error
    return joined, errors
