"""Flags several benchmarks share, each defined once here, the same way as the
pipeline's own (helper.SHARED_FLAGS, which the benchmarks use for the
pipeline's flags): a stage benchmark's flag has the name bench/run_all.py
gives it, so that run_all.py passes it through as it is."""

import helper

BENCH_FLAGS = {
    # name: (kind, default, help, keyword arguments)
    'repeats': ('integer', 3, 'Repeats of a cheap measurement (alignment and tfrecord runs, '
                'input pipeline blocks, eval passes, predict runs); the median is reported.',
                {'lower_bound': 1}),
    'warmup': ('integer', 3, 'Untimed model steps first (graph optimisation, allocations).',
               {'lower_bound': 1}),
    'input_batches': ('integer', 200, 'Batches per timed block of the input pipeline.',
                      {'lower_bound': 1}),
    'model_steps': ('integer', 10, 'Timed steps of the model-step benchmark; the median is '
                    'reported.', {'lower_bound': 1}),
    'train_steps': ('integer', 200, 'train.py --max_steps of the training benchmarks (global '
                    'steps of each run).', {'lower_bound': 2}),
    'train_warmup_steps': ('integer', 10, 'Steps of train.py left out of its steady state.',
                           {'lower_bound': 1}),
    'train_log_every_n_steps': ('integer', 10, 'train.py --log_every_n_steps of the training '
                                'benchmarks.', {'lower_bound': 1}),
    'predict_duration': ('float', 60.0, 'Seconds of audio in the predict benchmark\'s '
                         'recording.', {'lower_bound': 0.25}),
    'service_requests': ('integer', 40, 'Timed HTTP requests per client of the service '
                         'benchmark.', {'lower_bound': 1}),
    'service_utterances': ('integer', 8, 'Different utterances the service benchmark sends in '
                           'turn.', {'lower_bound': 1}),
    'long_audio_minutes': ('float', 60.0, 'Minutes of audio predict.py runs on in the '
                           'long-audio benchmark (its memory is the figure).',
                           {'lower_bound': 0.1}),
    'decoding_seconds': ('float', 600.0, 'Length of every upload of the decoding benchmark '
                         '(serve.py --max_audio_seconds).', {'lower_bound': 1.0}),
    'stream_seconds': ('float', 60.0, 'Seconds of audio of the stream benchmark\'s single '
                       'stream.', {'lower_bound': 2.0}),
}


def define(*names):
    """Define the benchmark flags `names` as flags of the calling benchmark."""
    from absl import flags
    flags.disclaim_key_flags()
    helper.define_flags(*names, table=BENCH_FLAGS)
