"""Placing segments in their video where no label file says where they start
(MuSe-CaR's official test videos): by the label-aligned feature files, else by
the words themselves (ser.muse, ser.sync_maps); a segment that cannot be
placed is a warning, never a failed run. And a segment whose words fit both
readings of their times (video ms and segment-relative) is read as video ms."""
import os
import shutil

import numpy as np
import pytest
import soundfile

import helper
from ser import muse, sync_maps
from ser import paths
from ser.text import normalise_words
from tools import demo_corpus
from label_fixtures import run_script, write

SYNC_COLUMNS = [('id', str), ('start', float), ('end', float), ('word', str)]
SEGMENT_COLUMNS = [('Id', str), ('segment', str), ('start_ms', int), ('end_ms', int),
                   ('transcript', int)]


def run_sync_maps(muse_dir, work_dir, *extra):
    return run_script('synchronisation_map_generator.py', '--muse_dir', muse_dir, '--work_dir',
                      work_dir, '--workers', '2', *extra)


def given_times(layout, name, start_ms):
    """(start s, end s, word) of a segment's MuSe words, read as video ms of a
    segment starting at start_ms."""
    return [((w.start - start_ms) / 1000, (w.end - start_ms) / 1000, word)
            for w in muse.read_transcript(layout.transcript_path(name))
            for word in normalise_words(w.token)]


def assert_sync_map_is(work_dir, name, expected):
    rows = helper.read_table(paths.sync_map_path(work_dir, name), SYNC_COLUMNS)
    assert [row[3] for row in rows] == [word for _, _, word in expected], name
    np.testing.assert_allclose([row[1:3] for row in rows], [row[:2] for row in expected],
                               atol=0.0005, err_msg=name)


def word(row, start, end, token='car'):
    return muse.Word(row, start, end, 1, token)


# --------------------------------------------------------------------------
# ser.muse: the start from the words, the feature files, the reading order
# --------------------------------------------------------------------------
def test_a_start_from_the_words_is_the_median_offset_on_the_label_grid():
    aligned = [(0.50, 0.80, 'the'), (0.82, 1.30, 'engine'), (2.00, 2.40, 'is'),
               (2.41, 2.90, 'loud')]
    late = [word(2, 3280, 3560, 'The'), word(3, 3560, 4100, 'engine'), word(4, 4100, 4200,
            '<filler>'), word(5, 4770, 5200, 'is'), word(6, 5190, 5700, 'loud.')]
    assert muse.start_from_words(late, aligned) == (2750, None)
    relative = [w._replace(start=w.start - 2750, end=w.end - 2750) for w in late]
    assert muse.start_from_words(relative, aligned) == (0, None)
    scattered = [w._replace(start=w.start + shift) for w, shift
                 in zip(late, (0, 3000, 0, -3000, 6000))]
    start, reason = muse.start_from_words(scattered, aligned)
    assert start is None and 'give or take' in reason
    start, reason = muse.start_from_words(late[:2], aligned)
    assert start is None and "not the transcript's" in reason


def test_feature_files_give_each_segment_its_timestamps_from_the_first_two_columns(tmp_path):
    layout = paths.MuseLayout(str(tmp_path))
    root = os.path.join(layout.task_path, 'feature_segments', 'label_aligned')
    assert muse.label_aligned_path(layout, '7') is None
    write(os.path.join(root, 'vggish', '7.csv'), 'x\n')
    path = os.path.join(root, 'egemaps', '7.csv')
    write(path, 'timestamp,segment_id,f0,loudness\n2000,2,1.5,3\n2250,2,1.5,3\n2500,2,1,2\n'
                '2500,3,1,2\n2750,3.0,0,1\n')
    assert muse.label_aligned_path(layout, '7') == path
    segments = muse.read_feature_segments(path)
    assert {k: [r.timestamp for r in rows] for k, rows in segments.items()} == \
        {2: [2000, 2250, 2500], 3: [2500, 2750]}
    assert segments[3][0].row == 5 and segments[3][0].value is None
    for content, row, problem in (('time,segment_id,f0\n0,1,2\n', 1, 'header starts time'),
                                  ('timestamp,segment_id,f0\n0,1,2\n250\n', 3, 'at least 2'),
                                  ('timestamp,segment_id\n0,1\nsoon,1\n', 3, 'not a number'),
                                  ('timestamp,segment_id\n0,1\n100,1\n', 3, 'multiple of 250')):
        write(path, content)
        with pytest.raises(helper.InputError, match=problem) as error:
            muse.read_feature_segments(path)
        assert error.value.row == row and error.value.path == path


def test_words_that_fit_both_readings_are_read_as_video_ms():
    # A 6-s segment starting 1 s into the video; its words, at 1.2-5.5 s of video
    # time, would also fit the segment if they were segment-relative.
    words = [word(2, 1200, 1600, 'Nice'), word(3, 1700, 2300, 'car'), word(4, 5000, 5500, 'yes')]
    assert muse.word_time_base(words, 1000, 6000.0) == muse.VIDEO_TIME
    rows, reading = muse.segment_relative_words('t.csv', words, 1000, 6.0)
    assert reading == muse.VIDEO_TIME
    np.testing.assert_allclose([row[1:3] for row in rows], [(0.2, 0.6), (0.7, 1.3), (4.0, 4.5)])


def test_a_segment_whose_words_fit_both_readings_gets_video_times(tmp_path):
    """Through the script: labels put segment 2 at 1000 ms; its sync map
    holds the words 1 s earlier than their video times."""
    muse_dir = str(tmp_path / 'MuSe-CaR')
    layout = paths.MuseLayout(muse_dir)
    write(layout.partition_path, 'Id,Proposal\n9,train\n')
    for dimension in paths.DIMENSIONS:
        write(layout.label_path(dimension, '9'), 'timestamp,value,segment_id\n' + ''.join(
            '%d,0.1,%d\n' % (t, segment) for segment, times in ((1, range(0, 1001, 250)),
                                                               (2, range(1000, 7001, 250)))
            for t in times))
    for name, seconds in (('9_1', 1.0), ('9_2', 6.0)):
        os.makedirs(layout.audio_dir('9'), exist_ok=True)
        soundfile.write(os.path.join(layout.audio_dir('9'), name + '.wav'),
                        np.zeros(int(seconds * 16000), dtype=np.float32), 16000)
    write(layout.transcript_path('9_2'),
          'start,end,segment_id,word\n1200,1600,2,Nice\n1700,2300,2,car\n5000,5500,2,yes\n')
    work_dir = str(tmp_path / 'work')
    process = run_sync_maps(muse_dir, work_dir)
    assert process.returncode == 0, process.stderr
    assert 'as video ms in 1 segment(s), as segment-relative in 0' in process.stderr
    assert_sync_map_is(work_dir, '9_2', [(0.2, 0.6, 'nice'), (0.7, 1.3, 'car'), (4.0, 4.5, 'yes')])


# --------------------------------------------------------------------------
# A demo corpus whose unlabelled videos start late
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def late(tmp_path_factory):
    """{muse, truth, layout, starts (segment -> true start ms), unlabelled
    (segment names of the test videos)}: 6 videos x 15 s, the test videos'
    first segment left out, label-aligned features written."""
    root = tmp_path_factory.mktemp('late_corpus')
    muse_dir, truth_dir = str(root / 'MuSe-CaR'), str(root / 'truth')
    demo_corpus.generate_corpus(muse_dir, truth_dir, 6, 15.0, seed=1, late_unlabelled=True,
                                label_aligned_features=True)
    layout = paths.MuseLayout(muse_dir)
    partition = paths.read_partition(layout.partition_path)
    segments = helper.read_table(os.path.join(truth_dir, 'segments.csv'), SEGMENT_COLUMNS)
    unlabelled = [row[1] for row in segments if partition[row[0]] == 'test' and row[4]]
    return {'muse': muse_dir, 'truth': truth_dir, 'layout': layout, 'unlabelled': unlabelled,
            'starts': {row[1]: row[2] for row in segments}}


def copy_without_features(late, tmp_path):
    copy = str(tmp_path / 'MuSe-CaR')
    shutil.copytree(late['muse'], copy)
    shutil.rmtree(os.path.join(paths.MuseLayout(copy).task_path, 'feature_segments'))
    return copy, paths.MuseLayout(copy)


@pytest.mark.slow
def test_the_corpus_s_unlabelled_videos_start_late_and_have_features(late):
    layout = late['layout']
    assert late['unlabelled']
    for name in late['unlabelled']:
        assert late['starts'][name] > 0
        video_id = paths.video_of(name)
        assert not os.path.exists(layout.label_path('arousal', video_id))
        assert paths.split_segment_name(layout.audio_segments(video_id)[0])[1] == 2
        rows = muse.read_feature_segments(muse.label_aligned_path(layout, video_id))
        assert rows[paths.split_segment_name(name)[1]][0].timestamp == late['starts'][name]


@pytest.mark.slow
@pytest.mark.parametrize('features', [True, False], ids=['by features', 'by words'])
def test_unlabelled_segments_are_placed_exactly(late, tmp_path, features):
    muse_dir, layout = (late['muse'], late['layout']) if features else \
        copy_without_features(late, tmp_path)
    work_dir = str(tmp_path / 'work')
    process = run_sync_maps(muse_dir, work_dir)
    assert process.returncode == 0, process.stderr
    count = len(late['unlabelled'])
    assert ('from label-aligned features in %d, from their words in 0; 0 could not'
            if features else 'from label-aligned features in 0, from their words in %d; 0 could'
            ) % count in process.stderr
    assert 'fitting neither in 0' in process.stderr
    for name in late['unlabelled']:
        assert_sync_map_is(work_dir, name, given_times(layout, name, late['starts'][name]))


@pytest.mark.slow
def test_a_segment_that_cannot_be_placed_is_a_warning_not_a_failure(late, tmp_path):
    muse_dir, layout = copy_without_features(late, tmp_path)
    name = late['unlabelled'][0]
    words = muse.read_transcript(layout.transcript_path(name))
    # Every other word 4 s later: no one start fits the words.
    write(layout.transcript_path(name), 'start,end,segment_id,word\n' + ''.join(
        '%d,%d,%d,"%s"\n' % (w.start + 4000 * (i % 2), w.end + 4000 * (i % 2), w.segment, w.token)
        for i, w in enumerate(words)))
    work_dir = str(tmp_path / 'work')
    process = run_sync_maps(muse_dir, work_dir, '--ids', paths.video_of(name))
    assert process.returncode == 0, process.stderr
    assert 'segment %s cannot be placed in its video' % name in process.stderr
    assert '1 could not be placed (warned)' in process.stderr
    rows = helper.read_table(paths.sync_map_path(work_dir, name), SYNC_COLUMNS)
    assert [row[3] for row in rows] == [w for _, _, w in given_times(layout, name, 0)]


def test_a_segment_of_fillers_only_needs_no_place(tmp_path):
    muse_dir = str(tmp_path / 'MuSe-CaR')
    layout = paths.MuseLayout(muse_dir)
    write(layout.partition_path, 'Id,Proposal\n8,test\n')
    os.makedirs(layout.audio_dir('8'), exist_ok=True)
    soundfile.write(os.path.join(layout.audio_dir('8'), '8_3.wav'),
                    np.zeros(16000, dtype=np.float32), 16000)
    write(layout.transcript_path('8_3'), 'start,end,segment_id,word\n4000,4300,3,<filler>\n')
    work_dir = str(tmp_path / 'work')
    process = run_sync_maps(muse_dir, work_dir)
    assert process.returncode == 0, process.stderr
    assert 'cannot be placed' not in process.stderr
    assert helper.read_table(paths.sync_map_path(work_dir, '8_3'), SYNC_COLUMNS) == []


@pytest.mark.slow
def test_every_step_runs_on_a_corpus_whose_unlabelled_videos_start_late(late, tmp_path):
    work_dir = str(tmp_path / 'work')
    steps = [('synchronisation_map_generator.py', '--muse_dir', late['muse'], '--truth_dir',
              late['truth']),
             ('label_generator.py', '--muse_dir', late['muse']),
             ('partition_generator.py', '--muse_dir', late['muse']),
             ('label_distribution_analysis.py',),
             ('data_generator.py', '--muse_dir', late['muse'], '--sample_rate', '8000')]
    for script, *extra in steps:
        process = run_script(script, '--work_dir', work_dir, *extra)
        assert process.returncode == 0, (script, process.stderr)
    for name in late['unlabelled']:
        assert_sync_map_is(work_dir, name, given_times(late['layout'], name, late['starts'][name]))
