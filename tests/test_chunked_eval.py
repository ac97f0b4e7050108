"""eval.py's model pass in chunks (ser.evaluation.predict_portion with
chunk_seconds): every segment's predictions equal the one-pass ones, on a
seeded random checkpoint at the tiny dataset's shapes."""

import numpy as np
import pytest

import models
from model_fixtures import write_random_checkpoint
from ser import evaluation

TOLERANCE = 1e-4


@pytest.mark.slow
def test_chunked_evaluation_gives_the_one_pass_predictions(tiny_dataset, tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / 'model', tiny_dataset, steps=(2,))
    config = models.read_model_config(checkpoint)
    prefix, _ = models.checkpoint_path(checkpoint)
    one_pass = evaluation.predict_portion(prefix, config, tiny_dataset, 'train', -1)
    chunked = evaluation.predict_portion(prefix, config, tiny_dataset, 'train', -1,
                                         chunk_seconds=2.5)
    assert [s['id'] for s in chunked] == [s['id'] for s in one_pass] == ['1_0', '1_1', '2_0']
    for whole, pieces in zip(one_pass, chunked):
        np.testing.assert_array_equal(pieces['timestamps'], whole['timestamps'])
        np.testing.assert_array_equal(pieces['labels'], whole['labels'])
        # 48 frames and more: several chunks of 10 frames each.
        assert len(whole['predictions']) >= 48
        assert np.max(np.abs(pieces['predictions'] - whole['predictions'])) <= TOLERANCE
        assert np.ptp(whole['predictions'], axis=0).min() > 1e-3
