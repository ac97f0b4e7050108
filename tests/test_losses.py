"""losses.py: CCC values worked out by hand, masking, TF against NumPy, weights."""

import numpy as np
import pytest

import losses

tf = losses.tf

X = np.array([1.0, 2.0, 3.0, 4.0])   # mean 2.5, population variance 1.25


def tf_ccc(predictions, labels, mask, loss_weights=None):
    """Run the TF op and the loss on [B,T,D] arrays."""
    graph = tf.Graph()
    with graph.as_default():
        p, l, m = (tf.constant(np.asarray(a, dtype=np.float32))
                   for a in (predictions, labels, mask))
        ccc = losses.concordance_cc(p, l, m)
        total, per_dimension = losses.ccc_loss(p, l, m, loss_weights)
        with tf.Session() as session:
            return session.run([ccc, total, per_dimension])


def as_batch(x, y):
    """One recording [1,N,2]: x and y in both dimensions."""
    x, y = np.asarray(x), np.asarray(y)
    return np.stack([x, x], -1)[None], np.stack([y, y], -1)[None], np.ones((1, len(x)))


@pytest.mark.parametrize('y, expected', [
    (X, 1.0),                        # perfect agreement
    (-X, 2 * -1.25 / (1.25 + 1.25 + 25.0)),   # mirrored: cov -1.25, means 2.5 vs -2.5
    (X + 1, 2 * 1.25 / (1.25 + 1.25 + 1.0)),  # shifted by one: Pearson 1, CCC 5/7
    (2 * X, 2 * 2.5 / (1.25 + 5.0 + 6.25)),   # scaled by two: cov 2.5, var 5, means 2.5 vs 5
    (5 - X, -1.0),                   # anti-correlated with the same mean and variance
    ([1.0, 1.0, 1.0, 1.0], 0.0),     # constant prediction: no covariance
])
def test_values_worked_out_by_hand(y, expected):
    assert losses.ccc(X, y) == pytest.approx(expected)
    ccc, total, per_dimension = tf_ccc(*as_batch(X, y))
    np.testing.assert_allclose(ccc, [expected, expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_dimension, 1 - ccc, rtol=1e-6)
    assert total == pytest.approx(1 - expected, abs=1e-5)


def test_is_symmetric_and_per_column():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    np.testing.assert_allclose(losses.ccc(a, b), losses.ccc(b, a))
    np.testing.assert_allclose(losses.ccc(a, b), [losses.ccc(a[:, 0], b[:, 0]),
                                                  losses.ccc(a[:, 1], b[:, 1])])


def test_tf_and_numpy_agree_over_the_batch_frames():
    rng = np.random.default_rng(1)
    predictions = rng.uniform(-1, 1, size=(4, 30, 2))
    labels = 0.5 * predictions + rng.normal(0.1, 0.3, size=(4, 30, 2))
    ccc, _, _ = tf_ccc(predictions, labels, np.ones((4, 30)))
    # Every frame of the batch counts as one sample.
    np.testing.assert_allclose(ccc, losses.ccc(predictions.reshape(-1, 2), labels.reshape(-1, 2)),
                               rtol=1e-4)


def test_mask_excludes_padded_frames_exactly():
    rng = np.random.default_rng(2)
    predictions, labels = rng.normal(size=(3, 10, 2)), rng.normal(size=(3, 10, 2))
    mask = np.ones((3, 10))
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    # Garbage in the padding must not change anything.
    predictions[mask == 0], labels[mask == 0] = 1e3, -1e3
    ccc, _, _ = tf_ccc(predictions, labels, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(ccc, losses.ccc(predictions[real], labels[real]), rtol=1e-4)


def test_loss_weights_are_normalised():
    x = np.stack([X, X], -1)[None]
    y = np.stack([X, 2 * X], -1)[None]              # dimension losses 0 and 1 - 5/12.5
    mask = np.ones((1, 4))
    second = 1 - 2 * 2.5 / 12.5
    for weights, expected in [(None, second / 2), ([1, 1], second / 2), ([3, 1], second / 4),
                              ([0, 2], second), ([10, 0], 0.0)]:
        _, total, per_dimension = tf_ccc(x, y, mask, weights)
        np.testing.assert_allclose(per_dimension, [0.0, second], atol=1e-6)
        assert total == pytest.approx(expected, abs=1e-6), weights


@pytest.mark.parametrize('weights', [[1], [1, 1, 1], [-1, 2], [0, 0]])
def test_bad_loss_weights_are_rejected(weights):
    x, y, mask = as_batch(X, X)
    with pytest.raises(ValueError, match='weight'):
        tf_ccc(x, y, mask, weights)


def test_degenerate_inputs():
    # Nothing varies: NumPy reports it is undefined; the TF loss stays finite.
    assert np.isnan(losses.ccc([2.0, 2.0], [2.0, 2.0]))
    ccc, total, _ = tf_ccc(*as_batch([2.0, 2.0], [2.0, 2.0]))
    np.testing.assert_array_equal(ccc, [0.0, 0.0])
    assert np.isfinite(total)
    with pytest.raises(ValueError, match='shapes differ'):
        losses.ccc([1.0, 2.0], [1.0, 2.0, 3.0])
