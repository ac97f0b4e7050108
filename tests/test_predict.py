"""predict.py and export_model.py on a model trained for a few steps on the
tiny dataset (1000 Hz, so 250 samples per frame; 8-value embeddings).

The command-line runs whose exit status matters go through a subprocess; the
many bad-input cases call predict.main in this process (same flags, same
code, a fraction of the start-up time) and check its status, its message and
that no output file is left behind."""

import json
import logging
import math
import os
import shutil
import subprocess
import sys

from absl import app, flags
import numpy as np
import pytest
import soundfile
import soxr

import helper
import models
import predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
FLAGS = flags.FLAGS
STEPS = 3
TOLERANCE = 1e-4
RECORDING = 'tiny_test_a'
# The WAV given to predict.py is stereo at another rate than the model's, so
# the rate must come from dataset.json and the channels be mixed down.
WAV_RATE = 8000
SENTENCE = 'the engine is quiet and the seat is great'


def run_script(script, *args):
    return subprocess.run([PYTHON, os.path.join(REPO, script)] + [str(a) for a in args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def read_timeline(path):
    rows = helper.read_table(path, [('timestamp', int), ('arousal', float), ('valence', float)])
    table = np.array(rows, dtype=np.float64)
    return table[:, 0].astype(np.int64), table[:, 1:]


# --------------------------------------------------------------------------
# Fixtures: one trained model, its export, one recording with its words
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def model(tiny_dataset, tmp_path_factory):
    """{'train_dir', 'export_dir'}: train.py for STEPS steps (checkpoints 0 and
    STEPS), then export_model.py."""
    root = tmp_path_factory.mktemp('predict_model')
    train_dir, export_dir = root / 'checkpoints', root / 'exported'
    trained = run_script('train.py', '--dataset_dir', tiny_dataset, '--train_dir', train_dir,
                         '--max_steps', STEPS, '--batch_size', 2, '--sequence_length', 20,
                         '--hidden_units', 16, '--device', -1)
    assert trained.returncode == 0, trained.stderr
    exported = run_script('export_model.py', '--checkpoint', train_dir, '--export_dir',
                          export_dir)
    assert exported.returncode == 0, exported.stderr
    return {'train_dir': str(train_dir), 'export_dir': str(export_dir)}


@pytest.fixture(scope='module')
def recording(tiny_recordings, tmp_path_factory):
    """The tiny test recording as a stereo WAV at WAV_RATE and its words as an
    ASR file; 'samples' and 'words' are the originals (1000 Hz)."""
    directory = tmp_path_factory.mktemp('predict_input')
    original = tiny_recordings[RECORDING]
    stereo = np.stack([original['samples'], 0.5 * original['samples']], axis=1)
    wav = str(directory / 'call.wav')
    soundfile.write(wav, soxr.resample(stereo, 1000, WAV_RATE), WAV_RATE, subtype='FLOAT')
    words = str(directory / 'asr.csv')
    helper.write_csv(words, ('start', 'end', 'word'), original['words'])
    return {'wav': wav, 'words_file': words, 'duration': soundfile.info(wav).duration,
            'samples': original['samples'], 'words': original['words']}


@pytest.fixture(scope='module')
def cli_runs(model, recording, tmp_path_factory):
    """predict.py run as a command, with --checkpoint and with --saved_model,
    on the same recording and words."""
    directory = tmp_path_factory.mktemp('predict_cli')
    runs = {}
    for name, source in (('checkpoint', ['--checkpoint', model['train_dir']]),
                         ('saved_model', ['--saved_model', model['export_dir']])):
        paths = {key: str(directory / ('%s.%s' % (name, key))) for key in ('csv', 'png', 'json')}
        result = run_script('predict.py', *source, '--audio', recording['wav'],
                            '--words', recording['words_file'], '--output', paths['csv'],
                            '--plot', paths['png'], '--json', paths['json'], '--device', -1)
        assert result.returncode == 0, result.stderr
        runs[name] = paths
    return runs


@pytest.fixture(scope='module')
def predictor(model):
    with predict.Predictor.from_checkpoint(model['train_dir'], device=-1) as loaded:
        yield loaded


# predict.py's own flags. A script imported into this process after it may
# redefine a flag of the same name (allow_override) with another default, e.g.
# eval.py's --checkpoint; predict.main must see its own.
PREDICT_FLAGS = {flag.name: flag for flag in FLAGS.get_key_flags_for_module(predict)}


def run_main(capsys, *args):
    """predict.main with this command line, in this process: (status, stderr);
    a usage error gives ('usage', its message)."""
    replaced = {name: FLAGS[name] for name, flag in PREDICT_FLAGS.items()
                if FLAGS[name] is not flag}
    saved_logging = logging.root.handlers[:], logging.root.level
    was_parsed = FLAGS.is_parsed()
    FLAGS.unparse_flags()
    try:
        for name in replaced:
            FLAGS[name] = PREDICT_FLAGS[name]
        FLAGS(['predict.py', '--device', '-1'] + [str(a) for a in args])
        status = predict.main([])
    except app.UsageError as error:
        return 'usage', str(error)
    finally:
        FLAGS.unparse_flags()
        for name, flag in replaced.items():
            FLAGS[name] = flag
        if was_parsed:
            FLAGS.mark_as_parsed()
        logging.root.handlers[:] = saved_logging[0]
        logging.root.setLevel(saved_logging[1])
    return status, capsys.readouterr().err


# --------------------------------------------------------------------------
# The timeline
# --------------------------------------------------------------------------
def test_saved_model_gives_the_checkpoints_timeline(cli_runs):
    timestamps, from_checkpoint = read_timeline(cli_runs['checkpoint']['csv'])
    saved_timestamps, from_saved_model = read_timeline(cli_runs['saved_model']['csv'])
    np.testing.assert_array_equal(timestamps, saved_timestamps)
    assert np.max(np.abs(from_checkpoint - from_saved_model)) <= TOLERANCE
    # A constant output would make the comparison empty.
    assert np.ptp(from_checkpoint, axis=0).min() > 1e-3


def test_one_row_per_250_ms_over_the_whole_audio(cli_runs, recording):
    with open(cli_runs['checkpoint']['csv'], encoding='utf-8') as handle:
        assert handle.readline().strip() == 'timestamp,arousal,valence'
    timestamps, values = read_timeline(cli_runs['checkpoint']['csv'])
    frames = math.ceil(recording['duration'] / 0.25)
    # The recording ends 100 ms into its last frame, which must still get a row.
    assert frames * 0.25 - recording['duration'] == pytest.approx(0.15)
    np.testing.assert_array_equal(timestamps, np.arange(frames) * 250)
    assert np.all(np.abs(values) < 1)


def test_plot_and_summary(cli_runs, recording):
    with open(cli_runs['checkpoint']['png'], 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
    summary = helper.read_json(cli_runs['saved_model']['json'])
    assert summary['text'] == 'words'
    assert summary['words'] == len(recording['words'])
    assert summary['sample_rate'] == 1000
    assert summary['frames'] == math.ceil(recording['duration'] / 0.25)
    assert summary['model']['step'] == STEPS
    timestamps, values = read_timeline(cli_runs['saved_model']['csv'])
    assert summary['mean']['valence'] == pytest.approx(values[:, 1].mean(), abs=1e-5)


def test_words_reach_the_model(predictor, recording):
    samples = recording['samples']
    # Speech starts after 2 s, so that the first frames have no word.
    words = [(start + 2, end + 2, word) for start, end, word in recording['words']
             if end + 2 < recording['duration']]
    audio, embeddings = predictor.model_inputs(samples, words)
    first_word_frame = int(words[0][0] // 0.25)
    assert first_word_frame >= 8
    vectors = predictor.embedder.vectors([word for _, _, word in words])
    # The frame in the middle of each word carries that word's vector.
    for (start, end, _), vector in zip(words, vectors):
        np.testing.assert_array_equal(embeddings[int((start + end) / 2 // 0.25)], vector)
    assert not embeddings[:first_word_frame].any()

    _, with_words = predictor.timeline(samples, words)
    _, acoustic_only = predictor.timeline(samples)
    # The LSTM runs forwards: frames before the first word cannot differ.
    np.testing.assert_allclose(with_words[:first_word_frame], acoustic_only[:first_word_frame],
                               atol=1e-6)
    assert np.max(np.abs(with_words - acoustic_only)) > 1e-3


def test_without_text_the_model_hears_only_audio(model, recording, cli_runs, tmp_path, capsys):
    output, summary_path = tmp_path / 'none.csv', tmp_path / 'none.json'
    status, stderr = run_main(capsys, '--checkpoint', model['train_dir'], '--audio',
                              recording['wav'], '--output', output, '--json', summary_path)
    assert status == 0, stderr
    assert 'acoustic only' in stderr
    summary = helper.read_json(str(summary_path))
    assert (summary['text'], summary['words']) == ('none', None)
    _, acoustic_only = read_timeline(str(output))
    _, with_words = read_timeline(cli_runs['checkpoint']['csv'])
    assert acoustic_only.shape == with_words.shape
    assert np.max(np.abs(acoustic_only - with_words)) > 1e-3


def test_asr_tokens_are_normalised(tmp_path):
    path = tmp_path / 'asr.csv'
    path.write_text('start,end,word\n0.0,0.5,Great!\n\n0.5,0.6,<laugh>\n1.0,2.0,e-mail\n')
    words = predict.read_words(str(path))
    # The filler is left out; e-mail shares its span by character length.
    assert [word for _, _, word in words] == ['great', 'e', 'mail']
    np.testing.assert_allclose([span for *span, _ in words], [[0.0, 0.5], [1.0, 1.2], [1.2, 2.0]])


def test_transcript_is_aligned(model, tmp_path, capsys):
    wav = tmp_path / 'spoken.wav'
    subprocess.run(['espeak', '-w', str(wav), SENTENCE], check=True, capture_output=True)
    duration = soundfile.info(str(wav)).duration
    transcript = tmp_path / 'transcript.csv'
    transcript.write_text('start,end,sentence\n0.0,%.3f,"%s."\n'
                          % (duration, SENTENCE.capitalize()))
    output, summary_path = tmp_path / 'spoken.csv', tmp_path / 'spoken.json'
    status, stderr = run_main(capsys, '--saved_model', model['export_dir'], '--audio', wav,
                              '--transcript', transcript, '--output', output, '--json',
                              summary_path)
    assert status == 0, stderr
    summary = helper.read_json(str(summary_path))
    assert summary['text'] == 'transcript'
    assert summary['words'] == len(SENTENCE.split())
    assert summary['fallback_sentences'] == 0   # aeneas aligned it, no spreading
    timestamps, _ = read_timeline(str(output))
    assert len(timestamps) == math.ceil(duration / 0.25)


def test_steps_selects_the_checkpoint(model, recording):
    outputs = {}
    for steps in (0, STEPS):
        with predict.Predictor.from_checkpoint(model['train_dir'], steps, device=-1) as loaded:
            assert loaded.description['step'] == steps
            outputs[steps] = loaded.timeline(recording['samples'], recording['words'])[1]
    assert np.max(np.abs(outputs[0] - outputs[STEPS])) > 1e-4


# --------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------
def test_export_layout_and_signature(model, predictor, recording):
    assert helper.list_dir(model['export_dir']) == [str(STEPS)]   # no staging left over
    version_dir = os.path.join(model['export_dir'], str(STEPS))
    assert sorted(os.listdir(os.path.join(version_dir, 'assets.extra'))) == [
        'dataset.json', 'embeddings', 'model.json']
    tf = models.tf
    graph = tf.Graph()
    with tf.Session(graph=graph) as session:
        meta_graph = tf.saved_model.loader.load(session, ['serve'], version_dir)
        signature = meta_graph.signature_def['serving_default']
        assert signature.method_name == 'tensorflow/serving/predict'
        tensors = list(signature.inputs.items()) + list(signature.outputs.items())
        shapes = {name: [d.size for d in info.tensor_shape.dim] for name, info in tensors}
        assert shapes == {'audio': [-1, -1, 250], 'embeddings': [-1, -1, 8],
                          'arousal': [-1, -1], 'valence': [-1, -1]}
        # A batch of two recordings of the same length: each as if alone.
        audio, embeddings = predictor.model_inputs(recording['samples'], recording['words'])
        batch = {'audio': np.stack([audio, audio[::-1]]),
                 'embeddings': np.stack([embeddings, embeddings[::-1]])}
        outputs = session.run(
            {name: signature.outputs[name].name for name in ('arousal', 'valence')},
            {signature.inputs[name].name: value for name, value in batch.items()})
    for index in range(2):
        alone = predictor.predict(batch['audio'][index], batch['embeddings'][index])
        served = np.stack([outputs['arousal'][index], outputs['valence'][index]], axis=1)
        assert np.max(np.abs(served - alone)) <= TOLERANCE


TF2_LOAD = '''
import json, sys
import numpy as np
import tensorflow as tf
arrays = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
out = serve(audio=tf.constant(arrays['audio']), embeddings=tf.constant(arrays['embeddings']))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
'''


def test_export_loads_in_tensorflow_2(model, predictor, recording, tmp_path):
    """tf.saved_model.load in eager mode, as TF2 code (and TF Serving's loader) reads it."""
    audio, embeddings = predictor.model_inputs(recording['samples'], recording['words'])
    arrays = str(tmp_path / 'inputs.npz')
    np.savez(arrays, audio=audio[None], embeddings=embeddings[None])
    # A plain TensorFlow 2 process: Keras 3, eager, none of helper.py's settings.
    environment = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
    result = subprocess.run([PYTHON, '-c', TF2_LOAD, os.path.join(model['export_dir'], str(STEPS)),
                             arrays], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    expected = predictor.predict(audio, embeddings)
    for index, name in enumerate(helper.DIMENSIONS):
        assert np.max(np.abs(np.array(served[name][0]) - expected[:, index])) <= TOLERANCE


# --------------------------------------------------------------------------
# Bad input: a clear message, a non-zero exit, no output file
# --------------------------------------------------------------------------
def _checkpoint_without_dataset(model, directory):
    copy = directory / 'no_dataset'
    shutil.copytree(model['train_dir'], copy)
    os.remove(copy / 'dataset.json')
    return ['--checkpoint', copy]


BAD_TEXT = {
    # (text flag, case): (file content, what the message must say)
    ('words', 'end_before_start'): ('start,end,word\n0.5,0.9,fast\n2.0,1.5,slow\n', 'row 3'),
    ('words', 'negative_time'): ('start,end,word\n-0.5,0.5,fast\n', 'row 2'),
    ('words', 'not_a_number'): ('start,end,word\n0.5,soon,fast\n', "'soon' is not a valid float"),
    ('words', 'empty_word'): ('start,end,word\n0.5,0.9,fast\n1.0,1.5,\n', 'row 3: empty word'),
    ('words', 'wrong_header'): ('begin,end,word\n0.5,0.9,fast\n', 'header is begin,end,word'),
    ('transcript', 'end_before_start'): ('start,end,sentence\n2.0,1.0,the seat is great\n',
                                         'row 2'),
    ('transcript', 'past_the_audio'): ('start,end,sentence\n0.0,60.0,the seat is great\n',
                                       'past the end'),
}


@pytest.mark.parametrize('text_flag, case', sorted(BAD_TEXT))
def test_bad_text_file(text_flag, case, model, recording, tmp_path, capsys):
    content, message = BAD_TEXT[text_flag, case]
    text = tmp_path / 'text.csv'
    text.write_text(content)
    output = tmp_path / 'out' / 'timeline.csv'
    status, stderr = run_main(capsys, '--checkpoint', model['train_dir'], '--audio',
                              recording['wav'], '--' + text_flag, text, '--output', output)
    assert status == 1
    assert str(text) in stderr and message in stderr
    assert not output.parent.exists() or not os.listdir(output.parent)


BAD_SETUPS = {
    # name: (arguments from (model, recording, tmp_path), expected status, message)
    'unreadable_audio': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--audio',
                                          _write(d / 'noise.wav', b'not audio at all')],
                         1, 'unreadable audio'),
    'missing_audio': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--audio', d / 'gone.wav'],
                      1, 'gone.wav: file not found'),
    'empty_audio': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--audio',
                                     _empty_wav(d / 'empty.wav')], 1, 'audio is empty'),
    'checkpoint_without_dataset_json': (
        lambda m, r, d: _checkpoint_without_dataset(m, d) + ['--audio', r['wav']],
        1, 'dataset.json: file not found'),
    'missing_step': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--steps', 99,
                                      '--audio', r['wav']],
                     1, 'no checkpoint for step 99; available steps: 0, %d' % STEPS),
    'not_a_saved_model': (lambda m, r, d: ['--saved_model', m['train_dir'], '--audio', r['wav']],
                          1, 'no saved_model.pb'),
    'both_models': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--saved_model',
                                     m['export_dir'], '--audio', r['wav']],
                    'usage', 'exactly one of --checkpoint and --saved_model'),
    'no_model': (lambda m, r, d: ['--audio', r['wav']],
                 'usage', 'exactly one of --checkpoint and --saved_model'),
    'words_and_transcript': (lambda m, r, d: ['--checkpoint', m['train_dir'], '--audio', r['wav'],
                                              '--words', r['words_file'], '--transcript',
                                              r['words_file']],
                             'usage', 'at most one of --transcript and --words'),
}


def _write(path, content):
    path.write_bytes(content)
    return path


def _empty_wav(path):
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    return path


@pytest.mark.parametrize('case', sorted(BAD_SETUPS))
def test_bad_setup(case, model, recording, tmp_path, capsys):
    arguments, expected_status, message = BAD_SETUPS[case]
    output = tmp_path / 'out' / 'timeline.csv'
    status, stderr = run_main(capsys, *arguments(model, recording, tmp_path),
                              '--output', output)
    assert status == expected_status
    assert message in stderr
    assert not output.parent.exists() or not os.listdir(output.parent)


def test_command_line_exit_status(model, recording, tmp_path):
    """The same errors as a command: exit status 1, message on stderr, no file."""
    words = tmp_path / 'asr.csv'
    words.write_text(BAD_TEXT['words', 'end_before_start'][0])
    output = tmp_path / 'timeline.csv'
    bad_row = run_script('predict.py', '--checkpoint', model['train_dir'], '--audio',
                         recording['wav'], '--words', words, '--output', output, '--device', -1)
    assert bad_row.returncode == 1
    assert '%s, row 3' % words in bad_row.stderr
    both = run_script('predict.py', '--checkpoint', model['train_dir'], '--saved_model',
                      model['export_dir'], '--audio', recording['wav'], '--output', output)
    assert both.returncode == 1
    assert 'exactly one of --checkpoint and --saved_model' in both.stderr
    assert sorted(os.listdir(tmp_path)) == ['asr.csv']
