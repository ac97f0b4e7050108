"""helper.py: listing, atomic writes, validated CSV input, audio reading,
text normalisation and the TensorFlow set-up."""

import os
import subprocess
import sys

import pytest

import helper
from ser import paths
from ser.text import normalise_words

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_list_dir_ignores_hidden_files_and_sorts(tmp_path):
    for name in ['b.csv', 'a.csv', '.DS_Store', '._a.csv', 'notes.txt']:
        (tmp_path / name).write_text('x')
    assert helper.list_dir(str(tmp_path)) == ['a.csv', 'b.csv', 'notes.txt']
    assert helper.list_dir(str(tmp_path), '.csv') == ['a.csv', 'b.csv']
    assert helper.list_ids(str(tmp_path), '.csv') == ['a', 'b']


def test_list_dir_missing_directory_names_it(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(helper.InputError, match='nowhere: directory not found'):
        helper.list_dir(missing)


def test_atomic_write_interrupted_leaves_nothing(tmp_path):
    target = tmp_path / 'out.csv'
    with pytest.raises(KeyboardInterrupt):
        with helper.atomic_write(str(target)) as handle:
            handle.write('half a file')
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_old_file_until_complete(tmp_path):
    target = tmp_path / 'out.csv'
    target.write_text('old\n')
    with pytest.raises(RuntimeError):
        with helper.atomic_write(str(target)) as handle:
            handle.write('new')
            raise RuntimeError('disk full')
    assert target.read_text() == 'old\n'
    helper.write_csv(str(target), ['a', 'b'], [(1, 2.5)])
    assert target.read_text() == 'a,b\n1,2.5\n'
    assert os.listdir(tmp_path) == ['out.csv']
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_from_a_killed_process_leaves_only_a_hidden_temporary(tmp_path):
    target = tmp_path / 'out.bin'
    code = ('import helper, os\n'
            'with helper.atomic_write(%r, "wb") as h:\n'
            '    h.write(b"x" * 1000); h.flush(); os._exit(9)\n' % str(target))
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO)
    assert result.returncode == 9
    assert not target.exists()
    assert helper.list_dir(str(tmp_path)) == []


def test_read_table_parses_and_names_file_and_row(tmp_path):
    path = tmp_path / 't.csv'
    path.write_text('start,end,sentence\n0.5,1.0,Hello there\n\n1.5,x,Bad\n')
    columns = [('start', float), ('end', float), ('sentence', str)]
    with pytest.raises(helper.InputError) as error:
        helper.read_table(str(path), columns)
    assert error.value.row == 4
    assert "t.csv, row 4: column 'end': 'x' is not a valid float" in str(error.value)
    path.write_text('start,end,sentence\n0.5,1.0,Hello there\n')
    assert helper.read_table(str(path), columns) == [(0.5, 1.0, 'Hello there')]


@pytest.mark.parametrize('content, problem', [
    (b'', 'empty file'),
    (b'start,stop\n', 'row 1: header is start,stop'),
    (b'start,end\n1,2,3\n', 'row 2: expected 2 columns'),
    (b'start,end\n1,nan\n', "row 2: column 'end': 'nan' is not a finite number"),
    (b'start,end\n1,2\n\xff\xfe,3\n', 'row 3: not valid UTF-8'),
])
def test_read_table_rejects_bad_input(tmp_path, content, problem):
    path = tmp_path / 'bad.csv'
    path.write_bytes(content)
    with pytest.raises(helper.InputError, match=problem):
        helper.read_table(str(path), [('start', float), ('end', float)])


def test_read_partition_validates_rows(tmp_path):
    path = tmp_path / 'partition.csv'
    path.write_text('Id,Proposal\n1,train\n2,devel\n3,test\n')
    assert paths.read_partition(str(path)) == {'1': 'train', '2': 'devel', '3': 'test'}
    path.write_text('Id,Proposal\n1,train\n2,holdout\n')
    with pytest.raises(helper.InputError, match="row 3: Proposal 'holdout'"):
        paths.read_partition(str(path))
    path.write_text('Id,Proposal\n1,train\n1,devel\n')
    with pytest.raises(helper.InputError, match='row 3: Id 1 listed twice'):
        paths.read_partition(str(path))


def test_normalise_words_drops_fillers_and_punctuation():
    assert normalise_words("Well, <filler> the BMW's  engine -- is GREAT!") == [
        'well', 'the', "bmw's", 'engine', 'is', 'great']
    assert normalise_words('<laughter> ... !') == []


def test_muse_layout_paths_follow_the_distributed_package(tmp_path):
    layout = paths.MuseLayout(str(tmp_path), 'c1_muse_wild')
    task = os.path.join(str(tmp_path), 'c1_muse_wild')
    assert layout.partition_path == os.path.join(str(tmp_path), 'metadata', 'partition.csv')
    assert layout.transcript_path('12_3') == os.path.join(
        task, 'transcription_segments', '12', '12_3.csv')
    assert layout.label_path('valence', '12') == os.path.join(
        task, 'label_segments', 'valence', '12.csv')


def test_segment_audio_found_in_any_container_and_listed_in_segment_order(tmp_path):
    layout = paths.MuseLayout(str(tmp_path))
    audio_dir = layout.audio_dir('7')
    os.makedirs(audio_dir)
    for name in ['7_10.wav', '7_2.mp4', '7_1.wav', '._7_1.wav', '.DS_Store', '77_1.wav',
                 'notes.txt', '7_x.wav']:
        open(os.path.join(audio_dir, name), 'wb').close()
    assert layout.audio_segments('7') == ['7_1', '7_2', '7_10']
    assert layout.audio_path('7_2').endswith(os.path.join('7', '7_2.mp4'))
    assert layout.audio_segments('8') == []
    with pytest.raises(helper.InputError, match='no audio file for segment 7_3'):
        layout.audio_path('7_3')


def test_segment_names_split_on_the_last_underscore():
    assert paths.segment_name('car_12', 4) == 'car_12_4'
    assert paths.split_segment_name('car_12_4') == ('car_12', 4)
    assert paths.video_of('12_0') == '12'
    assert sorted(['10_1', '2_10', '2_9'], key=paths.segment_sort_key) == ['2_9', '2_10', '10_1']
    for bad in ['12', '12_', '_3', '12_a']:
        with pytest.raises(ValueError, match='not a segment name'):
            paths.split_segment_name(bad)


def test_work_outputs_are_grouped_by_video(tmp_path):
    work = str(tmp_path)
    assert paths.sync_map_path(work, '12_3') == os.path.join(work, 'sync_maps', '12', '12_3.csv')
    assert paths.label_path(work, '12_3') == os.path.join(work, 'labels', '12', '12_3.csv')
    os.makedirs(os.path.join(work, 'labels', '12'))
    for name in ['12_10.csv', '12_3.csv', '.12_4.csv.x.tmp', '13_1.csv']:
        open(os.path.join(work, 'labels', '12', name), 'w').close()
    assert paths.work_segments(paths.labels_dir(work), '12') == ['12_3', '12_10']
    assert paths.work_segments(paths.labels_dir(work), '99') == []


ENTRY_SCRIPT = """
import sys
sys.path.insert(0, %r)
from absl import flags
import helper
flags.DEFINE_string('fail', 'none', 'How to end.')
flags.DEFINE_bool('verbose', False, 'Development messages.')

def main(argv):
    helper.development_msg('development message')
    if flags.FLAGS.fail == 'input':
        raise helper.InputError('in.csv', 3, 'bad cell')
    if flags.FLAGS.fail == 'interrupt':
        raise KeyboardInterrupt
    return 0

helper.run(main)
"""


@pytest.mark.parametrize('fail, status, message', [
    ('none', 0, None), ('input', 1, 'in.csv, row 3: bad cell'), ('interrupt', 130, 'interrupted')])
def test_run_turns_bad_input_and_ctrl_c_into_messages_and_exit_codes(tmp_path, fail, status,
                                                                     message):
    script = tmp_path / 'entry.py'
    script.write_text(ENTRY_SCRIPT % REPO)
    result = subprocess.run([sys.executable, str(script), '--fail', fail],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == status
    assert 'Traceback' not in result.stderr
    if message:
        assert message in result.stderr
    assert 'development message' not in result.stderr
    verbose = subprocess.run([sys.executable, str(script), '--verbose'],
                             capture_output=True, text=True, timeout=60)
    assert 'development message' in verbose.stderr


def _square(x):
    return x * x


def test_parallel_map_returns_every_result(tmp_path):
    assert sorted(helper.parallel_map(_square, range(6), 2, 'test')) == [0, 1, 4, 9, 16, 25]
    assert sorted(helper.parallel_map(_square, range(3), 1, 'test')) == [0, 1, 4]


def test_tensorflow_set_up_gives_legacy_keras_graph_mode():
    code = ('import helper\n'
            'tf = helper.import_tensorflow()\n'
            'import tensorflow\n'
            'assert not tensorflow.executing_eagerly()\n'
            'x = tf.placeholder(tf.float32, [2, 10, 1])\n'
            'y = tf.layers.conv1d(x, 4, 3, padding="same")\n'
            'cell = tf.nn.rnn_cell.LSTMCell(8, use_peepholes=True, cell_clip=100.0)\n'
            'out, _ = tf.nn.dynamic_rnn(cell, y, dtype=tf.float32)\n'
            'assert out.shape.as_list() == [2, 10, 8]\n'
            'print("ok")\n')
    env = dict(os.environ)
    env.pop('TF_USE_LEGACY_KERAS', None)
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'ok'


def test_device_minus_one_means_the_cpu():
    assert helper.configure_device(-1) == '/cpu:0'
    assert helper.session_config(-1).device_count['GPU'] == 0


def test_tensorflow_start_up_is_quiet():
    code = ('import helper\n'
            'from absl import app\n'
            'tf = helper.import_tensorflow()\n'
            'def main(argv):\n'
            '    helper.configure_device(0)\n'
            '    with tf.Session(config=helper.session_config(0)) as session:\n'
            '        print(session.run(tf.constant(3)))\n'
            'app.run(main)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '3'
    # TensorFlow's C++ log lines name their source file: port.cc, cuda_platform.cc, ...
    native = [line for line in result.stderr.splitlines() if '.cc:' in line]
    assert native == [], native
