"""Every benchmark of the pipeline on this machine: `make bench`.

    .venv/bin/python bench/run_all.py [--stages alignment,train,...] [--bench_dir DIR]

Generates the demo corpus (make_demo_corpus.py, 16 videos x 60 s by
default) and the pipeline's outputs on it into --bench_dir (default: a
temporary directory), untimed, then runs each stage's benchmark as its own
process (bench/bench_<stage>.py, each runnable alone), collects the figures
each prints as its last line, checks the targets, and writes
--output (default bench/results/latest.json):
    {"machine": {cpu, cores, cpu_instructions, tensorflow, onednn, gpu, load_average, ...},
     "metrics": {name: value}, "targets": {name: {value, target, rule, met}},
     "cpu_seconds_per_step": {model_step, train}, "settings": {...},
     "stages": {stage: {metrics, details, load_average, other_cores, seconds}},
     "date": ISO time}
and prints the table. The load average is taken when the run starts and when
each stage starts; other_cores is how many cores other processes used on
average while the stage ran (the machine's busy CPU time minus the stage's
own): on a shared machine every figure is only as good as these.
Figures are medians of repeats where a repeat is cheap (see each script).
"""

import datetime
import json
import logging
import os
import resource
import statistics
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import corpus, machine, options  # noqa: E402
from ser import host  # noqa: E402

FLAGS = flags.FLAGS
RESULTS_FILE = os.path.join(corpus.REPO, 'bench', 'results', 'latest.json')
STAGES = ('alignment', 'tfrecord', 'input_pipeline', 'model_step', 'step_profile', 'train',
          'eval', 'predict', 'service', 'decoding', 'long_audio', 'stream')
flags.DEFINE_list('stages', list(STAGES), 'Stages to run, of: %s.' % ', '.join(STAGES))
helper.define_flags('output', 'batch_size', 'sequence_length', 'xla', 'verbose')
options.define('repeats', 'model_steps', 'train_steps', 'train_warmup_steps',
               'train_log_every_n_steps', 'input_batches', 'predict_duration', 'service_requests',
               'service_utterances', 'long_audio_minutes', 'decoding_seconds', 'stream_seconds')
flags.DEFINE_list('stream_counts', ['4', '8', '12', '16'], 'Concurrent streams the stream '
                  'benchmark tries, to find how many stay at real time.')

# (ratio or metric, numerator, denominator or None, target, rule). The model
# step train.py is compared with is the one in train.py's precision.
TARGETS = (
    ('input_pipeline_over_train', 'input_pipeline_frames_per_s', 'train_frames_per_s', 5.0, '>='),
    ('train_over_model_step', 'train_frames_per_s', 'model_step_frames_per_s', 0.9, '>='),
    # Real frames learned per second, train.py's defaults over fp32 + per-segment
    # windows with the padding computed (issue 13 asked 1.5, issue 23 2.8 where bf16 is native).
    ('train_real_over_baseline', 'train_real_frames_per_s', 'train_real_frames_per_s_baseline',
     2.8, '>='),
    # Issue 23: eval.py at the speed of predict.py's model.
    ('eval_over_predict', 'eval_frames_per_s', 'predict_frames_per_s_60s', 0.8, '>='),
    ('predict_rtf_60s', 'predict_rtf_60s', None, 0.05, '<='),
    ('service_p95_ms_4clients', 'service_p95_ms_4clients', None, 500.0, '<='),
    ('predict_max_rss_mb_60min', 'predict_max_rss_mb_60min', None, 2048.0, '<='),
    ('stream_frame_latency_ms_p95', 'stream_frame_latency_ms_p95', None, 300.0, '<='),
)
# CPU flags worth knowing beside a training figure: the vector and matrix
# instructions oneDNN can use (bf16 is native only with avx512_bf16 or amx_bf16).
CPU_INSTRUCTION_PREFIXES = ('sse4', 'avx', 'fma', 'f16c', 'amx')
UNITS = {'alignment': 'audio s per wall s', 'frames_per_s': 'frames/s',
         'predict_rtf': 'model s per audio s', '_ms_': 'ms', 'requests_per_s': 'requests/s',
         '_mb_': 'MB', 'streams': 'streams', 'gflops': 'GFLOP/s', 'flops_per_frame': 'FLOP',
         'fraction': 'of peak', 'decode_seconds': 's'}


def stage_arguments(stage):
    """(script, arguments) of one stage's benchmark, from the flags."""
    shapes = ['--batch_size=%d' % FLAGS.batch_size, '--sequence_length=%d' % FLAGS.sequence_length]
    repeats = ['--repeats=%d' % FLAGS.repeats]
    xla = ['--xla'] if FLAGS.xla else []
    arguments = {
        'alignment': corpus.corpus_flags() + repeats + ['--aligner=aeneas'],
        'tfrecord': corpus.corpus_flags() + repeats,
        'input_pipeline': corpus.corpus_flags() + shapes + repeats
        + ['--input_batches=%d' % FLAGS.input_batches],
        'model_step': shapes + xla + ['--model_steps=%d' % FLAGS.model_steps,
                                      '--seed=%d' % FLAGS.seed,
                                      '--sample_rate=%d' % FLAGS.sample_rate],
        'step_profile': shapes + ['--seed=%d' % FLAGS.seed, '--sample_rate=%d' % FLAGS.sample_rate,
                                  '--precision=fp32'],
        'train': corpus.corpus_flags() + shapes + xla
        + ['--train_steps=%d' % FLAGS.train_steps,
           '--train_warmup_steps=%d' % FLAGS.train_warmup_steps,
           '--train_log_every_n_steps=%d' % FLAGS.train_log_every_n_steps],
        'eval': corpus.corpus_flags() + repeats,
        'predict': repeats + ['--predict_duration=%g' % FLAGS.predict_duration,
                              '--seed=%d' % FLAGS.seed],
        'service': ['--service_requests=%d' % FLAGS.service_requests,
                    '--service_utterances=%d' % FLAGS.service_utterances, '--seed=%d' % FLAGS.seed],
        'decoding': ['--decoding_seconds=%g' % FLAGS.decoding_seconds],
        'long_audio': ['--long_audio_minutes=%g' % FLAGS.long_audio_minutes,
                       '--one_pass_minutes=%g' % min(5, FLAGS.long_audio_minutes),
                       '--seed=%d' % FLAGS.seed],
        'stream': ['--stream_seconds=%g' % FLAGS.stream_seconds,
                   '--concurrent_seconds=%g' % min(20.0, FLAGS.stream_seconds),
                   '--streams=%s' % ','.join(FLAGS.stream_counts), '--seed=%d' % FLAGS.seed],
    }[stage]
    return os.path.join('bench', 'bench_%s.py' % stage), arguments


def children_cpu_seconds():
    """CPU seconds used by this process's finished children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(stage):
    """The stage's last-line JSON, with how long it took and how many cores
    other processes on the machine used meanwhile (None where unknown)."""
    script, arguments = stage_arguments(stage)
    logging.info('%s: %s %s', stage, script, ' '.join(arguments))
    busy, ours = machine.busy_cpu_seconds(), children_cpu_seconds()
    stdout, _, seconds = corpus.run_script(script, *arguments)
    result = json.loads(stdout.strip().splitlines()[-1])
    result['seconds'] = round(seconds, 1)
    result['other_cores'] = None if busy is None else round(
        max(0.0, machine.busy_cpu_seconds() - busy - (children_cpu_seconds() - ours)) / seconds, 2)
    return result


def cpu_instructions():
    return sorted(flag for flag in host.cpu_flags() if flag.startswith(CPU_INSTRUCTION_PREFIXES))


def check_targets(metrics, train_precision='fp32'):
    targets = {}
    for name, numerator, denominator, target, rule in TARGETS:
        if denominator == 'model_step_frames_per_s' and train_precision != 'fp32':
            denominator += '_' + train_precision
        if numerator not in metrics or (denominator and denominator not in metrics):
            continue
        value = metrics[numerator] / metrics[denominator] if denominator else metrics[numerator]
        met = value >= target if rule == '>=' else value <= target
        targets[name] = {'value': round(value, 4), 'target': target, 'rule': rule, 'met': met}
    return targets


def cpu_per_step(stages):
    """CPU seconds (all threads) per training step of the model step and of
    train.py: unlike wall time, barely moved by other processes on the
    machine, so train.py's own overhead shows even when the machine is busy."""
    cpu = {}
    if 'model_step' in stages:
        cpu['model_step'] = statistics.median(stages['model_step']['details']['step_cpu_seconds'])
    if 'train' in stages:
        cpu['train'] = stages['train']['details']['cpu_seconds_per_step']
    return {name: round(value, 4) for name, value in cpu.items()}


def unit(metric):
    return next(text for key, text in UNITS.items() if key in metric)


def table(results):
    """The printed table: machine, metrics with the contention during each
    stage, targets."""
    lines = ['Machine: %s' % machine.describe(results['machine']),
             'CPU instructions: %s' % ' '.join(results['machine']['cpu_instructions']), '',
             '%-30s %11s  %-20s %s' % ('metric', 'value', 'unit',
                                       'load at start / cores others used')]
    for outcome in results['stages'].values():
        others = outcome['other_cores']
        for metric in outcome['metrics']:
            lines.append('%-30s %11.5g  %-20s %.2f / %s' % (
                metric, results['metrics'][metric], unit(metric), outcome['load_average'][0],
                '?' if others is None else '%.2f' % others))
    lines.append('')
    for name, target in results['targets'].items():
        lines.append('target %-26s %10.3f %s %-6g %s' % (name, target['value'], target['rule'],
                                                         target['target'],
                                                         'met' if target['met'] else 'MISSED'))
    if results['cpu_seconds_per_step']:
        lines.append('CPU seconds per training step (all threads): %s' % ', '.join(
            '%s %.3f' % item for item in sorted(results['cpu_seconds_per_step'].items())))
    return '\n'.join(lines)


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.stages) - set(STAGES))
    if unknown:
        logging.error('unknown stage(s) %s; stages are %s', ', '.join(unknown), ', '.join(STAGES))
        return 1
    started = datetime.datetime.now()
    results = {'machine': dict(machine.machine(), cpu_instructions=cpu_instructions()),
               'metrics': {}, 'stages': {}, 'date': started.isoformat(' ', 'seconds')}
    logging.info('machine: %s', machine.describe(results['machine']))
    with corpus.work_directory('tfrecords') as (work_dir, summary):
        FLAGS.bench_dir = work_dir
        logging.info('corpus: %d videos, %.0f s of audio, in %s', summary['videos'],
                     summary['seconds'], work_dir)
        for stage in (s for s in STAGES if s in FLAGS.stages):
            outcome = run_stage(stage)
            stage_machine = outcome.pop('machine')
            metrics = {key: value for key, value in outcome.items()
                       if key not in ('details', 'seconds', 'other_cores')}
            results['metrics'].update(metrics)
            results['stages'][stage] = {'metrics': sorted(metrics), 'seconds': outcome['seconds'],
                                        'load_average': stage_machine['load_average'],
                                        'other_cores': outcome['other_cores'],
                                        'details': outcome.get('details', {})}
            logging.info('%s: %s (%.0f s; load %.2f at its start, other processes used %s '
                         'cores meanwhile)', stage,
                         ', '.join('%s %.5g' % item for item in sorted(metrics.items())),
                         outcome['seconds'], stage_machine['load_average'][0],
                         outcome['other_cores'])
    train_precision = results['stages'].get('train', {}).get('details', {}).get('precision',
                                                                             'fp32')
    results['targets'] = check_targets(results['metrics'], train_precision)
    results['cpu_seconds_per_step'] = cpu_per_step(results['stages'])
    results['settings'] = {
        'videos': FLAGS.videos, 'seconds_per_video': FLAGS.seconds_per_video,
        'sample_rate': FLAGS.sample_rate, 'seed': FLAGS.seed, 'batch_size': FLAGS.batch_size,
        'sequence_length': FLAGS.sequence_length, 'repeats': FLAGS.repeats,
        'model_steps': FLAGS.model_steps, 'train_steps': FLAGS.train_steps,
        'train_warmup_steps': FLAGS.train_warmup_steps, 'input_batches': FLAGS.input_batches,
        'predict_duration': FLAGS.predict_duration, 'xla': FLAGS.xla,
        'load_average_at_end': machine.load_average(),
        'minutes': round((datetime.datetime.now() - started).total_seconds() / 60, 1)}
    output = FLAGS.output or RESULTS_FILE
    helper.write_json(output, results)
    print(table(results))
    logging.info('results written to %s', output)
    return 0


if __name__ == '__main__':
    helper.run(main)
