"""Ablation of the paper's claim: does the semantic branch (what is said) add
to the acoustic one (how it is said)?

    python ablation.py --dataset_dir demo/tfrecords --output_dir ablation/ --device -1 \\
        --seeds 0,1,2 --max_steps 600 --learning_rate 1e-3 --sequence_length 100

For every seed and every modality (both inputs, audio alone, text alone; see
train.py --modality) it trains with train.py and evaluates the last
checkpoint with eval.py on --portion, each in its own process, with the same
seed and schedule: for one seed the three runs start from the same weights,
see the same batches and differ only in what the model hears. Writes

  <output_dir>/runs/<modality>_seed<k>/   train.py's directory, plus
        eval_<portion>.json               eval.py's metrics
        run.json                          schedule, times, CCC (written last)
        train.out, eval.out               what the two scripts printed
  <output_dir>/results.json               every run, and per modality the mean
                                          and sample std over seeds; paired
                                          differences between modalities
  --report (RESULTS.md)                   the same as tables, with the machine,
                                          the schedule and an interpretation

A rerun skips the runs whose run.json holds results (--overwrite redoes
them) and lets an interrupted one continue from its last checkpoint; a run
made with another schedule is refused. A failed run is reported and the
others still run; the exit status is then non-zero. A section headed
`## Notes` in an existing report, written by hand, is kept when it is
rewritten.
"""

import logging
import os
import time

from absl import flags

import helper
from ser import ablation

FLAGS = flags.FLAGS

# ---- Dataset flags ----
flags.DEFINE_string('dataset_dir', helper.tfrecords_dir('demo'),
                    'Directory with dataset.json and the TFRecords (data_generator.py).')
flags.DEFINE_enum('portion', 'test', list(helper.PORTIONS), 'Portion every run is evaluated on.')
flags.DEFINE_integer('sequence_length', 100, 'Frames per training window.', lower_bound=1)
flags.DEFINE_integer('batch_size', 5, 'Windows per training batch.', lower_bound=1)
flags.DEFINE_enum('windows', ablation.DEFAULT_WINDOWS, list(ablation.WINDOW_SCHEMES),
                  'train.py --windows of every run.')

# ---- Model flags ----
flags.DEFINE_list('modalities', ['both', 'audio', 'text'],
                  'Comma list of modalities to compare (both, audio, text).')
flags.DEFINE_integer('hidden_units', 256, 'LSTM units.', lower_bound=1)

# ---- Optimisation flags ----
flags.DEFINE_list('seeds', ['0', '1', '2'],
                  'Comma list of seeds; every modality is trained once per seed.')
flags.DEFINE_integer('max_steps', 600, 'Training steps of every run.', lower_bound=1)
flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate of every run.', lower_bound=0.0)
flags.DEFINE_enum('precision', helper.DEFAULT_PRECISION, list(helper.PRECISIONS),
                  'train.py --precision of every run (evaluation is fp32).')
flags.DEFINE_bool('skip_padding', True, 'train.py --skip_padding of every run.')

# ---- Output flags ----
flags.DEFINE_string('output_dir', 'ablation/', 'Where runs/ and results.json go.')
flags.DEFINE_string('report', 'RESULTS.md', 'Markdown report to (re)write.')
helper.define_flags('overwrite', 'verbose')

# ---- Device flags ----
helper.define_flags('device')


@flags.validator('seeds', message='--seeds must be a comma list of distinct integers')
def _valid_seeds(value):
    try:
        seeds = [int(seed) for seed in value]
    except ValueError:
        return False
    return bool(seeds) and len(set(seeds)) == len(seeds)


@flags.validator('modalities', message='--modalities must be distinct names among %s'
                 % ', '.join(ablation.MODALITIES))
def _valid_modalities(value):
    return bool(value) and len(set(value)) == len(value) and set(value) <= set(ablation.MODALITIES)


def main(argv):
    del argv
    seeds = [int(seed) for seed in FLAGS.seeds]
    modalities = list(FLAGS.modalities)
    plan = ablation.Schedule(
        dataset_dir=FLAGS.dataset_dir, portion=FLAGS.portion, max_steps=FLAGS.max_steps,
        learning_rate=FLAGS.learning_rate, sequence_length=FLAGS.sequence_length,
        batch_size=FLAGS.batch_size, hidden_units=FLAGS.hidden_units, windows=FLAGS.windows,
        precision=FLAGS.precision, skip_padding=FLAGS.skip_padding)
    ablation.dataset_summary(plan.dataset_dir, plan.portion)  # bad data fails here, early
    started = time.time()
    records, failed = ablation.run_all(plan, seeds, modalities, FLAGS.output_dir, FLAGS.device,
                                       FLAGS.overwrite)
    if not records:
        logging.error('no run finished: results and report left as they were')
        return 1
    results = ablation.collect(records, failed, seeds, modalities, plan, FLAGS.output_dir,
                               FLAGS.device)
    ablation.write_outputs(results, FLAGS.output_dir, FLAGS.report)
    print('\n'.join(ablation.results_table(results['summary'])))
    logging.info('%d run(s) done, %d failed, in %.1f min; results in %s and %s', len(records),
                 len(failed), (time.time() - started) / 60,
                 os.path.join(FLAGS.output_dir, ablation.RESULTS_FILE), FLAGS.report)
    return 1 if failed else 0


if __name__ == '__main__':
    helper.run(main)
