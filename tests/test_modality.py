"""--modality (both, audio, text) and ablation.py on the tiny dataset
(tests/conftest.py): the model's first layers get zeros in place of the input
it must not hear, in the inference graph and in the graph train.py trained;
model.json records the modality; eval.py and the Predictor refuse another one
unless allowed; an export keeps it; ablation.py's results aggregate its runs.
Scripts run as commands; their logic is imported from ser.

One ablation (2 seeds x 3 modalities, 2 steps each) is run once and its
training directories serve the other tests as checkpoints of each modality."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import helper
import models
from ser import ablation, evaluation, export, inference, training
from ser import defaults
from ser import checkpoints
from ser import mixed_precision
from ser import paths

tf = models.tf
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S, E = 250, 8                      # the tiny dataset's frame samples and embedding size
SEEDS = (0, 1)
# --noskip_padding: train.py's other way, end to end (its default runs in test_train_eval).
ABLATION_FLAGS = ['--seeds', ','.join(map(str, SEEDS)), '--max_steps', 2, '--sequence_length', 16,
                  '--batch_size', 2, '--hidden_units', 16, '--device', -1, '--noskip_padding']
RECORDING = '4_0'                  # the tiny dataset's test segment


def script(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, name)] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def layer_input(graph, scope, op_type):
    """The tensor a layer's one `op_type` op (its matrix product or convolution)
    takes: what the layer actually receives."""
    ops = [op for op in graph.get_operations()
           if op.name.startswith(scope + '/') and op.type == op_type]
    assert len(ops) == 1, [op.name for op in ops]
    return ops[0].inputs[0]


def first_layer_inputs(graph):
    """(waveform into the first convolution, embeddings into their projection)."""
    return (layer_input(graph, 'model/acoustic/conv1', 'Conv2D'),
            layer_input(graph, 'model/fusion_input/project_y', 'MatMul'))


# --------------------------------------------------------------------------
# The model: what reaches the first layers
# --------------------------------------------------------------------------
def inference_graph(modality, seed=0):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        audio, embeddings = models.inference_inputs(S, E)
        predictions = models.build_model(audio, embeddings, 16, is_training=False,
                                         modality=modality)
    return graph, audio, embeddings, predictions


def random_inputs(seed, frames=12):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (2, frames, S)).astype(np.float32),
            rng.normal(size=(2, frames, E)).astype(np.float32))


@pytest.mark.parametrize('modality', defaults.MODALITIES)
def test_the_first_layers_receive_zeros_for_the_input_not_heard(modality):
    graph, audio, embeddings, predictions = inference_graph(modality)
    heard_audio, heard_embeddings = first_layer_inputs(graph)
    feeds = [random_inputs(seed) for seed in (1, 2)]
    with tf.Session(graph=graph) as session:
        session.run(tf.global_variables_initializer())
        runs = [session.run([heard_audio, heard_embeddings, predictions],
                            {audio: a, embeddings: e}) for a, e in feeds]
        # The other feed's audio with the first feed's embeddings, and vice versa.
        mixed = {'audio': session.run(predictions, {audio: feeds[1][0], embeddings: feeds[0][1]}),
                 'embeddings': session.run(predictions, {audio: feeds[0][0],
                                                         embeddings: feeds[1][1]})}
    for (fed_audio, fed_embeddings), (got_audio, got_embeddings, _) in zip(feeds, runs):
        got_audio, got_embeddings = got_audio.reshape(2, -1, S), got_embeddings.reshape(2, -1, E)
        expected_audio = np.zeros_like(fed_audio) if modality == 'text' else fed_audio
        expected_embeddings = (np.zeros_like(fed_embeddings) if modality == 'audio'
                               else fed_embeddings)
        np.testing.assert_array_equal(got_audio, expected_audio)
        np.testing.assert_array_equal(got_embeddings, expected_embeddings)
    # Changing an input the model does not hear changes nothing; one it hears does.
    first = runs[0][2]
    for changed, heard in (('audio', modality != 'text'), ('embeddings', modality != 'audio')):
        difference = np.max(np.abs(mixed[changed] - first))
        assert (difference > 1e-4) if heard else (difference == 0), (changed, difference)


def test_same_seed_same_start_whatever_the_modality():
    """The three runs of one seed differ only in what the model hears."""
    values = []
    for modality in defaults.MODALITIES:
        graph = inference_graph(modality, seed=3)[0]
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            with graph.as_default():
                values.append(session.run({v.op.name: v for v in models.model_variables()}))
    for other in values[1:]:
        assert sorted(other) == sorted(values[0])
        for name in values[0]:
            np.testing.assert_array_equal(other[name], values[0][name], err_msg=name)


def test_an_unknown_modality_is_refused():
    graph = tf.Graph()
    with graph.as_default(), pytest.raises(ValueError, match='video'):
        models.select_modality(*models.inference_inputs(S, E), 'video')


def test_model_json_needs_a_known_modality(tmp_path):
    helper.write_json(str(tmp_path / 'model.json'),
                      {'hidden_units': 16, 'frame_samples': S, 'embedding_dim': E})
    with pytest.raises(helper.InputError, match='modality None'):
        checkpoints.read_model_config(str(tmp_path))
    helper.write_json(str(tmp_path / 'model.json'), {'hidden_units': 16, 'frame_samples': S,
                                                     'embedding_dim': E, 'modality': 'video'})
    with pytest.raises(helper.InputError, match='video'):
        checkpoints.read_model_config(str(tmp_path))


def test_paired_differences_and_expectations_from_hand_made_runs():
    records = [{'modality': m, 'seed': seed, 'ccc': {'arousal': a, 'valence': v},
                'mean_ccc': (a + v) / 2, 'train_seconds': 60, 'eval_seconds': 1}
               for m, seed, a, v in (('audio', 0, 0.6, 0.1), ('audio', 1, 0.7, 0.2),
                                     ('audio', 2, 0.65, 0.1),
                                     ('text', 0, 0.1, 0.5), ('text', 1, 0.2, 0.6),
                                     ('text', 2, 0.1, 0.55))]
    summary = ablation.summarise(records, ['audio', 'text'])
    assert summary['audio']['arousal']['mean'] == pytest.approx(0.65)
    assert summary['audio']['arousal']['std'] == pytest.approx(0.05)
    paired = ablation.differences(records)
    assert list(paired) == ['audio-text']
    assert paired['audio-text']['arousal']['mean'] == pytest.approx(0.65 - 0.4 / 3)
    assert paired['audio-text']['valence']['significant']
    checks = {c['claim']: c['holds'] for c in ablation.check_expectations(paired)}
    assert checks == {'audio alone beats text alone on arousal': True,
                      'text alone beats audio alone on valence': True}


def test_a_schedule_is_stored_with_its_keys_in_order_and_an_absolute_dataset_dir():
    # run.json of earlier ablations must still compare equal, key for key.
    stored = ablation.Schedule(dataset_dir='data', portion='test', max_steps=2,
                               learning_rate=1e-3, sequence_length=16, batch_size=2,
                               hidden_units=8).as_json()
    assert list(stored) == ['dataset_dir', 'portion', 'max_steps', 'learning_rate',
                            'sequence_length', 'batch_size', 'hidden_units', 'windows',
                            'precision', 'skip_padding']
    assert stored['dataset_dir'] == os.path.abspath('data')
    assert (stored['windows'], stored['precision'], stored['skip_padding']) == (
        defaults.WINDOWS, defaults.PRECISION, True)


def test_a_single_modality_report_is_titled_by_its_training_options():
    plan = ablation.Schedule(dataset_dir='data', portion='test', max_steps=2, learning_rate=1e-3,
                             sequence_length=16, batch_size=2, hidden_units=8, windows='packed',
                             precision='bf16', skip_padding=False).as_json()
    assert (plan['windows'], plan['precision'], plan['skip_padding']) == ('packed', 'bf16', False)
    assert ablation.title({'modalities': ['both'], 'schedule': plan}) == \
        '# Test CCC of the model hearing both: packed windows, padding computed, bf16'
    assert ablation.title({'modalities': ['both', 'audio'], 'schedule': plan}) == \
        '# Ablation: does the semantic branch help?'


# --------------------------------------------------------------------------
# One small ablation; its runs are the checkpoints of the tests below
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ablation_run(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp('ablation')
    output_dir, report = str(root / 'ablation'), str(root / 'RESULTS.md')
    result = script('ablation.py', '--dataset_dir', tiny_dataset, '--output_dir', output_dir,
                    '--report', report, *ABLATION_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return {'output_dir': output_dir, 'report': report, 'stdout': result.stdout,
            'results': helper.read_json(os.path.join(output_dir, 'results.json'))}


def run_dir(ablation_run, modality, seed=0):
    return os.path.join(ablation_run['output_dir'], 'runs', '%s_seed%d' % (modality, seed))


@pytest.mark.slow
def test_ablation_results_aggregate_the_runs(ablation_run):
    results = ablation_run['results']
    assert len(results['runs']) == len(SEEDS) * 3 and results['failed'] == []
    scores = {}
    for modality in defaults.MODALITIES:
        for seed in SEEDS:
            directory = run_dir(ablation_run, modality, seed)
            assert checkpoints.read_model_config(directory)['modality'] == modality
            # The schedule's training options reach train.py.
            log = open(os.path.join(directory, 'log_train.txt'), encoding='utf-8').read()
            for option in ('windows = per_segment', 'precision = auto', 'skip_padding = False'):
                assert option in log, option
            metrics = helper.read_json(os.path.join(directory, 'eval_test.json'))
            assert (metrics['modality'], metrics['step']) == (modality, 2)
            scores[modality, seed] = dict(metrics['ccc'], mean_ccc=metrics['mean_ccc'])
    report = open(ablation_run['report'], encoding='utf-8').read()
    for modality in defaults.MODALITIES:
        summary = results['summary'][modality]
        assert summary['seeds'] == list(SEEDS)
        cells = []
        for name in paths.DIMENSIONS + ('mean_ccc',):
            values = [scores[modality, seed][name] for seed in SEEDS]
            assert summary[name]['mean'] == pytest.approx(np.mean(values), abs=1e-9)
            assert summary[name]['std'] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
            cells.append('%.3f ± %.3f' % (np.mean(values), np.std(values, ddof=1)))
        assert summary['train_minutes']['mean'] > 0
        # The report's table shows the same numbers.
        assert '| %s | %s |' % (modality, ' | '.join(cells)) in report
    for first, second in ablation.COMPARISONS:
        for name in paths.DIMENSIONS:
            paired = [scores[first, seed][name] - scores[second, seed][name] for seed in SEEDS]
            difference = results['differences']['%s-%s' % (first, second)][name]
            assert difference['mean'] == pytest.approx(np.mean(paired), abs=1e-9)
            assert difference['std'] == pytest.approx(np.std(paired, ddof=1), abs=1e-9)
    assert 'Machine:' in report and '2 steps' in report and 'Interpretation' in report
    # What --precision auto chose on this machine, in each record and the report.
    chosen = mixed_precision.choose_precision('auto', -1)
    assert {record['precision'] for record in results['runs']} == {chosen}
    assert 'trained in auto (%s)' % chosen in report


@pytest.mark.slow
def test_ablation_rerun_skips_finished_runs_keeps_notes_and_refuses_another_schedule(
        ablation_run, tiny_dataset, tmp_path):
    output_dir, report = str(tmp_path / 'ablation'), str(tmp_path / 'RESULTS.md')
    shutil.copytree(ablation_run['output_dir'], output_dir)
    notes = '## Notes\n\nWritten by hand.\n'
    with open(report, 'w', encoding='utf-8') as handle:
        handle.write('old report\n\n' + notes)
    trained = {path: os.path.getmtime(path) for path in
               (os.path.join(output_dir, 'runs', name, 'train.out')
                for name in os.listdir(os.path.join(output_dir, 'runs')))}

    rerun = script('ablation.py', '--dataset_dir', tiny_dataset, '--output_dir', output_dir,
                   '--report', report, *ABLATION_FLAGS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr.count('done before, skipped') == len(SEEDS) * 3
    assert {path: os.path.getmtime(path) for path in trained} == trained
    assert helper.read_json(os.path.join(output_dir, 'results.json'))['runs'] == \
        ablation_run['results']['runs']
    text = open(report, encoding='utf-8').read()
    assert text.startswith('# Ablation') and text.endswith(notes)

    other = script('ablation.py', '--dataset_dir', tiny_dataset, '--output_dir', output_dir,
                   '--report', report, *(ABLATION_FLAGS + ['--learning_rate', 0.1]))
    assert other.returncode != 0
    assert 'another schedule' in other.stderr
    assert open(report, encoding='utf-8').read() == text


# --------------------------------------------------------------------------
# train.py
# --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('modality, silenced', [('text', 'audio'), ('audio', 'embeddings')])
def test_the_graph_train_py_trained_receives_zeros(ablation_run, modality, silenced):
    """The training graph saved with the checkpoint, run on its own input
    pipeline: the batch holds sound and words, the first layers get zeros
    for the input the modality leaves out."""
    graph = tf.Graph()
    with graph.as_default():
        tf.train.import_meta_graph(os.path.join(run_dir(ablation_run, modality),
                                                'model.ckpt-2.meta'))
        heard = dict(zip(('audio', 'embeddings'), first_layer_inputs(graph)))
        # What the input pipeline delivered: the [B,T,*] tensors of its one dequeue.
        dequeues = [op for op in graph.get_operations() if op.type.startswith('QueueDequeue')]
        assert len(dequeues) == 1, [op.name for op in dequeues]
        batch = {int(t.shape[-1]): t for t in dequeues[0].outputs if t.shape.rank == 3}
        delivered = {'audio': batch[S], 'embeddings': batch[E]}
        with tf.Session(graph=graph) as session:
            coordinator = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(session, coordinator)
            try:
                heard, delivered = session.run([heard, delivered])
            finally:
                coordinator.request_stop()
                coordinator.join(threads)
    kept = 'embeddings' if silenced == 'audio' else 'audio'
    assert np.abs(delivered[silenced]).max() > 0.01
    assert not heard[silenced].any()
    np.testing.assert_array_equal(heard[kept].ravel(), delivered[kept].ravel())


@pytest.mark.slow
def test_train_refuses_to_resume_with_another_modality(ablation_run, tiny_dataset, tmp_path):
    train_dir = str(tmp_path / 'text')
    shutil.copytree(run_dir(ablation_run, 'text'), train_dir)
    with pytest.raises(helper.InputError,
                       match="trained with modality 'text', not --modality=both"):
        training.prepare_train_dir(tiny_dataset, train_dir, 16, 'both')
    assert checkpoints.read_model_config(train_dir)['modality'] == 'text'
    training.prepare_train_dir(tiny_dataset, train_dir, 16, 'text')


# --------------------------------------------------------------------------
# eval.py
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_refuses_another_modality_unless_allowed(ablation_run, tiny_dataset, tmp_path):
    checkpoint = run_dir(ablation_run, 'audio')
    outputs = {}
    for name, extra in (('refused', []), ('allowed', ['--allow_modality_mismatch'])):
        outputs[name] = str(tmp_path / name)
        outputs[name + '_result'] = script(
            'eval.py', '--dataset_dir', tiny_dataset, '--checkpoint', checkpoint, '--portion',
            'test', '--device', -1, '--modality', 'both', '--json', outputs[name] + '.json',
            '--predictions_dir', outputs[name], '--noplots', *extra)
    refused = outputs['refused_result']
    assert refused.returncode != 0
    assert "trained with modality 'audio', not 'both'" in refused.stderr
    assert '--allow_modality_mismatch' in refused.stderr
    assert not os.path.exists(outputs['refused'] + '.json')

    assert outputs['allowed_result'].returncode == 0, outputs['allowed_result'].stderr[-3000:]
    allowed = helper.read_json(outputs['allowed'] + '.json')
    own = helper.read_json(os.path.join(checkpoint, 'eval_test.json'))
    assert (allowed['modality'], own['modality']) == ('both', 'audio')
    # Hearing the words too changes the predictions of the same weights.
    with_words = np.loadtxt(evaluation.prediction_path(outputs['allowed'], RECORDING),
                            delimiter=',', skiprows=1)
    without = np.loadtxt(evaluation.prediction_path(
        os.path.join(checkpoint, 'predictions', 'test'), RECORDING), delimiter=',', skiprows=1)
    assert np.max(np.abs(with_words[:, 1:3] - without[:, 1:3])) > 1e-4


# --------------------------------------------------------------------------
# predict.py and export_model.py
# --------------------------------------------------------------------------
def other_sound(samples):
    return np.random.default_rng(7).normal(0, 0.3, len(samples)).astype(np.float32)


@pytest.mark.slow
def test_predict_hears_what_the_model_was_trained_to_hear(ablation_run, tiny_recordings):
    samples, words = tiny_recordings[RECORDING]['samples'], tiny_recordings[RECORDING]['words']
    with inference.Predictor.from_checkpoint(run_dir(ablation_run, 'text'), device=-1) as text:
        assert text.description['modality'] == 'text'
        reference = text.timeline(samples, words)[1]
        np.testing.assert_array_equal(text.timeline(other_sound(samples), words)[1], reference)
        assert np.max(np.abs(text.timeline(samples)[1] - reference)) > 1e-4
    with inference.Predictor.from_checkpoint(run_dir(ablation_run, 'audio'), device=-1) as audio:
        assert audio.description['modality'] == 'audio'
        reference = audio.timeline(samples, words)[1]
        np.testing.assert_array_equal(audio.timeline(samples)[1], reference)
        assert np.max(np.abs(audio.timeline(other_sound(samples), words)[1] - reference)) > 1e-4

    with pytest.raises(helper.InputError, match='--allow_modality_mismatch'):
        inference.Predictor.from_checkpoint(run_dir(ablation_run, 'text'), device=-1,
                                          modality='both')
    with inference.Predictor.from_checkpoint(run_dir(ablation_run, 'text'), device=-1,
                                           modality='both', allow_modality_mismatch=True) as both:
        assert both.description['modality'] == 'both'
        assert np.max(np.abs(both.timeline(other_sound(samples), words)[1]
                             - both.timeline(samples, words)[1])) > 1e-4


@pytest.mark.slow
def test_predict_command_refuses_another_modality(ablation_run, tiny_recordings, tmp_path):
    import soundfile
    wav, output = str(tmp_path / 'call.wav'), str(tmp_path / 'call.csv')
    soundfile.write(wav, tiny_recordings[RECORDING]['samples'], 1000, subtype='FLOAT')
    result = script('predict.py', '--checkpoint', run_dir(ablation_run, 'audio'), '--audio', wav,
                    '--output', output, '--modality', 'text', '--device', -1)
    assert result.returncode != 0
    assert "trained with modality 'audio', not 'text'" in result.stderr
    assert not os.path.exists(output)


@pytest.mark.slow
def test_export_keeps_the_modality_in_its_graph(ablation_run, tiny_recordings, tmp_path):
    samples, words = tiny_recordings[RECORDING]['samples'], tiny_recordings[RECORDING]['words']
    checkpoint = run_dir(ablation_run, 'text')
    version_dir = export.export(checkpoint, None, str(tmp_path / 'exported'))
    config = checkpoints.read_model_config(os.path.join(version_dir, 'assets.extra'))
    assert config['modality'] == 'text'
    with inference.Predictor.from_checkpoint(checkpoint, device=-1) as from_checkpoint:
        expected = from_checkpoint.timeline(samples, words)[1]
    with inference.Predictor.from_saved_model(version_dir, device=-1) as served:
        assert served.description['modality'] == 'text'
        np.testing.assert_allclose(served.timeline(samples, words)[1], expected, atol=1e-5)
        np.testing.assert_allclose(served.timeline(other_sound(samples), words)[1], expected,
                                   atol=1e-5)
    with pytest.raises(helper.InputError, match='fixed in its graph'):
        inference.Predictor.from_saved_model(version_dir, device=-1, modality='both')
