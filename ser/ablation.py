"""The ablation behind ablation.py: for every seed and modality, train.py then
eval.py (each its own process, so this one never loads TensorFlow), the
aggregation over seeds with paired differences, and the Markdown report.
See ablation.py for what is written where."""

import dataclasses
import datetime
import logging
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

import helper
from ser import checkpoints
from ser import host
from ser import defaults
from ser import paths
from ser.dataset import DatasetInfo

DIMENSIONS = paths.DIMENSIONS
RUNS_DIR = 'runs'
RUN_FILE = 'run.json'
RESULTS_FILE = 'results.json'
NOTES_HEADING = '## Notes'
# The comparisons of the paired differences, (better?, than?).
COMPARISONS = (('both', 'audio'), ('both', 'text'), ('audio', 'text'))
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One checkpoint is kept per run: eval.py evaluates only the last, and the
# runs (every modality for every seed) would otherwise fill the disk with
# checkpoints no one reads.
KEPT_CHECKPOINTS = 1


class RunFailed(Exception):
    """One (modality, seed) run could not finish; the others go on."""


# --------------------------------------------------------------------------
# One run: train.py then eval.py, timed
# --------------------------------------------------------------------------
def run_name(modality, seed):
    return '%s_seed%d' % (modality, seed)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Everything that must be equal for runs to be compared, built by
    keyword. It is stored with every run (run.json) and in results.json as
    dataclasses.asdict gives it (as_json), its fields in this order:

    dataset_dir      directory with dataset.json and the TFRecords (made absolute)
    portion          the portion every run is evaluated on, in fp32
    max_steps        training steps of every run; eval.py evaluates that step
    learning_rate    Adam's learning rate
    sequence_length  frames per training window
    batch_size       windows per training batch
    hidden_units     LSTM units
    windows          train.py --windows (defaults.WINDOW_SCHEMES)
    precision        train.py --precision
    skip_padding     train.py --skip_padding
    """
    dataset_dir: str
    portion: str
    max_steps: int
    learning_rate: float
    sequence_length: int
    batch_size: int
    hidden_units: int
    windows: str = defaults.WINDOWS
    precision: str = defaults.PRECISION
    skip_padding: bool = True

    def __post_init__(self):
        # Runs are found again by their schedule, wherever the ablation is started from.
        object.__setattr__(self, 'dataset_dir', os.path.abspath(self.dataset_dir))

    def as_json(self):
        return dataclasses.asdict(self)


def run_script(script, args, output_path):
    """Run one of the pipeline's scripts, its output into output_path; returns
    the seconds it took. RunFailed (with the end of its output) when it fails."""
    command = [sys.executable, os.path.join(REPOSITORY, script)] + [str(a) for a in args]
    helper.development_msg('running %s', ' '.join(command))
    started = time.time()
    with open(output_path, 'w', encoding='utf-8') as output:
        status = subprocess.call(command, stdout=output, stderr=subprocess.STDOUT)
    seconds = time.time() - started
    if status != 0:
        with open(output_path, encoding='utf-8', errors='replace') as output:
            tail = output.read()[-2000:]
        raise RunFailed('%s exited with status %d (output in %s):\n%s'
                        % (script, status, output_path, tail))
    return seconds


def train_and_evaluate(modality, seed, run_dir, plan, device):
    """Train then evaluate one run; returns its record (also in run.json)."""
    eval_json = os.path.join(run_dir, 'eval_%s.json' % plan.portion)
    resumed = any(name.endswith('.index') for name in helper.list_dir(run_dir))
    load_average = os.getloadavg()[0]
    train_seconds = run_script('train.py', [
        '--dataset_dir', plan.dataset_dir, '--train_dir', run_dir, '--device', device,
        '--seed', seed, '--modality', modality, '--max_steps', plan.max_steps,
        '--learning_rate', plan.learning_rate, '--sequence_length', plan.sequence_length,
        '--batch_size', plan.batch_size, '--hidden_units', plan.hidden_units,
        '--windows', plan.windows, '--precision', plan.precision,
        '--%sskip_padding' % ('' if plan.skip_padding else 'no'),
        '--max_checkpoints', KEPT_CHECKPOINTS], os.path.join(run_dir, 'train.out'))
    # --steps: the run's own last step, or a clear error if training stopped short.
    eval_seconds = run_script('eval.py', [
        '--dataset_dir', plan.dataset_dir, '--checkpoint', run_dir, '--device', device,
        '--portion', plan.portion, '--steps', plan.max_steps, '--json', eval_json,
        '--predictions_dir', os.path.join(run_dir, 'predictions', plan.portion),
        '--noplots', '--precision', 'fp32'], os.path.join(run_dir, 'eval.out'))
    metrics = helper.read_json(eval_json)
    if metrics.get('modality') != modality:
        raise RunFailed('%s: evaluated with modality %r, not %r'
                        % (eval_json, metrics.get('modality'), modality))
    return {
        'modality': modality, 'seed': seed, 'schedule': plan.as_json(), 'device': device,
        # What --precision (auto, by default) chose on this machine.
        'precision': checkpoints.read_model_config(run_dir)['precision'],
        'ccc': metrics['ccc'], 'mean_ccc': metrics['mean_ccc'], 'frames': metrics['frames'],
        'step': metrics['step'], 'train_seconds': train_seconds, 'eval_seconds': eval_seconds,
        # Time of a resumed run covers only the steps after the interruption.
        'resumed': resumed, 'load_average': load_average,
        'finished': datetime.datetime.now().isoformat(' ', 'seconds'),
    }


def run(modality, seed, plan, output_dir, device, overwrite=False):
    """The record of one run: the stored one when finished with this
    schedule, otherwise trained and evaluated now."""
    run_dir = os.path.join(output_dir, RUNS_DIR, run_name(modality, seed))
    record_path = os.path.join(run_dir, RUN_FILE)
    if overwrite:
        shutil.rmtree(run_dir, ignore_errors=True)
    if os.path.isfile(record_path):
        record = helper.read_json(record_path)
        if record.get('schedule') != plan.as_json():
            raise RunFailed('%s was made with another schedule (%s); use --overwrite or another '
                            '--output_dir' % (record_path, record.get('schedule')))
        if 'ccc' in record:
            logging.info('%s: done before, skipped', run_name(modality, seed))
            return record
    os.makedirs(run_dir, exist_ok=True)
    # Written first, so that an interrupted run cannot be resumed under another schedule.
    helper.write_json(record_path, {'modality': modality, 'seed': seed,
                                    'schedule': plan.as_json()})
    record = train_and_evaluate(modality, seed, run_dir, plan, device)
    helper.write_json(record_path, record)
    logging.info('%s: %s, mean %.4f; trained in %.1f min', run_name(modality, seed),
                 ', '.join('%s %.4f' % (d, record['ccc'][d]) for d in DIMENSIONS),
                 record['mean_ccc'], record['train_seconds'] / 60)
    return record


# --------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------
def spread(values):
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return {'mean': float(values.mean()),
            'std': float(values.std(ddof=1)) if len(values) > 1 else None,
            'values': values.tolist()}


def paired_difference(first, second):
    """first - second over the seeds both have: mean, sample std and the half
    width of the 95% confidence interval of the mean (Student's t), so that a
    difference can be told from seed-to-seed noise."""
    seeds = sorted(set(first) & set(second))
    differences = np.array([first[s] - second[s] for s in seeds], dtype=np.float64)
    result = dict(spread(differences), seeds=seeds, ci95=None, significant=None)
    if len(seeds) > 1:
        result['ci95'] = float(stats.t.ppf(0.975, len(seeds) - 1) * result['std']
                               / np.sqrt(len(seeds)))
        result['significant'] = bool(abs(result['mean']) > result['ci95'])
    return result


def summarise(records, modalities):
    """Per modality: CCC per dimension, mean CCC and times over the seeds."""
    summary = {}
    for modality in modalities:
        runs = sorted((r for r in records if r['modality'] == modality), key=lambda r: r['seed'])
        if not runs:
            continue
        summary[modality] = dict(
            {name: spread([r['ccc'][name] for r in runs]) for name in DIMENSIONS},
            n=len(runs), seeds=[r['seed'] for r in runs],
            mean_ccc=spread([r['mean_ccc'] for r in runs]),
            train_minutes=spread([r['train_seconds'] / 60 for r in runs]),
            eval_seconds=spread([r['eval_seconds'] for r in runs]))
    return summary


def differences(records):
    """Paired (same seed) differences 'a-b' of every comparison whose two
    modalities both have runs, per dimension and for the mean CCC."""
    by_modality = {}
    for record in records:
        scores = dict(record['ccc'], mean_ccc=record['mean_ccc'])
        by_modality.setdefault(record['modality'], {})[record['seed']] = scores
    result = {}
    for first, second in COMPARISONS:
        if first in by_modality and second in by_modality:
            result['%s-%s' % (first, second)] = {
                name: paired_difference({s: v[name] for s, v in by_modality[first].items()},
                                        {s: v[name] for s, v in by_modality[second].items()})
                for name in DIMENSIONS + ('mean_ccc',)}
    return result


def verdict(difference, expect):
    """Does a paired difference agree with `expect`: 'higher' (above zero
    beyond noise) or 'not lower' (not below zero beyond noise)? None when
    there are too few seeds to tell."""
    if difference['significant'] is None:
        return None
    if expect == 'higher':
        return difference['significant'] and difference['mean'] > 0
    return not (difference['significant'] and difference['mean'] < 0)


# What the demo corpus was built to show (make_demo_corpus.py): arousal is in
# the prosody, valence in the words. (comparison, dimension, expectation, claim)
EXPECTATIONS = (
    ('audio-text', 'arousal', 'higher', 'audio alone beats text alone on arousal'),
    ('audio-text', 'valence', 'lower', 'text alone beats audio alone on valence'),
    ('both-audio', 'arousal', 'not lower', 'both are at least as good as audio on arousal'),
    ('both-text', 'arousal', 'not lower', 'both are at least as good as text on arousal'),
    ('both-audio', 'valence', 'not lower', 'both are at least as good as audio on valence'),
    ('both-text', 'valence', 'not lower', 'both are at least as good as text on valence'),
    ('both-audio', 'valence', 'higher', 'the text adds to the audio on valence (the paper\'s '
                                       'claim)'),
)


def check_expectations(paired):
    """[{claim, comparison, dimension, holds (True, False or None)}]."""
    checks = []
    for comparison, dimension, expect, claim in EXPECTATIONS:
        if comparison not in paired:
            continue
        difference = dict(paired[comparison][dimension])
        if expect == 'lower':   # b beats a: the same test on b - a
            difference['mean'] = -difference['mean']
            expect = 'higher'
        checks.append({'claim': claim, 'comparison': comparison, 'dimension': dimension,
                       'holds': verdict(difference, expect)})
    return checks


def dataset_summary(dataset_dir, portion):
    info = DatasetInfo.load(dataset_dir)
    return {'segments': {p: len(info.partition[p]) for p in defaults.PORTIONS},
            'videos': {p: len({paths.video_of(name) for name in info.partition[p]})
                       for p in defaults.PORTIONS},
            'sample_rate': info.sample_rate, 'embedding_dim': info.embedding_dim,
            'portion': portion}


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------
def plus_minus(value, digits=3):
    if value['std'] is None:
        return '%.*f' % (digits, value['mean'])
    return '%.*f ± %.*f' % (digits, value['mean'], digits, value['std'])


def signed(difference):
    text = '%+.3f' % difference['mean']
    if difference['ci95'] is not None:
        text += ' (±%.3f)%s' % (difference['ci95'], ' *' if difference['significant'] else '')
    return text


def results_table(summary):
    lines = ['| modality | arousal CCC | valence CCC | mean CCC | train minutes per run |',
             '| --- | --- | --- | --- | --- |']
    for modality, result in summary.items():
        lines.append('| %s | %s | %s | %s | %s |' % (
            modality, plus_minus(result['arousal']), plus_minus(result['valence']),
            plus_minus(result['mean_ccc']), plus_minus(result['train_minutes'], 1)))
    return lines


def interpretation(results, has_notes):
    """Sentences drawn from the numbers: each expectation and whether it holds."""
    checks = results['expectations']
    if not checks:
        return ['Too few modalities to compare.']
    words = {True: 'holds', False: '**does not hold**', None: 'cannot be told (one seed)'}
    lines = []
    for check in checks:
        difference = results['differences'][check['comparison']][check['dimension']]
        word = words[check['holds']]
        if check['holds'] and not difference['significant']:
            # Only "at least as good" can hold without a clear difference.
            word = 'holds within noise%s' % (', lower on average' if difference['mean'] < 0
                                             else '')
        lines.append('- %s: %s (%s on %s: %s).' % (check['claim'][0].upper() + check['claim'][1:],
                                                   word, check['comparison'],
                                                   check['dimension'], signed(difference)))
    failed = [c['claim'] for c in checks if c['holds'] is False]
    lines.append('')
    if failed:
        lines.append('The expected pattern is not fully there; this does not hold: %s. %s'
                     % ('; '.join(failed), 'See the notes below.' if has_notes else
                        'Find out why (corpus, schedule, wiring) before trusting the result.'))
    elif any(c['holds'] is None for c in checks):
        lines.append('Run more than one seed to tell differences from noise.')
    else:
        lines.append('The expected pattern holds: the audio carries the arousal, the words the '
                     'valence, and the model that hears both is at least as good as the better '
                     'single modality on each dimension (where no * marks the difference, '
                     'equal within the seed-to-seed noise).%s'
                     % (' See the notes below.' if has_notes else ''))
    return lines


def title(results):
    """The report's heading: the ablation's question, or with a single
    modality (runs comparing training options) what was trained."""
    if len(results['modalities']) > 1:
        return '# Ablation: does the semantic branch help?'
    plan = results['schedule']
    return '# Test CCC of the model hearing %s: %s windows, %s, %s' % (
        results['modalities'][0], plan['windows'], padding(plan), plan['precision'])


def padding(plan):
    return 'padding skipped' if plan['skip_padding'] else 'padding computed'


def precision_used(plan, runs):
    """--precision as asked, and what it chose where that differs: 'auto (bf16)'.
    Runs recorded before run.json held the choice count as the precision asked."""
    chosen = sorted({record.get('precision', plan['precision']) for record in runs})
    if chosen == [plan['precision']]:
        return plan['precision']
    return '%s (%s)' % (plan['precision'], ', '.join(chosen))


def report_text(results, notes):
    plan = results['schedule']
    data = results['dataset']
    lines = [
        title(results),
        '',
        'Written by `ablation.py` on %s from `%s`; the numbers are in `%s`.' % (
            results['created'], os.path.relpath(results['dataset_dir'], REPOSITORY),
            os.path.join(os.path.relpath(results['output_dir'], REPOSITORY), RESULTS_FILE)),
        '',
        'Each modality is the same model fed differently: *both* hears audio and word '
        'embeddings, *audio* gets zero embeddings, *text* zero audio frames. For one seed the '
        'runs start from the same weights and see the same batches.',
        '',
        '## Test CCC, mean ± std over %d seed(s)' % len(results['seeds']),
        '',
        'Portion `%s` (%d segments of %d videos), CCC over its concatenated frames; std is the '
        'sample standard deviation over seeds (n − 1).' % (
            data['portion'], data['segments'][data['portion']],
            data['videos'][data['portion']]),
        '',
    ]
    lines += results_table(results['summary'])
    if results['differences']:
        lines += ['', '## Paired differences (same seed)', '',
                  'Mean difference over seeds with the half width of its 95% confidence interval '
                  '(Student\'s t); * marks a difference larger than that interval.', '',
                  '| comparison | arousal | valence | mean CCC |', '| --- | --- | --- | --- |']
        lines += ['| %s − %s | %s |' % (*name.split('-'), ' | '.join(
            signed(difference[d]) for d in DIMENSIONS + ('mean_ccc',)))
            for name, difference in results['differences'].items()]
    lines += ['', '## Interpretation', ''] + interpretation(results, bool(notes))
    lines += ['', '## Per run', '',
              '| modality | seed | arousal | valence | mean | step | train min | eval s | '
              'load avg |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    order = results['modalities']
    for record in sorted(results['runs'], key=lambda r: (order.index(r['modality']), r['seed'])):
        lines.append('| %s | %d | %.3f | %.3f | %.3f | %d | %.1f%s | %.0f | %.1f |' % (
            record['modality'], record['seed'], record['ccc']['arousal'],
            record['ccc']['valence'], record['mean_ccc'], record['step'],
            record['train_seconds'] / 60, ' (resumed)' if record['resumed'] else '',
            record['eval_seconds'], record['load_average']))
    if results['failed']:
        lines += ['', 'Failed runs (not in the tables): %s.' % ', '.join(results['failed'])]
    lines += [
        '', '## Setup', '',
        '- Data: `%s`: %s segments of %s videos (train/devel/test), %d Hz, %d-d word vectors.'
        % (os.path.relpath(results['dataset_dir'], REPOSITORY),
           '/'.join(str(data['segments'][p]) for p in defaults.PORTIONS),
           '/'.join(str(data['videos'][p]) for p in defaults.PORTIONS), data['sample_rate'],
           data['embedding_dim']),
        '- Schedule: %d steps, Adam lr %g, batch %d windows of %d frames (%s, %s), %d LSTM '
        'units, trained in %s; seeds %s; evaluated at the last step.' % (
            plan['max_steps'], plan['learning_rate'], plan['batch_size'], plan['sequence_length'],
            plan['windows'], padding(plan), plan['hidden_units'],
            precision_used(plan, results['runs']), ', '.join(map(str, results['seeds']))),
        '- Machine: %s, %d cores, %s, Python %s, TensorFlow %s; device %s. The load average '
        'column is the 1-minute load when the run started: the machine is shared, so times '
        'vary with it.' % (results['machine']['cpu'], results['machine']['cores'],
                           results['machine']['system'], results['machine']['python'],
                           results['machine']['tensorflow'],
                           'CPU' if results['device'] < 0 else 'GPU %d' % results['device']),
        '- Time: %.1f minutes of training and evaluation over %d runs.'
        % (results['total_run_minutes'], len(results['runs'])),
    ]
    if notes:
        lines += ['', notes.rstrip()]
    return '\n'.join(lines) + '\n'


def kept_notes(path):
    """The hand-written `## Notes` section of an existing report, or ''."""
    if not os.path.isfile(path):
        return ''
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    start = text.find('\n' + NOTES_HEADING + '\n')
    return text[start + 1:] if start >= 0 else ''


# --------------------------------------------------------------------------
# The whole ablation
# --------------------------------------------------------------------------
def run_all(plan, seeds, modalities, output_dir, device, overwrite=False):
    """Every (modality, seed) run, seed by seed so that an interrupted ablation
    has every modality equally often. Returns (records, names of failed runs)."""
    jobs = [(modality, seed) for seed in seeds for modality in modalities]
    records, failed = [], []
    for modality, seed in tqdm(jobs, desc='ablation', unit='run', file=sys.stderr,
                               dynamic_ncols=True):
        try:
            records.append(run(modality, seed, plan, output_dir, device, overwrite))
        except RunFailed as error:
            logging.error('%s: %s', run_name(modality, seed), error)
            failed.append(run_name(modality, seed))
    return records, failed


def collect(records, failed, seeds, modalities, plan, output_dir, device):
    paired = differences(records)
    return {
        'created': datetime.datetime.now().isoformat(' ', 'seconds'),
        'dataset_dir': plan.dataset_dir, 'output_dir': os.path.abspath(output_dir),
        'dataset': dataset_summary(plan.dataset_dir, plan.portion),
        'schedule': plan.as_json(), 'seeds': seeds, 'modalities': modalities, 'device': device,
        'machine': host.machine(),
        'runs': records, 'failed': failed,
        'summary': summarise(records, modalities),
        'differences': paired,
        'expectations': check_expectations(paired),
        'total_run_minutes': sum(r['train_seconds'] + r['eval_seconds'] for r in records) / 60,
    }


def write_outputs(results, output_dir, report_path):
    """results.json and the report (keeping its hand-written notes)."""
    helper.write_json(os.path.join(output_dir, RESULTS_FILE), results)
    with helper.atomic_write(report_path, encoding='utf-8') as handle:
        handle.write(report_text(results, kept_notes(report_path)))
