"""Concordance correlation coefficient (Lin, 1989), the MuSe metric:

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)

with population (1/N) moments. As a TensorFlow op over the unmasked frames of
a batch (training loss 1 - CCC per dimension) and in NumPy (evaluation)."""

import numpy as np

import helper

tf = helper.import_tensorflow()


def concordance_cc(predictions, labels, mask):
    """predictions, labels [B,T,D]; mask [B,T] (1 = real frame, 0 = padding)
    -> CCC per dimension [D], over every real frame of the batch. A dimension
    with no variance at all gives 0 rather than NaN."""
    weights = tf.cast(mask, tf.float32)[..., None]                      # [B,T,1]
    count = tf.maximum(tf.reduce_sum(weights), 1.0)

    def moment(values):
        return tf.reduce_sum(values * weights, axis=[0, 1]) / count

    mean_x, mean_y = moment(predictions), moment(labels)
    dx, dy = predictions - mean_x, labels - mean_y
    covariance = moment(dx * dy)
    denominator = moment(dx * dx) + moment(dy * dy) + tf.square(mean_x - mean_y)
    return tf.math.divide_no_nan(2.0 * covariance, denominator)


def ccc_loss(predictions, labels, mask, loss_weights=None):
    """(total loss, loss per dimension [D]) with loss = 1 - CCC. The total is
    the mean over dimensions, or their weighted mean when `loss_weights`
    (one non-negative number per dimension, normalised here) is given."""
    per_dimension = 1.0 - concordance_cc(predictions, labels, mask)
    if loss_weights is None:
        return tf.reduce_mean(per_dimension), per_dimension
    weights = np.asarray(loss_weights, dtype=np.float32)
    if weights.ndim != 1 or weights.size != per_dimension.shape[0]:
        raise ValueError('need one loss weight per dimension (%s), got %r'
                         % (per_dimension.shape[0], list(loss_weights)))
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError('loss weights must be non-negative with a positive sum, got %r'
                         % list(loss_weights))
    return tf.reduce_sum(per_dimension * (weights / weights.sum())), per_dimension


def ccc(x, y):
    """NumPy CCC of two equally long series (along axis 0: [N] -> scalar,
    [N,D] -> [D]). NaN when neither series varies or there are no values."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError('ccc: shapes differ, %s vs %s' % (x.shape, y.shape))
    if x.shape[0] == 0:
        return np.full(x.shape[1:], np.nan) if x.ndim > 1 else np.nan
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    covariance = ((x - mean_x) * (y - mean_y)).mean(axis=0)
    denominator = x.var(axis=0) + y.var(axis=0) + (mean_x - mean_y) ** 2
    with np.errstate(invalid='ignore', divide='ignore'):
        return 2.0 * covariance / denominator
