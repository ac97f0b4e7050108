"""eval.py's model pass (ser.evaluation.PortionModel): every segment of a
portion in segment order, with the predictions predict.py's Predictor makes
of it (segments of similar lengths batched, to float rounding), for each
checkpoint restored in the same session; in chunks, the one-pass
predictions. On seeded random checkpoints at the tiny dataset's shapes."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from model_fixtures import STEPS, write_random_checkpoint
from ser import checkpoints
from ser import evaluation, inference, records
from ser.dataset import DatasetInfo

TOLERANCE = 1e-4
BATCH_TOLERANCE = 1e-5


@pytest.mark.slow
def test_a_portion_pass_is_the_predictors_for_each_checkpoint(tiny_dataset, tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / 'model', tiny_dataset)
    config = checkpoints.read_model_config(checkpoint)
    prefixes = [checkpoints.checkpoint_path(checkpoint, step)[0] for step in STEPS]
    info = DatasetInfo.load(tiny_dataset)
    with evaluation.PortionModel(config, tiny_dataset, 'train', -1) as model:
        passes = [model.predictions(prefix) for prefix in prefixes + prefixes[:1]]
    assert [s['id'] for s in passes[0]] == ['1_0', '1_1', '2_0']
    for step, segments in zip(STEPS, passes):
        with inference.Predictor.from_checkpoint(checkpoint, step, -1) as predictor:
            for path, segment in zip(info.portion_files('train'), segments):
                record = records.read_tfrecord(path, info.frame_samples, info.embedding_dim)
                np.testing.assert_array_equal(segment['timestamps'], record['timestamps'])
                np.testing.assert_array_equal(segment['labels'], record['labels'])
                # To float rounding: the three segments run as one batch, padded.
                np.testing.assert_allclose(
                    segment['predictions'], predictor.predict(record['audio'],
                                                              record['embeddings']),
                    rtol=0, atol=BATCH_TOLERANCE)
    # Each restore replaces the weights: the first checkpoint again gives its own predictions.
    for first, again in zip(passes[0], passes[2]):
        np.testing.assert_array_equal(first['predictions'], again['predictions'])
    assert not np.allclose(passes[0][0]['predictions'], passes[1][0]['predictions'])


@pytest.mark.slow
def test_chunked_evaluation_gives_the_one_pass_predictions(tiny_dataset, tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / 'model', tiny_dataset, steps=(2,))
    config = checkpoints.read_model_config(checkpoint)
    prefix, _ = checkpoints.checkpoint_path(checkpoint)
    with evaluation.PortionModel(config, tiny_dataset, 'train', -1) as model:
        one_pass = model.predictions(prefix)
    with evaluation.PortionModel(config, tiny_dataset, 'train', -1, chunk_seconds=2.5) as model:
        chunked = model.predictions(prefix)
    assert [s['id'] for s in chunked] == [s['id'] for s in one_pass] == ['1_0', '1_1', '2_0']
    for whole, pieces in zip(one_pass, chunked):
        np.testing.assert_array_equal(pieces['timestamps'], whole['timestamps'])
        np.testing.assert_array_equal(pieces['labels'], whole['labels'])
        # 48 frames and more: several chunks of 10 frames each.
        assert len(whole['predictions']) >= 48
        assert np.max(np.abs(pieces['predictions'] - whole['predictions'])) <= TOLERANCE
        assert np.ptp(whole['predictions'], axis=0).min() > 1e-3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 700), max_size=40))
def test_length_batches_hold_every_segment_once_within_the_budget(lengths):
    batches = evaluation.length_batches(lengths)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    for batch in batches:
        size = max(lengths[i] for i in batch) * len(batch)
        padding = size - sum(lengths[i] for i in batch)
        if len(batch) > 1:
            assert size <= evaluation.BATCH_FRAMES
            assert padding <= evaluation.MAX_PADDING * size
    # Segments of one length share batches as far as the budget lets them.
    if lengths and all(length == lengths[0] for length in lengths):
        per_batch = max(1, evaluation.BATCH_FRAMES // lengths[0])
        assert len(batches) == -(-len(lengths) // per_batch)
