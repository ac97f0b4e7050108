"""models.py: the structure of the paper, checked variable by variable against
shapes written out by hand, plus output range, dropout and input checks."""

import numpy as np
import pytest

import models

tf = models.tf


def expected_variables(S, E, hidden):
    """The paper's model for S samples and E embedding values per frame, written
    out layer by layer (name -> shape)."""
    lstm_input = 512
    return {
        # acoustic extractor: conv kernels are [width, in channels, filters]
        'model/acoustic/conv1/weights': [8, 1, 50], 'model/acoustic/conv1/biases': [50],
        'model/acoustic/conv2/weights': [6, 50, 125], 'model/acoustic/conv2/biases': [125],
        'model/acoustic/conv3/weights': [6, 125, 250], 'model/acoustic/conv3/biases': [250],
        # fuse(acoustic, embeddings): widths differ -> projections to 1024
        'model/fusion_input/project_x/weights': [S, 1024],
        'model/fusion_input/project_x/biases': [1024],
        'model/fusion_input/project_y/weights': [E, 1024],
        'model/fusion_input/project_y/biases': [1024],
        'model/fusion_input/score_vector': [1024], 'model/fusion_input/score_bias': [],
        # three parallel FC 512
        'model/hidden1/weights': [1024, 512], 'model/hidden1/biases': [512],
        'model/hidden2/weights': [1024, 512], 'model/hidden2/biases': [512],
        'model/hidden3/weights': [1024, 512], 'model/hidden3/biases': [512],
        # fuse(fuse(h1, h2), h3): equal widths, no projection
        'model/fusion_hidden12/score_vector': [512], 'model/fusion_hidden12/score_bias': [],
        'model/fusion_hidden123/score_vector': [512], 'model/fusion_hidden123/score_bias': [],
        # LSTM with peepholes
        'model/recurrent/rnn/lstm/kernel': [lstm_input + hidden, 4 * hidden],
        'model/recurrent/rnn/lstm/bias': [4 * hidden],
        'model/recurrent/rnn/lstm/w_f_diag': [hidden],
        'model/recurrent/rnn/lstm/w_i_diag': [hidden],
        'model/recurrent/rnn/lstm/w_o_diag': [hidden],
        # linear output to (arousal, valence)
        'model/output/weights': [hidden, 2], 'model/output/biases': [2],
    }


def expected_parameter_count(S, E, hidden):
    conv = (8 * 1 * 50 + 50) + (6 * 50 * 125 + 125) + (6 * 125 * 250 + 250)
    input_fusion = (S * 1024 + 1024) + (E * 1024 + 1024) + (1024 + 1)
    hidden_fc = 3 * (1024 * 512 + 512)
    hidden_fusions = 2 * (512 + 1)
    lstm = (512 + hidden) * 4 * hidden + 4 * hidden + 3 * hidden
    output = hidden * 2 + 2
    return conv + input_fusion + hidden_fc + hidden_fusions + lstm + output


def build(S, E, hidden=256, is_training=True):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        audio = tf.placeholder(tf.float32, [None, None, S])
        embeddings = tf.placeholder(tf.float32, [None, None, E])
        predictions = models.build_model(audio, embeddings, hidden_units=hidden,
                                         is_training=is_training)
    return graph, audio, embeddings, predictions


def run(graph, audio, embeddings, predictions, batch, repeats=1, scale=1.0):
    S, E = audio.shape[-1], embeddings.shape[-1]
    rng = np.random.default_rng(0)
    feed = {audio: scale * rng.normal(size=(batch[0], batch[1], S)).astype(np.float32),
            embeddings: scale * rng.normal(size=(batch[0], batch[1], E)).astype(np.float32)}
    with tf.Session(graph=graph) as session:
        session.run(tf.variables_initializer(graph.get_collection('variables')))
        return [session.run(predictions, feed) for _ in range(repeats)]


@pytest.mark.parametrize('S, E, hidden', [(4000, 100, 256), (500, 8, 16)])
def test_variables_match_the_structure_written_out_by_hand(S, E, hidden):
    graph, *_ = build(S, E, hidden)
    with graph.as_default():
        found = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
        total = models.model_summary()
    assert found == expected_variables(S, E, hidden)
    assert total == expected_parameter_count(S, E, hidden)


def test_output_shape_and_range():
    graph, audio, embeddings, predictions = build(500, 8)
    assert predictions.shape.as_list() == [None, None, 2]
    # Loud input drives the pre-activations far from zero; tanh must still bound them.
    (out,) = run(graph, audio, embeddings, predictions, batch=(3, 7), scale=100.0)
    assert out.shape == (3, 7, 2)
    assert np.all(np.abs(out) < 1.0) and np.isfinite(out).all()


def test_dropout_only_while_training():
    training = run(*build(500, 8, is_training=True), batch=(2, 4), repeats=2)
    evaluation = run(*build(500, 8, is_training=False), batch=(2, 4), repeats=2)
    assert not np.allclose(training[0], training[1])
    np.testing.assert_array_equal(evaluation[0], evaluation[1])


def test_mask_stops_the_lstm_at_the_sequence_length():
    graph = tf.Graph()
    with graph.as_default():
        audio = tf.placeholder(tf.float32, [None, None, 250])
        embeddings = tf.placeholder(tf.float32, [None, None, 4])
        mask = tf.placeholder(tf.float32, [None, None])
        predictions = models.build_model(audio, embeddings, is_training=False, mask=mask)
        bias = [v for v in tf.trainable_variables() if v.op.name == 'model/output/biases'][0]
        rng = np.random.default_rng(1)
        feed = {audio: rng.normal(size=(3, 5, 250)), embeddings: rng.normal(size=(3, 5, 4)),
                mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 0]]}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(bias.assign([0.3, -0.2]))
            out = session.run(predictions, feed)
    # Past the last real frame the LSTM emits zeros, so only the output bias is left.
    bias_only = np.tanh([0.3, -0.2])
    np.testing.assert_allclose(out[1, 3:], [bias_only] * 2, rtol=1e-6)
    np.testing.assert_allclose(out[2, 4:], [bias_only], rtol=1e-6)
    # Before it (leading padding included) the LSTM runs.
    for row, end in ((0, 5), (1, 3), (2, 4)):
        assert not np.isclose(out[row, :end], bias_only).any()


def test_segments_packed_in_one_window_predict_as_if_alone():
    """The data provider's packed window: segment a, a padding frame, segment b,
    with `reset` on each segment's first frame. Each segment's predictions must
    be those of the segment alone between padding frames: the LSTM starts
    afresh and the convolutions do not reach across the padding frame."""
    S, E = 250, 4
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, S)), rng.normal(size=(5, S))
    a_words, b_words = rng.normal(size=(7, E)), rng.normal(size=(5, E))
    gap, no_words = np.zeros((1, S)), np.zeros((1, E))

    def row(*parts):
        return np.concatenate(parts)[None]

    def resets(length, *starts):
        flags = np.zeros((1, length))
        flags[0, list(starts)] = 1
        return flags

    graph = tf.Graph()
    with graph.as_default():
        audio = tf.placeholder(tf.float32, [None, None, S])
        embeddings = tf.placeholder(tf.float32, [None, None, E])
        reset = tf.placeholder(tf.float32, [None, None])
        predictions = models.build_model(audio, embeddings, 16, is_training=False, reset=reset)
        names = {v.op.name for v in tf.trainable_variables()}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())

            def predict(audio_row, words_row, reset_row):
                return session.run(predictions, {audio: audio_row, embeddings: words_row,
                                                 reset: reset_row})[0]
            packed_audio, packed_words = row(gap, a, gap, b), row(no_words, a_words, no_words,
                                                                 b_words)
            packed = predict(packed_audio, packed_words, resets(14, 1, 9))
            never_reset = predict(packed_audio, packed_words, resets(14))
            a_alone = predict(row(gap, a, gap), row(no_words, a_words, no_words), resets(9, 1))
            b_alone = predict(row(gap, b), row(no_words, b_words), resets(6, 1))
    # The wrapper adds no variable scope: checkpoints load with or without it.
    assert names == set(expected_variables(S, E, 16))
    np.testing.assert_allclose(packed[1:8], a_alone[1:8], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(packed[9:], b_alone[1:], rtol=1e-5, atol=1e-6)
    # Without the reset, segment b would hear segment a through the LSTM state.
    assert np.abs(never_reset[9:] - b_alone[1:]).max() > 1e-3


@pytest.mark.parametrize('S', [300, 4100])
def test_frame_samples_must_be_a_multiple_of_250(S):
    with pytest.raises(ValueError, match='multiple of 250'):
        build(S, 8)


def test_checkpoint_path_lists_the_existing_steps(tmp_path):
    for step in (10, 200, 30):
        for suffix in ('.index', '.meta', '.data-00000-of-00001'):
            (tmp_path / ('model.ckpt-%d%s' % (step, suffix))).write_text('')
    (tmp_path / '.model.ckpt-999.index').write_text('')   # hidden: ignored
    assert models.available_steps(str(tmp_path)) == [10, 30, 200]
    assert models.checkpoint_path(str(tmp_path)) == (str(tmp_path / 'model.ckpt-200'), 200)
    assert models.checkpoint_path(str(tmp_path), 30) == (str(tmp_path / 'model.ckpt-30'), 30)
    assert len(models.checkpoint_files(str(tmp_path / 'model.ckpt-30'))) == 3
    with pytest.raises(models.helper.InputError, match='available steps: 10, 30, 200'):
        models.checkpoint_path(str(tmp_path), 20)
