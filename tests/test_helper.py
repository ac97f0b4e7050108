"""helper.py: listing, atomic writes, validated CSV input, audio reading,
text normalisation and the TensorFlow set-up."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import helper

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
    assert helper.read_partition(str(path)) == {'1': 'train', '2': 'devel', '3': 'test'}
    path.write_text('Id,Proposal\n1,train\n2,holdout\n')
    with pytest.raises(helper.InputError, match="row 3: Proposal 'holdout'"):
        helper.read_partition(str(path))
    path.write_text('Id,Proposal\n1,train\n1,devel\n')
    with pytest.raises(helper.InputError, match='row 3: Id 1 listed twice'):
        helper.read_partition(str(path))


def test_normalise_words_drops_fillers_and_punctuation():
    assert helper.normalise_words("Well, <filler> the BMW's  engine -- is GREAT!") == [
        'well', 'the', "bmw's", 'engine', 'is', 'great']
    assert helper.normalise_words('<laughter> ... !') == []


def _tone(rate, seconds, channels):
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 220 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize('rate, channels', [(48000, 2), (22050, 1), (16000, 1)])
def test_read_audio_mixes_down_and_resamples(tmp_path, rate, channels):
    path = str(tmp_path / 'a.wav')
    soundfile.write(path, _tone(rate, 1.0, channels), rate)
    samples = helper.read_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1
    assert 0.45 < np.abs(samples[1000:-1000]).max() < 0.55


def test_read_audio_decodes_other_containers_with_ffmpeg(tmp_path):
    wav = str(tmp_path / 'a.wav')
    soundfile.write(wav, _tone(44100, 1.0, 2), 44100)
    mp3 = str(tmp_path / 'a.mp3')
    subprocess.run(['ffmpeg', '-v', 'error', '-i', wav, mp3], check=True)
    samples = helper.read_audio(mp3, 16000)
    assert abs(len(samples) / 16000 - 1.0) < 0.1
    assert np.abs(samples).max() > 0.3


def test_read_audio_errors_name_the_file(tmp_path):
    garbage = tmp_path / 'broken.wav'
    garbage.write_bytes(b'RIFF not really a wave file')
    with pytest.raises(helper.InputError, match='broken.wav: unreadable audio'):
        helper.read_audio(str(garbage), 16000)
    empty = str(tmp_path / 'empty.wav')
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(helper.InputError, match='empty.wav: audio is empty'):
        helper.read_audio(empty, 16000)


def test_audio_path_finds_other_containers_and_reports_missing(tmp_path):
    audio_dir = tmp_path / 'audio'
    audio_dir.mkdir()
    (audio_dir / '7.mp4').write_bytes(b'x')
    assert helper.audio_path(str(tmp_path), '7').endswith('7.mp4')
    with pytest.raises(helper.InputError, match='no audio file for recording 8'):
        helper.audio_path(str(tmp_path), '8')


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
