"""The arithmetic precision a graph runs in (--precision): the policy that
picks one for the device, and the session config whose graph rewrite applies
it."""
import os
import sys

import helper
from ser import defaults, host

# fp16 gradients smaller than 6e-8 flush to zero: under fp16 the loss is
# multiplied by a scale before it is differentiated and the gradients divided
# by it, in fp32. A step whose gradients overflow is skipped and the scale
# halved; after LOSS_SCALE_PERIOD finite steps in a row it is doubled (the
# dynamic loss scaling of Micikevicius et al., "Mixed precision training", 2018).
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_PERIOD = 2000
# GPUs with tensor cores (compute capability 7.0, Volta, and later) run fp16
# matrix products natively.
TENSOR_CORE_CAPABILITY = (7, 0)
# CPU flags (/proc/cpuinfo) of native bf16 arithmetic. Without them oneDNN still
# runs the bf16 rewrite, emulated, and a training step takes longer than fp32
# (BENCHMARKS.md), so 'auto' does not pick it.
BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')
# Read by TensorFlow once, when it loads. Unset, it leaves oneDNN off on CPUs
# without AVX-512 VNNI or newer (an AVX2-only AMD EPYC, say), where oneDNN's
# fp32 kernels are slower than its own; bf16 runs through oneDNN only.
ONEDNN_VARIABLE = 'TF_ENABLE_ONEDNN_OPTS'


def decide_precision(requested, gpu_capability, cpu_flags_found, onednn):
    """The precision to run in, from the facts: `gpu_capability` (major, minor)
    of the GPU in use, None on the CPU; the CPU's flags; whether TensorFlow was
    built with oneDNN. An explicit precision the device cannot run raises
    InputError; bf16 on a CPU without native bf16 runs (emulated, slower) so
    that it can be compared."""
    if requested not in defaults.PRECISIONS:
        raise helper.InputError('--precision', None, '%r is none of %s'
                                % (requested, ', '.join(defaults.PRECISIONS)))
    on_gpu = gpu_capability is not None
    if requested == 'auto':
        if on_gpu:
            return 'fp16' if tuple(gpu_capability) >= TENSOR_CORE_CAPABILITY else 'fp32'
        native_bf16 = onednn and any(flag in cpu_flags_found for flag in BF16_CPU_FLAGS)
        return 'bf16' if native_bf16 else 'fp32'
    if requested == 'fp16' and not on_gpu:
        # TensorFlow's fp16 emulation on the CPU (auto_mixed_precision_cpu)
        # crashes the process on this model's training step.
        raise helper.InputError('--precision', None, 'fp16 runs on a GPU only (on the CPU use '
                                'bf16 or auto)')
    if requested == 'bf16' and on_gpu:
        raise helper.InputError('--precision', None, 'bf16 is the CPU\'s (oneDNN) rewrite; on a '
                                'GPU use fp16 or auto')
    if requested == 'bf16' and not onednn:
        raise helper.InputError('--precision', None, 'bf16 runs through oneDNN, which is off in '
                                'this process: set %s=1 before TensorFlow loads (train.py and '
                                'eval.py do when asked for bf16)' % ONEDNN_VARIABLE)
    return requested


def prepare_process(precisions):
    """Before TensorFlow first loads in this process: turn oneDNN on where
    TensorFlow would leave it off, when any of `precisions` may run bf16 (bf16,
    or auto on a CPU with native bf16). Once TensorFlow is loaded, or when
    ONEDNN_VARIABLE is set, it changes nothing."""
    native_bf16 = any(flag in host.cpu_flags() for flag in BF16_CPU_FLAGS)
    if ('bf16' in precisions or ('auto' in precisions and native_bf16)) and \
            'tensorflow' not in sys.modules:
        os.environ.setdefault(ONEDNN_VARIABLE, '1')


def onednn_enabled():
    """Whether TensorFlow runs oneDNN's kernels in this process."""
    helper.import_tensorflow()
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())


def gpu_capability(device):
    """(major, minor) compute capability of the GPU `device` runs on, None when
    it runs on the CPU; (0, 0) when TensorFlow does not say."""
    tf = helper.import_tensorflow()
    gpus = tf.config.list_physical_devices('GPU')
    if int(device) < 0 or not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[min(int(device), len(gpus) - 1)])
    return tuple(details.get('compute_capability') or (0, 0))


def choose_precision(requested, device):
    """decide_precision on this machine for `--device`."""
    if requested == 'fp32':
        return requested
    return decide_precision(requested, gpu_capability(device), host.cpu_flags(),
                            onednn_enabled())


def session_config(device, xla=False, precision='fp32'):
    """helper.session_config(device, xla) with `precision` (defaults.PRECISIONS; see
    choose_precision) turning on TensorFlow's mixed-precision graph rewrite:
    bf16 through oneDNN on the CPU, fp16 on a GPU. The rewrite casts inside
    the graph only: variables, and so the checkpoints, stay float32."""
    config = helper.session_config(device, xla=xla)
    from tensorflow.core.protobuf import rewriter_config_pb2
    rewrites = config.graph_options.rewrite_options
    precision = choose_precision(precision, device)
    if precision == 'bf16':
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == 'fp16':
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    return config


def loss_scaled_minimize(optimizer, loss, global_step, initial_scale=INITIAL_LOSS_SCALE,
                         period=LOSS_SCALE_PERIOD):
    """optimizer.minimize(loss) with dynamic loss scaling (see
    INITIAL_LOSS_SCALE): the update op. A skipped step does not advance
    global_step. The scale is a local variable, loss_scale/scale: checkpoints
    stay what an fp32 run writes, so any of them resumes in any precision,
    and a resumed fp16 run finds its scale again within a few steps."""
    tf = helper.import_tensorflow()
    local = [tf.GraphKeys.LOCAL_VARIABLES]
    with tf.variable_scope('loss_scale'):
        scale = tf.get_variable('scale', initializer=float(initial_scale), trainable=False,
                                collections=local)
        finite_steps = tf.get_variable('finite_steps', initializer=tf.constant(0, tf.int64),
                                       trainable=False, collections=local)
    scaled = optimizer.compute_gradients(loss * scale)
    grads_and_vars = [(None if gradient is None else gradient / scale, variable)
                      for gradient, variable in scaled]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(gradient))
                            for gradient, _ in grads_and_vars if gradient is not None])
    tf.summary.scalar('loss_scale', scale)

    def apply():
        with tf.control_dependencies([optimizer.apply_gradients(grads_and_vars, global_step)]):
            grow = tf.equal(finite_steps + 1, period)
            return tf.group(scale.assign(tf.where(grow, 2.0 * scale, scale)),
                            finite_steps.assign(tf.where(grow, tf.constant(0, tf.int64),
                                                         finite_steps + 1)))

    def skip():
        return tf.group(scale.assign(tf.maximum(scale / 2.0, 1.0)),
                        finite_steps.assign(tf.constant(0, tf.int64)))

    return tf.cond(finite, apply, skip)
