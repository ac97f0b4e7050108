"""predict.py, export_model.py and the library under them (ser.inference,
ser.export) on seeded random checkpoints at the tiny dataset's shapes (1000 Hz,
so 250 samples per frame; 8-value embeddings).

The logic is tested by calling ser.* in this process; the scripts, whose exit
status and files matter, run as commands (the slow tier)."""

import json
import math
import os
import shutil
import subprocess

from absl import app
import numpy as np
import pytest
import soundfile
import soxr

import helper
from model_fixtures import PYTHON, STEPS, run_script, write_random_checkpoint
from ser import dataset, export, inference
from ser import defaults
from ser import paths

TOLERANCE = 1e-4
RECORDING = '4_0'
# The WAV given to predict.py is stereo at another rate than the model's, so
# the rate must come from dataset.json and the channels be mixed down.
WAV_RATE = 8000
SENTENCE = 'the engine is quiet and the seat is great'


def read_timeline(path):
    rows = helper.read_table(path, [('timestamp', int), ('arousal', float), ('valence', float)])
    table = np.array(rows, dtype=np.float64)
    return table[:, 0].astype(np.int64), table[:, 1:]


# --------------------------------------------------------------------------
# Fixtures: a model, its export, one recording with its words
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def model(tiny_dataset, tmp_path_factory):
    """{'train_dir', 'export_dir'}: checkpoints 0 and 3, and the export of 3."""
    root = tmp_path_factory.mktemp('predict_model')
    train_dir = write_random_checkpoint(root / 'checkpoints', tiny_dataset)
    export_dir = str(root / 'exported')
    export.export(train_dir, None, export_dir)
    return {'train_dir': train_dir, 'export_dir': export_dir}


@pytest.fixture(scope='module')
def predictor(model):
    with inference.Predictor.from_checkpoint(model['train_dir'], device=-1) as loaded:
        yield loaded


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


# --------------------------------------------------------------------------
# The timeline, through the commands
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_saved_model_gives_the_checkpoints_timeline(cli_runs):
    timestamps, from_checkpoint = read_timeline(cli_runs['checkpoint']['csv'])
    saved_timestamps, from_saved_model = read_timeline(cli_runs['saved_model']['csv'])
    np.testing.assert_array_equal(timestamps, saved_timestamps)
    assert np.max(np.abs(from_checkpoint - from_saved_model)) <= TOLERANCE
    # A constant output would make the comparison empty.
    assert np.ptp(from_checkpoint, axis=0).min() > 1e-3


@pytest.mark.slow
def test_one_row_per_250_ms_over_the_whole_audio(cli_runs, recording):
    with open(cli_runs['checkpoint']['csv'], encoding='utf-8') as handle:
        assert handle.readline().strip() == 'timestamp,arousal,valence'
    timestamps, values = read_timeline(cli_runs['checkpoint']['csv'])
    frames = math.ceil(recording['duration'] / 0.25)
    # The recording ends 100 ms into its last frame, which must still get a row.
    assert frames * 0.25 - recording['duration'] == pytest.approx(0.15)
    np.testing.assert_array_equal(timestamps, np.arange(frames) * 250)
    assert np.all(np.abs(values) < 1)


@pytest.mark.slow
def test_plot_and_summary(cli_runs, recording):
    with open(cli_runs['checkpoint']['png'], 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
    summary = helper.read_json(cli_runs['saved_model']['json'])
    assert summary['text'] == 'words'
    assert summary['words'] == len(recording['words'])
    assert summary['sample_rate'] == 1000
    assert summary['frames'] == math.ceil(recording['duration'] / 0.25)
    assert summary['model']['step'] == STEPS[-1]
    _, values = read_timeline(cli_runs['saved_model']['csv'])
    assert summary['mean']['valence'] == pytest.approx(values[:, 1].mean(), abs=1e-5)


@pytest.mark.slow
def test_text_transcript_and_none(model, tmp_path):
    """--text and --transcript are aligned (by the phonetic aligner),
    none spread; --recognise hears words itself; without text the model
    hears zeros where the words were."""
    wav = tmp_path / 'spoken.wav'
    subprocess.run(['espeak', '-w', str(wav), SENTENCE], check=True, capture_output=True)
    duration = soundfile.info(str(wav)).duration
    transcript = tmp_path / 'sentences.csv'
    transcript.write_text('start,end,sentence\n0.0,%.3f,"%s."\n'
                          % (duration, SENTENCE.capitalize()))
    texts = {'text': ['--text', SENTENCE.upper() + '!'], 'transcript': ['--transcript', transcript],
             'recognised': ['--recognise'], 'none': []}
    timelines = {}
    for name, arguments in texts.items():
        output, summary_path = tmp_path / (name + '.csv'), tmp_path / (name + '.json')
        result = run_script('predict.py', '--saved_model', model['export_dir'], '--audio', wav,
                            *arguments, '--output', output, '--json', summary_path,
                            '--device', -1)
        assert result.returncode == 0, result.stderr
        summary = helper.read_json(str(summary_path))
        assert summary['text'] == name
        if name == 'none':
            assert summary['words'] is None
            assert 'acoustic only' in result.stderr
        elif name == 'recognised':
            assert summary['words'] >= 1 and 'word(s) recognised' in result.stderr
        else:
            assert summary['words'] == len(SENTENCE.split())
            assert summary['fallback_sentences'] == 0   # aligned, no spreading
        timestamps, timelines[name] = read_timeline(str(output))
        assert len(timestamps) == math.ceil(duration / 0.25)
    assert np.max(np.abs(timelines['text'] - timelines['none'])) > 1e-3
    assert np.max(np.abs(timelines['recognised'] - timelines['none'])) > 1e-3


@pytest.mark.slow
def test_command_line_errors(model, recording, tmp_path):
    """Bad input: exit status 1, the message on stderr, no output file; a
    flag of another script is refused."""
    words = tmp_path / 'asr.csv'
    words.write_text('start,end,word\n0.5,0.9,fast\n2.0,1.5,slow\n')
    output = tmp_path / 'timeline.csv'
    base = ['--audio', recording['wav'], '--output', output, '--device', -1]
    cases = [
        (['--checkpoint', model['train_dir'], '--words', words], '%s, row 3' % words),
        (['--checkpoint', model['train_dir'], '--saved_model', model['export_dir']],
         'exactly one of --checkpoint and --saved_model'),
        ([], 'exactly one of --checkpoint and --saved_model'),
        (['--checkpoint', model['train_dir'], '--words', words, '--text', 'fast slow'],
         'at most one of --text, --transcript and --words'),
        (['--checkpoint', model['train_dir'], '--language', 'klingon'],
         'not a language code espeak knows'),
        (['--checkpoint', model['train_dir'], '--recognise', '--text', 'fast slow'],
         '--recognise is for audio without text'),
        (['--checkpoint', model['train_dir'], '--recognise', '--language', 'deu'],
         '--recognise recognises English only'),
        (['--checkpoint', model['train_dir'], '--word2vec_epochs', 5],
         'Unknown command line flag \'word2vec_epochs\''),
    ]
    for arguments, message in cases:
        result = run_script('predict.py', *arguments, *base)
        assert result.returncode == 1, (arguments, result.stderr)
        assert message in result.stderr, arguments
    assert sorted(os.listdir(tmp_path)) == ['asr.csv']


# --------------------------------------------------------------------------
# The library: Predictor and the text inputs
# --------------------------------------------------------------------------
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


def test_steps_selects_the_checkpoint(model, recording):
    outputs = {}
    for steps in STEPS:
        with inference.Predictor.from_checkpoint(model['train_dir'], steps, device=-1) as loaded:
            assert loaded.description['step'] == steps
            outputs[steps] = loaded.timeline(recording['samples'], recording['words'])[1]
    assert np.max(np.abs(outputs[STEPS[0]] - outputs[STEPS[-1]])) > 1e-4


def test_the_model_is_chosen_by_keyword_as_predict_and_serve_choose_it(model):
    """ser.inference's checks of the options predict.py and serve.py share,
    and load_predictor of either source."""
    for choice, message in (
            (dict(checkpoint='c', saved_model='s', steps=None), 'exactly one of --checkpoint'),
            (dict(checkpoint=None, saved_model=None, steps=None), 'exactly one of --checkpoint'),
            (dict(checkpoint=None, saved_model='s', steps=3), '--steps goes with --checkpoint')):
        with pytest.raises(app.UsageError, match=message):
            inference.check_model_choice(**choice)
    inference.check_model_choice(checkpoint='c', saved_model=None, steps=3)
    with pytest.raises(app.UsageError, match='--recognise recognises English only'):
        inference.check_recognition_language(recognise=True, language='deu')
    inference.check_recognition_language(recognise=False, language='deu')
    inference.check_recognition_language(recognise=True, language='eng')
    with inference.load_predictor(checkpoint=model['train_dir'], steps=STEPS[0],
                                  device=-1) as loaded:
        assert loaded.description['step'] == STEPS[0]
    with inference.load_predictor(saved_model=model['export_dir'], device=-1) as loaded:
        assert loaded.description['step'] == STEPS[-1]


def test_asr_tokens_are_normalised(tmp_path):
    path = tmp_path / 'asr.csv'
    path.write_text('start,end,word\n0.0,0.5,Great!\n\n0.5,0.6,<laugh>\n1.0,2.0,e-mail\n')
    words = inference.read_words(str(path))
    # The filler is left out; e-mail shares its span by character length.
    assert [word for _, _, word in words] == ['great', 'e', 'mail']
    np.testing.assert_allclose([span for *span, _ in words], [[0.0, 0.5], [1.0, 1.2], [1.2, 2.0]])


BAD_TEXT = {
    # (reader, case): (file content, what the message must say)
    ('words', 'end_before_start'): ('start,end,word\n0.5,0.9,fast\n2.0,1.5,slow\n', 'row 3'),
    ('words', 'negative_time'): ('start,end,word\n-0.5,0.5,fast\n', 'row 2'),
    ('words', 'not_a_number'): ('start,end,word\n0.5,soon,fast\n', "'soon' is not a valid float"),
    ('words', 'empty_word'): ('start,end,word\n0.5,0.9,fast\n1.0,1.5,\n', 'row 3: empty word'),
    ('words', 'wrong_header'): ('begin,end,word\n0.5,0.9,fast\n', 'header is begin,end,word'),
    ('transcript', 'end_before_start'): ('start,end,sentence\n2.0,1.0,the seat is great\n',
                                         'row 2'),
    ('transcript', 'past_the_audio'): ('start,end,sentence\n0.0,60.0,the seat is great\n',
                                       'past the end'),
    ('transcript', 'no_words'): ('start,end,sentence\n0.0,1.0,<laugh>\n', 'has no words'),
}


@pytest.mark.parametrize('reader, case', sorted(BAD_TEXT))
def test_bad_text_file(reader, case, tmp_path):
    content, message = BAD_TEXT[reader, case]
    path = tmp_path / 'text.csv'
    path.write_text(content)
    with pytest.raises(helper.InputError) as error:
        if reader == 'words':
            inference.read_words(str(path))
        else:
            inference.read_transcript(str(path), duration=10.0)
    assert str(path) in str(error.value) and message in str(error.value)


def _checkpoint_without_dataset(model, directory):
    copy = directory / 'no_dataset'
    shutil.copytree(model['train_dir'], copy)
    os.remove(copy / 'dataset.json')
    return lambda: inference.Predictor.from_checkpoint(str(copy), device=-1)


BAD_MODELS = {
    'checkpoint_without_dataset_json': (_checkpoint_without_dataset, 'dataset.json: not found'),
    'missing_step': (lambda m, d: lambda: inference.Predictor.from_checkpoint(
        m['train_dir'], 99, device=-1), 'no checkpoint for step 99; available steps: 0, 3'),
    'not_a_saved_model': (lambda m, d: lambda: inference.Predictor.from_saved_model(
        m['train_dir'], device=-1), 'no saved_model.pb'),
    'saved_model_in_another_modality': (lambda m, d: lambda: inference.Predictor.from_saved_model(
        m['export_dir'], device=-1, modality='audio'), 'fixed in its graph'),
}


@pytest.mark.parametrize('case', sorted(BAD_MODELS))
def test_bad_model(case, model, tmp_path):
    make, message = BAD_MODELS[case]
    with pytest.raises(helper.InputError) as error:
        make(model, tmp_path)()
    assert message in str(error.value)


# --------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------
def test_export_layout_and_signature(model, predictor, recording):
    assert helper.list_dir(model['export_dir']) == [str(STEPS[-1])]   # no staging left over
    version_dir = os.path.join(model['export_dir'], str(STEPS[-1]))
    assert sorted(os.listdir(os.path.join(version_dir, 'assets.extra'))) == [
        'dataset.json', 'embeddings', 'model.json']
    tf = inference.tf
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


def test_a_moved_export_still_finds_its_word_vectors(model, predictor, recording, tmp_path):
    moved = tmp_path / 'elsewhere'
    shutil.copytree(model['export_dir'], moved)
    with inference.Predictor.from_saved_model(str(moved), device=-1) as loaded:
        assert loaded.dataset.embeddings_path.startswith(str(moved))
        _, served = loaded.timeline(recording['samples'], recording['words'])
    _, expected = predictor.timeline(recording['samples'], recording['words'])
    assert np.max(np.abs(served - expected)) <= TOLERANCE


TF2_LOAD = '''
import json, sys
import numpy as np
import tensorflow as tf
arrays = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
out = serve(audio=tf.constant(arrays['audio']), embeddings=tf.constant(arrays['embeddings']))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
'''


@pytest.mark.slow
def test_export_loads_in_tensorflow_2(model, predictor, recording, tmp_path):
    """tf.saved_model.load in eager mode, as TF2 code (and TF Serving's loader) reads it."""
    audio, embeddings = predictor.model_inputs(recording['samples'], recording['words'])
    arrays = str(tmp_path / 'inputs.npz')
    np.savez(arrays, audio=audio[None], embeddings=embeddings[None])
    # A plain TensorFlow 2 process: Keras 3, eager, none of helper.py's settings.
    environment = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
    result = subprocess.run([PYTHON, '-c', TF2_LOAD,
                             os.path.join(model['export_dir'], str(STEPS[-1])), arrays],
                            capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    expected = predictor.predict(audio, embeddings)
    for index, name in enumerate(paths.DIMENSIONS):
        assert np.max(np.abs(np.array(served[name][0]) - expected[:, index])) <= TOLERANCE


@pytest.mark.slow
def test_export_command(model, tmp_path):
    """export_model.py as a command: the version directory, a rerun skipped,
    --overwrite replacing it, a missing step refused."""
    export_dir = tmp_path / 'exported'
    arguments = ['--checkpoint', model['train_dir'], '--export_dir', export_dir]
    first = run_script('export_model.py', *arguments, '--steps', STEPS[0])
    assert first.returncode == 0, first.stderr
    assert os.listdir(export_dir) == [str(STEPS[0])]
    again = run_script('export_model.py', *arguments, '--steps', STEPS[0])
    assert again.returncode == 0 and 'skipped' in again.stderr
    replaced = run_script('export_model.py', *arguments, '--steps', STEPS[0], '--overwrite')
    assert replaced.returncode == 0, replaced.stderr
    assert os.listdir(export_dir) == [str(STEPS[0])]
    missing = run_script('export_model.py', *arguments, '--steps', 99)
    assert missing.returncode == 1
    assert 'no checkpoint for step 99' in missing.stderr


# --------------------------------------------------------------------------
# Chunks: long recordings in bounded memory, the one-pass timeline
# --------------------------------------------------------------------------
def long_recording(minutes, seed=0):
    """Noise at 1000 Hz whose loudness changes every few seconds, and a word
    every 2 s: (samples, words)."""
    rng = np.random.default_rng(seed)
    seconds = int(minutes * 60)
    loudness = np.repeat(rng.uniform(0.05, 1.0, seconds // 3 + 1), 3000)[:seconds * 1000]
    samples = (rng.standard_normal(seconds * 1000 + 130) * np.r_[loudness, loudness[:130]])
    vocabulary = ['engine', 'seat', 'great', 'awful', 'quiet', 'price']
    words = [(start + 0.3, start + 1.1, vocabulary[index % len(vocabulary)])
             for index, start in enumerate(range(0, seconds - 2, 2))]
    return samples.astype(np.float32), words


def test_the_convolutions_reach_less_than_a_frame():
    """123 samples back and 184 ahead of the 250 behind an acoustic output,
    from the conv widths 8, 6, 6 and pools 10, 5, 5: one frame of context on
    either side of a chunk is enough."""
    assert (inference.REACH_BEFORE, inference.REACH_AFTER) == (123, 184)


def test_chunks_of_any_size_give_the_one_pass_timeline(predictor, recording):
    samples, words = recording['samples'], recording['words']
    _, one_pass = predictor.timeline(samples, words, chunk_seconds=0)
    for seconds in (0.25, 1.75, 5.0, 9.75):
        _, chunked = predictor.timeline(samples, words, chunk_seconds=seconds)
        assert np.max(np.abs(chunked - one_pass)) <= TOLERANCE, seconds


def test_chunks_without_context_would_differ(predictor, recording):
    """Why the context frames: chunks cut without them change the frames at
    the cut (so the test above would catch a context that is lost)."""
    audio, vectors = predictor.model_inputs(recording['samples'], recording['words'])
    one_pass = predictor.predict(audio, vectors)
    first, state = predictor.run_chunk(audio[:20], vectors[:20])
    second, _ = predictor.run_chunk(audio[20:], vectors[20:], state=state)
    assert np.max(np.abs(np.concatenate([first, second]) - one_pass)) > 10 * TOLERANCE
    # The state alone carries the LSTM: with the context, the cut vanishes.
    first, state = predictor.run_chunk(audio[:21], vectors[:20], (0, 1))
    second, _ = predictor.run_chunk(audio[19:], vectors[20:], (1, 0), state)
    assert np.max(np.abs(np.concatenate([first, second]) - one_pass)) <= TOLERANCE


@pytest.mark.slow
def test_a_20_minute_recording_in_chunks_equals_one_pass(predictor):
    samples, words = long_recording(20)
    timestamps, one_pass = predictor.timeline(samples, words, chunk_seconds=0)
    assert len(timestamps) == 4801
    for seconds in (defaults.CHUNK_SECONDS, 7.75):
        chunked_timestamps, chunked = predictor.timeline(samples, words, chunk_seconds=seconds)
        np.testing.assert_array_equal(chunked_timestamps, timestamps)
        assert np.max(np.abs(chunked - one_pass)) <= TOLERANCE, seconds
    assert np.ptp(one_pass, axis=0).min() > 1e-3


def test_an_export_runs_in_chunks(model, predictor, recording):
    with inference.Predictor.from_saved_model(model['export_dir'], device=-1) as loaded:
        _, served = loaded.timeline(recording['samples'], recording['words'], chunk_seconds=1.75)
    _, expected = predictor.timeline(recording['samples'], recording['words'], chunk_seconds=0)
    assert np.max(np.abs(served - expected)) <= TOLERANCE


def test_an_export_without_the_chunk_signature_is_refused(model, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2
    stripped = tmp_path / 'stripped'
    shutil.copytree(os.path.join(model['export_dir'], str(STEPS[-1])), stripped)
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((stripped / 'saved_model.pb').read_bytes())
    del saved_model.meta_graphs[0].signature_def[inference.CHUNK_SIGNATURE_KEY]
    (stripped / 'saved_model.pb').write_bytes(saved_model.SerializeToString())
    with pytest.raises(helper.InputError, match="no 'chunk' signature .found: serving_default"):
        inference.Predictor.from_saved_model(str(stripped), device=-1)


@pytest.mark.slow
def test_chunk_seconds_on_the_command_line(model, recording, cli_runs, tmp_path):
    output, summary = tmp_path / 'chunked.csv', tmp_path / 'chunked.json'
    result = run_script('predict.py', '--checkpoint', model['train_dir'], '--audio',
                        recording['wav'], '--words', recording['words_file'], '--output', output,
                        '--json', summary, '--chunk_seconds', 1.25, '--device', -1)
    assert result.returncode == 0, result.stderr
    assert helper.read_json(str(summary))['chunk_seconds'] == 1.25
    timestamps, chunked = read_timeline(str(output))
    expected_timestamps, expected = read_timeline(cli_runs['checkpoint']['csv'])
    np.testing.assert_array_equal(timestamps, expected_timestamps)
    assert np.max(np.abs(chunked - expected)) <= TOLERANCE


def test_chunks_of_a_model_with_longer_frames(tmp_path, recording):
    """At S = 500 (2000 Hz) a context frame holds two blocks of 250 samples,
    of which the convolutions get only the one next to the chunk."""
    info = dataset.DatasetInfo.create(2000, 8, None)
    info.save(str(tmp_path / 'data'))
    checkpoint = write_random_checkpoint(tmp_path / 'model', str(tmp_path / 'data'), steps=(1,))
    samples = soxr.resample(recording['samples'], 1000, 2000).astype(np.float32)
    with inference.Predictor.from_checkpoint(checkpoint, device=-1) as predictor:
        assert predictor.frame_samples == 500
        _, one_pass = predictor.timeline(samples, chunk_seconds=0)
        for seconds in (0.25, 2.5):
            _, chunked = predictor.timeline(samples, chunk_seconds=seconds)
            assert np.max(np.abs(chunked - one_pass)) <= TOLERANCE, seconds
