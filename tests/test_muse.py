"""ser.muse: MuSe-CaR 2020's word transcripts and label segments, the segment
start, the per-segment time base of word times, joining the dimensions, and
complete segment audio."""
import os

import numpy as np
import pytest
import soundfile

import helper
from ser import muse
from ser import paths
from label_fixtures import write

TRANSCRIPT_HEADER = 'start,end,segment_id,word\n'
LABEL_HEADER = 'timestamp,value,segment_id\n'


def words_of(rows):
    return [muse.Word(i + 2, start, end, 1, token) for i, (start, end, token) in enumerate(rows)]


# --------------------------------------------------------------------------
# Word transcripts
# --------------------------------------------------------------------------
def test_transcript_rows_keep_muse_tokens_and_row_numbers(tmp_path):
    path = str(tmp_path / '7_2.csv')
    write(path, TRANSCRIPT_HEADER + '20100,20400,2,The\n20400,20400,2,<filler>\n\n'
          '20500,20900,2.0,"engine,"\n')
    words = muse.read_transcript(path)
    assert words == [muse.Word(2, 20100, 20400, 2, 'The'), muse.Word(3, 20400, 20400, 2, '<filler>'),
                     muse.Word(5, 20500, 20900, 2, 'engine,')]
    assert muse.transcript_text(words) == 'The <filler> engine,'


@pytest.mark.parametrize('body, row, problem', [
    ('100,200,1\n', 2, 'expected 4 columns'),
    ('100,200,1,car,extra\n', 2, 'expected 4 columns'),
    ('100,soon,1,car\n', 2, "'soon' is not a valid float"),
    ('100,200,1,car\n300,250,1,seat\n', 3, 'end must not come before start'),
    ('-5,200,1,car\n', 2, 'both >= 0'),
    ('100,200,one,car\n', 2, 'segment_id'),
])
def test_bad_transcript_rows_name_file_and_row(tmp_path, body, row, problem):
    path = str(tmp_path / '1_1.csv')
    write(path, TRANSCRIPT_HEADER + body)
    with pytest.raises(helper.InputError) as error:
        muse.read_transcript(path)
    assert (error.value.path, error.value.row) == (path, row)
    assert problem in str(error.value)


def test_non_utf8_transcript_names_the_row(tmp_path):
    path = str(tmp_path / '1_1.csv')
    write(path, TRANSCRIPT_HEADER.encode() + b'100,200,1,car\n300,400,1,caf\xe9\n')
    with pytest.raises(helper.InputError, match='not valid UTF-8') as error:
        muse.read_transcript(path)
    assert error.value.row == 3


# --------------------------------------------------------------------------
# Time base: video ms normally, segment-relative when only that fits
# --------------------------------------------------------------------------
def test_video_times_become_segment_relative_seconds_without_first_word_shift():
    words = words_of([(21250, 21600, 'So'), (21700, 22000, 'the'), (29000, 29500, 'end.')])
    rows, reading = muse.segment_relative_words('t.csv', words, start_ms=20000, duration_s=10.0)
    assert reading == muse.VIDEO_TIME
    # 1.25 s, not 0: the first word is not moved to the start of the segment.
    assert [(start, end) for _, start, end, _ in rows] == [(1.25, 1.6), (1.7, 2.0), (9.0, 9.5)]
    assert [row for row, _, _, _ in rows] == [2, 3, 4]


def test_segment_relative_times_are_recognised_per_segment():
    words = words_of([(1250, 1600, 'So'), (9000, 9500, 'end.')])
    rows, reading = muse.segment_relative_words('t.csv', words, start_ms=20000, duration_s=10.0)
    assert reading == muse.SEGMENT_TIME
    assert [(start, end) for _, start, end, _ in rows] == [(1.25, 1.6), (9.0, 9.5)]
    # A segment at the start of the video reads the same either way: video time.
    assert muse.word_time_base(words, 0, 10000.0) == muse.VIDEO_TIME


def test_words_may_run_a_little_past_the_audio_and_are_clipped():
    words = words_of([(19800, 20300, 'Well'), (29900, 30200, 'done.')])
    rows, reading = muse.segment_relative_words('t.csv', words, start_ms=20000, duration_s=10.0)
    assert reading == muse.VIDEO_TIME
    assert [(start, end) for _, start, end, _ in rows] == [(0.0, 0.3), (9.9, 10.0)]


def test_words_fitting_neither_reading_are_an_error_naming_the_row():
    words = words_of([(21000, 21500, 'fine'), (45000, 45500, 'lost')])
    assert muse.word_time_base(words, 20000, 10000.0) is None
    with pytest.raises(helper.InputError, match="word 'lost'") as error:
        muse.segment_relative_words('t.csv', words, start_ms=20000, duration_s=10.0)
    assert (error.value.path, error.value.row) == ('t.csv', 3)


# --------------------------------------------------------------------------
# Label segments
# --------------------------------------------------------------------------
def test_label_segments_split_with_the_boundary_row_in_both(tmp_path):
    path = str(tmp_path / '3.csv')
    write(path, LABEL_HEADER + '0,0.1,1\n250,0.2,1\n500,0.3,1\n500,0.3,2\n750,0.4,2\n')
    segments = muse.read_label_segments(path)
    assert list(segments) == [1, 2]
    assert [r.timestamp for r in segments[1]] == [0, 250, 500]
    assert [r.timestamp for r in segments[2]] == [500, 750]
    assert [muse.segment_start(segments[k]) for k in (1, 2)] == [0, 500]
    assert muse.label_span_seconds(segments[1]) == 0.5
    assert segments[2][0].row == 5


@pytest.mark.parametrize('body, row, problem', [
    ('0,0.1,1\n260,0.2,1\n', 3, 'multiple of 250'),
    ('0,0.1,1\n0,0.2,1\n', 3, 'does not follow'),
    ('0,high,1\n', 2, "'high' is not a valid float"),
    ('0,0.1\n', 2, 'expected 3 columns'),
])
def test_bad_label_rows_name_file_and_row(tmp_path, body, row, problem):
    path = str(tmp_path / '3.csv')
    write(path, LABEL_HEADER + body)
    with pytest.raises(helper.InputError) as error:
        muse.read_label_segments(path)
    assert (error.value.path, error.value.row) == (path, row)
    assert problem in str(error.value)


def test_join_is_relative_to_the_segment_start_and_refuses_one_sided_timestamps(tmp_path):
    arousal_path, valence_path = str(tmp_path / 'a.csv'), str(tmp_path / 'v.csv')
    write(arousal_path, LABEL_HEADER + '1000,0.1,2\n1250,0.2,2\n1500,0.3,2\n')
    write(valence_path, LABEL_HEADER + '1000,-0.1,2\n1250,-0.2,2\n1500,-0.3,2\n')
    arousal, valence = (muse.read_label_segments(p)[2] for p in (arousal_path, valence_path))
    assert muse.join_segment(2, arousal, valence, arousal_path, valence_path) == [
        (0, 0.1, -0.1), (250, 0.2, -0.2), (500, 0.3, -0.3)]
    with pytest.raises(helper.InputError, match='timestamp 1500 ms of segment 2 is not in') as error:
        muse.join_segment(2, arousal, valence[:2], arousal_path, valence_path)
    assert (error.value.path, error.value.row) == (arousal_path, 4)


def test_video_labels_join_each_segment_and_report_segments_without_audio(tmp_path):
    layout = paths.MuseLayout(str(tmp_path))
    for dimension, sign in (('arousal', 1), ('valence', -1)):
        write(layout.label_path(dimension, '5'), LABEL_HEADER + ''.join(
            '%d,%g,%d\n' % (t, sign * t / 1000, k)
            for k, ts in ((1, (0, 250, 500)), (2, (500, 750)), (3, (750, 1000))) for t in ts))
    os.makedirs(layout.audio_dir('5'))
    for name in ('5_1', '5_2'):
        soundfile.write(os.path.join(layout.audio_dir('5'), name + '.wav'),
                        np.zeros(8000, dtype=np.float32), 16000)
    joined, errors = muse.video_labels(layout, '5')
    assert joined == {'5_1': [(0, 0.0, -0.0), (250, 0.25, -0.25), (500, 0.5, -0.5)],
                      '5_2': [(0, 0.5, -0.5), (250, 0.75, -0.75)]}
    assert list(errors) == ['5_3'] and errors['5_3'].row == 7
    assert 'segment 3, which has no audio file' in str(errors['5_3'])
    assert muse.video_labels(layout, 'unlabelled') == ({}, {})
