"""label_generator.py, run as a user runs it: arousal and valence label
segments joined per segment into labels/<Id>/<Id>_<seg>.csv, relative to the
segment start, the repeated boundary row in both segments; bad input named by
file and row while the other segments are done; reruns resume."""
import os

import numpy as np
import pytest
import soundfile

from label_fixtures import run_script, write, write_partition
from ser import muse
from ser import paths

HEADER = 'timestamp,value,segment_id\n'
# Two segments repeating their boundary timestamp (1500 ms), as MuSe-CaR does;
# the first starts later in the video than 0.
AROUSAL = HEADER + '1000,0.1,1\n1250,0.2,1\n1500,0.3,1\n1500,0.3,2\n1750,-0.4,2\n'
VALENCE = HEADER + '1000,-0.5,1\n1250,0.25,1\n1500,0.125,1\n1500,0.125,2\n1750,1.0,2\n'
EXPECTED = {'1_1': 'timestamp,arousal,valence\n0,0.1,-0.5\n250,0.2,0.25\n500,0.3,0.125\n',
            '1_2': 'timestamp,arousal,valence\n0,0.3,0.125\n250,-0.4,1.0\n'}


def add_video(layout, video_id, arousal=AROUSAL, valence=VALENCE, segments=(1, 2)):
    for dimension, content in (('arousal', arousal), ('valence', valence)):
        if content is not None:
            write(layout.label_path(dimension, video_id), content)
    os.makedirs(layout.audio_dir(video_id), exist_ok=True)
    for segment in segments:
        soundfile.write(os.path.join(layout.audio_dir(video_id),
                                     paths.segment_name(video_id, segment) + '.wav'),
                        np.zeros(8000, dtype=np.float32), 16000)


@pytest.fixture
def layout(tmp_path):
    layout = paths.MuseLayout(str(tmp_path / 'MuSe-CaR'))
    write_partition(layout.partition_path, {'1': 'train', '2': 'devel', '3': 'test'})
    return layout


def run(layout, work_dir, *extra):
    return run_script('label_generator.py', '--muse_dir', layout.muse_dir, '--work_dir',
                      work_dir, *extra)


def read_output(work_dir, name):
    with open(paths.label_path(work_dir, name), encoding='utf-8') as handle:
        return handle.read()


def test_segments_are_joined_relative_to_their_start_with_the_boundary_in_both(layout, tmp_path):
    add_video(layout, '1')
    add_video(layout, '3', arousal=None, valence=None)   # the test video: labels withheld
    work_dir = str(tmp_path / 'work')
    result = run(layout, work_dir)
    assert result.returncode == 0, result.stderr
    assert {name: read_output(work_dir, name) for name in EXPECTED} == EXPECTED
    assert muse.read_labels(paths.label_path(work_dir, '1_2'))[0].tolist() == [0, 250]
    assert not os.path.exists(os.path.join(paths.labels_dir(work_dir), '3'))
    assert '2 segment(s) written, 0 skipped' in result.stderr
    assert '2 video(s) without label files' in result.stderr


def test_rerun_skips_and_overwrite_rewrites(layout, tmp_path):
    add_video(layout, '1')
    work_dir = str(tmp_path / 'work')
    assert run(layout, work_dir).returncode == 0
    write(paths.label_path(work_dir, '1_1'), 'timestamp,arousal,valence\n0,9,9\n')
    again = run(layout, work_dir)
    assert '0 segment(s) written, 2 skipped' in again.stderr
    assert read_output(work_dir, '1_1').endswith('0,9,9\n')
    assert run(layout, work_dir, '--overwrite').returncode == 0
    assert read_output(work_dir, '1_1') == EXPECTED['1_1']


def test_bad_segments_are_named_the_others_written_and_a_rerun_resumes(layout, tmp_path):
    # video 1: segment 2 has a timestamp in arousal only; video 2: segment 3 has no audio,
    # segment 1 is fine.
    add_video(layout, '1', valence=VALENCE.replace('1750,1.0,2\n', ''))
    add_video(layout, '2', arousal=AROUSAL + '1750,0.5,3\n2000,0.5,3\n',
              valence=VALENCE + '1750,0.5,3\n2000,0.5,3\n')
    work_dir = str(tmp_path / 'work')
    result = run(layout, work_dir)
    assert result.returncode == 1
    assert '%s, row 6: timestamp 1750 ms of segment 2 is not in %s' % (
        layout.label_path('arousal', '1'), layout.label_path('valence', '1')) in result.stderr
    assert '%s, row 7: label rows of segment 3, which has no audio file' % (
        layout.label_path('arousal', '2')) in result.stderr
    assert '3 segment(s) written, 0 skipped' in result.stderr and ', 2 failed;' in result.stderr
    assert sorted(os.listdir(os.path.join(paths.labels_dir(work_dir), '1'))) == ['1_1.csv']
    assert sorted(os.listdir(os.path.join(paths.labels_dir(work_dir), '2'))) == ['2_1.csv',
                                                                                   '2_2.csv']
    add_video(layout, '1')
    again = run(layout, work_dir, '--ids', '1')
    assert again.returncode == 0 and '1 segment(s) written, 1 skipped' in again.stderr
    assert read_output(work_dir, '1_2') == EXPECTED['1_2']


@pytest.mark.parametrize('arousal, valence, where, problem', [
    (AROUSAL.replace('1250,0.2,1', '1260,0.2,1'), VALENCE, ('arousal', 3), 'multiple of 250'),
    (AROUSAL, VALENCE.encode() + b'2000,caf\xe9,2\n', ('valence', 7), 'not valid UTF-8'),
    (AROUSAL.replace('1250,0.2,1', '1250,0.2'), VALENCE, ('arousal', 3), 'expected 3 columns'),
    (AROUSAL, None, ('valence', None), 'file not found, although'),
])
def test_unreadable_label_files_are_errors_naming_file_and_row(layout, tmp_path, arousal,
                                                               valence, where, problem):
    add_video(layout, '1', arousal=arousal, valence=valence)
    add_video(layout, '2')
    work_dir = str(tmp_path / 'work')
    result = run(layout, work_dir)
    assert result.returncode == 1
    path = layout.label_path(where[0], '1')
    located = path if where[1] is None else '%s, row %d' % (path, where[1])
    assert '%s: %s' % (located, problem) in result.stderr or (
        located in result.stderr and problem in result.stderr)
    assert not os.path.exists(os.path.join(paths.labels_dir(work_dir), '1'))
    assert read_output(work_dir, '2_1') == EXPECTED['1_1']


def test_segments_with_audio_but_no_label_rows_are_counted(layout, tmp_path):
    add_video(layout, '1', segments=(1, 2, 3))
    result = run(layout, str(tmp_path / 'work'))
    assert result.returncode == 0
    assert 'video 1: segment(s) with audio but no label rows: 1_3' in result.stderr
    assert '1 segment(s) with audio but no label rows' in result.stderr


def test_command_line_refuses_foreign_flags_and_unknown_ids(layout, tmp_path):
    add_video(layout, '1')
    foreign = run(layout, str(tmp_path / 'work'), '--aligner', 'given')
    assert foreign.returncode != 0 and 'aligner' in foreign.stderr
    unknown = run(layout, str(tmp_path / 'work'), '--ids', '9')
    assert unknown.returncode == 1 and '--ids not in the partition: 9' in unknown.stderr
