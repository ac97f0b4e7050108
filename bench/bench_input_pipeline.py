"""Speed of the queue-based input pipeline alone (data_provider.get_split).

    .venv/bin/python bench/bench_input_pipeline.py [--bench_dir DIR] [--input_batches 200]

The training split of the generated corpus's TFRecords, as train.py reads it
(shuffled windows, random offsets, batch 5 x 100 frames by default), with
nothing but the dequeue in the graph: each step fetches only the batch's real
frame count, so the whole batch is dequeued but not copied to Python, as in
train.py. After --warmup_batches batches (queue runners started, the shuffle queue
filled), --repeats blocks of --input_batches batches are timed; a block's figure is
its B*T window frames (padding included, as the model computes them) per
second, and the median block is reported. Prints the machine and the figure,
and as the last line of stdout a JSON dict
{"input_pipeline_frames_per_s": ..., "details": ..., "machine": ...}.
"""

import logging
import os
import statistics
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data_provider  # noqa: E402  (needs the repository on sys.path)
import helper  # noqa: E402
from bench import corpus, machine, options  # noqa: E402

tf = helper.import_tensorflow()

FLAGS = flags.FLAGS
helper.define_flags('batch_size', 'sequence_length', 'verbose')
flags.DEFINE_integer('warmup_batches', 20, 'Untimed batches first.', lower_bound=1)
options.define('input_batches', 'repeats')


def run(dataset_dir, batch_size=5, sequence_length=100, warmup=20, batches=200, repeats=3,
        seed=0):
    """{'frames_per_s', 'block_seconds', 'real_fraction'} of timed dequeues."""
    graph = tf.Graph()
    with graph.as_default(), tf.device(helper.configure_device(-1)):
        batch = data_provider.get_split(dataset_dir, 'train', batch_size, sequence_length,
                                        is_training=True, seed=seed)
        real_frames = tf.reduce_sum(batch['mask'])
        with tf.Session(config=helper.session_config(-1)) as session:
            coordinator = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(session, coordinator)
            try:
                for _ in range(warmup):
                    session.run(real_frames)
                seconds, real = [], 0.0
                for _ in range(repeats):
                    started = time.perf_counter()
                    for _ in range(batches):
                        real += session.run(real_frames)
                    seconds.append(time.perf_counter() - started)
            finally:
                coordinator.request_stop()
                coordinator.join(threads)
    frames = batch_size * sequence_length * batches
    helper.development_msg('blocks of %d batches (s): %s', batches,
                           ', '.join('%.3f' % s for s in seconds))
    return {'frames_per_s': frames / statistics.median(seconds), 'block_seconds': seconds,
            'real_fraction': float(real) / (frames * repeats)}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    with corpus.work_directory('tfrecords') as (work_dir, _):
        result = run(corpus.dataset_dir(work_dir), FLAGS.batch_size, FLAGS.sequence_length,
                     FLAGS.warmup_batches, FLAGS.input_batches, FLAGS.repeats, FLAGS.seed)
    logging.info('input pipeline, B=%d T=%d: %.0f frames/s (median of %d blocks of %d batches; '
                 '%.0f%% of the window frames are real, the rest padding)', FLAGS.batch_size,
                 FLAGS.sequence_length, result['frames_per_s'], FLAGS.repeats, FLAGS.input_batches,
                 100 * result['real_fraction'])
    machine.hand_over({'input_pipeline_frames_per_s': round(result['frames_per_s'], 2)},
                      {'block_seconds': [round(s, 4) for s in result['block_seconds']],
                       'real_fraction': round(result['real_fraction'], 4)}, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
