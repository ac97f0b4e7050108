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
from ser import ablation, defaults

FLAGS = flags.FLAGS
OUTPUT_DIR = 'ablation/'

# ---- Dataset flags ----
helper.define_flags('dataset_dir', 'portion', 'sequence_length', 'batch_size', 'windows')

# ---- Model flags ----
flags.DEFINE_list('modalities', list(defaults.MODALITIES),
                  'Comma list of modalities to compare (%s).' % ', '.join(defaults.MODALITIES))
helper.define_flags('hidden_units')

# ---- Optimisation flags ----
flags.DEFINE_list('seeds', ['0', '1', '2'],
                  'Comma list of seeds; every modality is trained once per seed.')
helper.define_flags('max_steps', 'learning_rate', 'precision', 'skip_padding')
flags.mark_flag_as_required('max_steps')

# ---- Output flags ----
helper.define_flags('output_dir')
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
                 % ', '.join(defaults.MODALITIES))
def _valid_modalities(value):
    return bool(value) and len(set(value)) == len(value) and set(value) <= set(defaults.MODALITIES)


def main(argv):
    del argv
    seeds = [int(seed) for seed in FLAGS.seeds]
    output_dir = FLAGS.output_dir or OUTPUT_DIR
    modalities = list(FLAGS.modalities)
    plan = ablation.Schedule(
        dataset_dir=FLAGS.dataset_dir, portion=FLAGS.portion or defaults.ABLATION_PORTION, max_steps=FLAGS.max_steps,
        learning_rate=FLAGS.learning_rate, sequence_length=FLAGS.sequence_length,
        batch_size=FLAGS.batch_size, hidden_units=FLAGS.hidden_units, windows=FLAGS.windows,
        precision=FLAGS.precision, skip_padding=FLAGS.skip_padding)
    ablation.dataset_summary(plan.dataset_dir, plan.portion)  # bad data fails here, early
    started = time.time()
    records, failed = ablation.run_all(plan, seeds, modalities, output_dir, FLAGS.device,
                                       FLAGS.overwrite)
    if not records:
        logging.error('no run finished: results and report left as they were')
        return 1
    results = ablation.collect(records, failed, seeds, modalities, plan, output_dir,
                               FLAGS.device)
    ablation.write_outputs(results, output_dir, FLAGS.report)
    print('\n'.join(ablation.results_table(results['summary'])))
    logging.info('%d run(s) done, %d failed, in %.1f min; results in %s and %s', len(records),
                 len(failed), (time.time() - started) / 60,
                 os.path.join(output_dir, ablation.RESULTS_FILE), FLAGS.report)
    return 1 if failed else 0


if __name__ == '__main__':
    helper.run(main)
