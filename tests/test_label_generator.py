"""label_generator.py: joining arousal and valence label segments."""
import logging
import os

import pytest

import helper
import label_generator
from label_fixtures import run_script, write, write_partition

HEADER = 'timestamp,value,segment_id\n'
# Two segments repeating their boundary timestamp (500 ms), as MuSe-CaR does.
AROUSAL = HEADER + '0,0.1,1\n250,0.2,1\n500,0.3,1\n500,0.3,2\n750,-0.4,2\n'
# Same timestamps, rows out of order: the output must still be sorted.
VALENCE = HEADER + '500,0.125,1\n0,-0.5,1\n250,0.25,1\n500,0.125,2\n750,1.0,2\n'
EXPECTED = 'timestamp,arousal,valence\n0,0.1,-0.5\n250,0.2,0.25\n500,0.3,0.125\n750,-0.4,1.0\n'


def segment_path(muse_dir, dimension, recording_id):
    return helper.label_segment_path(muse_dir, dimension, recording_id)


def add_recording(muse_dir, recording_id, arousal=AROUSAL, valence=VALENCE):
    for dimension, content in (('arousal', arousal), ('valence', valence)):
        if content is not None:
            write(segment_path(muse_dir, dimension, recording_id), content)


@pytest.fixture
def muse_dir(tmp_path):
    path = str(tmp_path / 'MuSe-CaR')
    write_partition(helper.muse_partition_path(path), {'1': 'train', '2': 'devel', '3': 'test'})
    return path


@pytest.fixture
def work_dir(tmp_path):
    return str(tmp_path / 'work')


def generate(muse_dir, work_dir, recording_id='1', overwrite=False):
    return label_generator.generate_labels(recording_id, muse_dir, work_dir, overwrite)


def read_output(work_dir, recording_id='1'):
    with open(helper.label_path(work_dir, recording_id), encoding='utf-8') as handle:
        return handle.read()


def test_joins_dimensions_drops_repeated_boundaries_and_sorts(muse_dir, work_dir):
    add_recording(muse_dir, '1')
    outcome = generate(muse_dir, work_dir)
    assert (outcome.status, outcome.rows, outcome.duplicates, outcome.conflicts) == (
        'written', 4, 2, 0)
    assert read_output(work_dir) == EXPECTED


def test_whole_number_timestamps_written_as_floats_are_accepted(muse_dir, work_dir):
    add_recording(muse_dir, '1', arousal=AROUSAL.replace('750,', '750.0,'))
    assert generate(muse_dir, work_dir).status == 'written'
    assert read_output(work_dir) == EXPECTED


def test_repeat_with_another_value_keeps_the_first_and_is_reported(muse_dir, work_dir, caplog):
    arousal = AROUSAL.replace('500,0.3,2', '500,0.9,2')
    add_recording(muse_dir, '1', arousal=arousal)
    with caplog.at_level(logging.WARNING):
        outcome = generate(muse_dir, work_dir)
    assert (outcome.status, outcome.duplicates, outcome.conflicts) == ('written', 2, 1)
    assert read_output(work_dir) == EXPECTED
    warning = caplog.text
    assert segment_path(muse_dir, 'arousal', '1') in warning
    assert '500 ms, rows 4 and 5' in warning


def test_timestamp_in_one_dimension_only_is_an_error_naming_file_row_timestamp(
        muse_dir, work_dir):
    # The blank line must not shift the reported row: 750 ms is on line 7.
    arousal = AROUSAL.replace('500,0.3,2\n', '500,0.3,2\n\n')
    valence = VALENCE.replace('750,1.0,2\n', '')
    add_recording(muse_dir, '1', arousal=arousal, valence=valence)
    outcome = generate(muse_dir, work_dir)
    assert outcome.status == 'failed'
    assert outcome.error.startswith(segment_path(muse_dir, 'arousal', '1') + ', row 7:')
    assert 'timestamp 750 ms' in outcome.error
    assert segment_path(muse_dir, 'valence', '1') in outcome.error
    assert not os.path.exists(helper.label_path(work_dir, '1'))


@pytest.mark.parametrize('content, row, problem', [
    pytest.param(AROUSAL.replace('250,0.2,1', '250,nan,1'), 3, 'not a finite number', id='nan'),
    pytest.param(AROUSAL.replace('250,0.2,1', '250,high,1'), 3, 'not a valid float',
                 id='not-a-number'),
    pytest.param(AROUSAL.replace('250,0.2,1', '-250,0.2,1'), 3,
                 '-250 ms is not a non-negative multiple of 250 ms', id='negative-timestamp'),
    pytest.param(AROUSAL.replace('250,0.2,1', '250.5,0.2,1'), 3,
                 '250.5 ms is not a non-negative multiple of 250 ms', id='off-grid-timestamp'),
    pytest.param(AROUSAL.replace('250,0.2,1', '250,0.2'), 3, 'expected 3 columns',
                 id='missing-column'),
    pytest.param(AROUSAL.replace('timestamp,value', 'time,value'), 1,
                 'expected timestamp,value,segment_id', id='wrong-header'),
    pytest.param(AROUSAL.encode('utf-8').replace(b'0.2', b'0.2\xff'), 3, 'not valid UTF-8',
                 id='not-utf8'),
    pytest.param(AROUSAL.replace('0.2', '0.2' + 'x' * 200000), None, 'malformed CSV',
                 id='field-over-csv-limit'),
    pytest.param(HEADER, None, 'no label rows', id='header-only'),
])
def test_bad_label_file_is_an_error_naming_file_and_row(muse_dir, work_dir, content, row,
                                                         problem):
    add_recording(muse_dir, '1', arousal=content)
    outcome = generate(muse_dir, work_dir)
    assert outcome.status == 'failed'
    where = segment_path(muse_dir, 'arousal', '1')
    assert outcome.error.startswith(where + (':' if row is None else ', row %d:' % row))
    assert problem in outcome.error
    assert not os.path.exists(helper.label_path(work_dir, '1'))


def test_recording_with_one_label_file_only_is_an_error(muse_dir, work_dir):
    add_recording(muse_dir, '1', valence=None)
    outcome = generate(muse_dir, work_dir)
    assert outcome.status == 'failed'
    assert outcome.error.startswith(segment_path(muse_dir, 'valence', '1') + ': file not found')


def test_recording_without_label_files_is_skipped_as_unlabelled(muse_dir, work_dir):
    outcome = generate(muse_dir, work_dir, '3')
    assert outcome.status == 'unlabelled'
    assert not os.path.exists(helper.label_path(work_dir, '3'))


def test_rerun_skips_existing_outputs_unless_overwrite(muse_dir, work_dir):
    add_recording(muse_dir, '1')
    assert generate(muse_dir, work_dir).status == 'written'
    add_recording(muse_dir, '1', arousal=AROUSAL.replace('0,0.1,1', '0,0.7,1'))
    assert generate(muse_dir, work_dir).status == 'skipped'
    assert read_output(work_dir) == EXPECTED
    assert generate(muse_dir, work_dir, overwrite=True).status == 'written'
    assert read_output(work_dir) == EXPECTED.replace('0,0.1,', '0,0.7,')


def test_interrupted_write_leaves_no_file_and_the_rerun_writes_it(muse_dir, work_dir,
                                                                  monkeypatch):
    add_recording(muse_dir, '1')
    real_join = label_generator.join_dimensions

    def interrupted_join(*segments):
        rows = real_join(*segments)
        yield rows[0]
        raise KeyboardInterrupt  # Ctrl-C after one row reached the file

    monkeypatch.setattr(label_generator, 'join_dimensions', interrupted_join)
    with pytest.raises(KeyboardInterrupt):
        generate(muse_dir, work_dir)
    assert os.listdir(helper.labels_dir(work_dir)) == []
    monkeypatch.setattr(label_generator, 'join_dimensions', real_join)
    assert generate(muse_dir, work_dir).status == 'written'
    assert read_output(work_dir) == EXPECTED


def test_ids_select_recordings_in_partition_order_and_unknown_ids_are_refused(muse_dir):
    assert helper.select_recordings(muse_dir, None) == ['1', '2', '3']
    assert helper.select_recordings(muse_dir, ['3', '1']) == ['1', '3']
    with pytest.raises(helper.InputError, match='--ids not in the partition: 9'):
        helper.select_recordings(muse_dir, ['1', '9'])


def test_command_line_reports_bad_recording_processes_the_others_and_resumes(muse_dir,
                                                                           work_dir):
    add_recording(muse_dir, '1')
    add_recording(muse_dir, '2', valence=VALENCE.replace('250,0.25,1', '250,NaN,1'))
    # Hidden files in the label folders must be ignored, whatever they hold.
    for dimension in helper.DIMENSIONS:
        folder = os.path.dirname(segment_path(muse_dir, dimension, '1'))
        write(os.path.join(folder, '.DS_Store'), b'\x00\x05\x16\x07Bud1\xff')
        write(os.path.join(folder, '._1.csv'), b'\x00\x05\x16\x07Mac OS X\xff')

    result = run_script('label_generator.py', '--muse_dir', muse_dir, '--work_dir', work_dir)
    assert result.returncode == 1, result.stderr
    assert read_output(work_dir) == EXPECTED
    assert helper.list_dir(helper.labels_dir(work_dir)) == ['1.csv']
    assert '%s, row 4:' % segment_path(muse_dir, 'valence', '2') in result.stderr
    assert ('1 recording(s) written, 0 skipped (already there; --overwrite rewrites them), '
            '1 unlabelled, 1 failed; 4 rows, 2 duplicate timestamp(s) dropped') in result.stderr

    add_recording(muse_dir, '2')
    result = run_script('label_generator.py', '--muse_dir', muse_dir, '--work_dir', work_dir)
    assert result.returncode == 0, result.stderr
    assert '1 recording(s) written, 1 skipped' in result.stderr
    assert read_output(work_dir, '2') == EXPECTED


def test_command_line_malformed_partition_row_is_an_error_naming_file_and_row(muse_dir,
                                                                            work_dir):
    add_recording(muse_dir, '1')
    partition_file = helper.muse_partition_path(muse_dir)
    write(partition_file, 'Id,Proposal\n1,train\n2\n')
    result = run_script('label_generator.py', '--muse_dir', muse_dir, '--work_dir', work_dir)
    assert result.returncode == 1
    assert '%s, row 3: expected 2 columns' % partition_file in result.stderr
    assert not os.path.exists(helper.labels_dir(work_dir))
