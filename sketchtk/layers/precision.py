"""Mixed precision for the stroke decoder: bfloat16 matmul operands, float32 everything else.

``hparams.precision`` names the policy: ``"float32"`` (default) or ``"mixed_bfloat16"``. Under
``mixed_bfloat16`` the large matmuls of the decoder (the fused recurrent matmul of every step,
forward and backward, the hoisted weight-gradient matmuls and the mixture head) multiply
bfloat16 operands; oneDNN accumulates in float32 (AVX512_BF16 on this kind of CPU) and the
products are cast back to float32. Weights (the "master" copy the optimiser updates), recurrent
states, gate nonlinearities, layer norms, the mixture likelihood and the loss stay float32. This
is explicit casting around the matmuls rather than Keras' ``mixed_bfloat16`` policy, which would
also run the elementwise gate math and the mixture math in bfloat16.
"""

import tensorflow as tf

from sketchtk.config import PRECISIONS
MATMUL_DTYPES = ("float32", "bfloat16")


def matmul_dtype_for(precision):
    """The decoder's ``matmul_dtype`` for an ``hparams.precision`` value."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; choose one of {list(PRECISIONS)}")
    return "bfloat16" if precision == "mixed_bfloat16" else "float32"


def check_matmul_dtype(matmul_dtype):
    """``matmul_dtype`` as a ``tf.DType`` after checking it is one of ``MATMUL_DTYPES``."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype {matmul_dtype!r}; choose one of {list(MATMUL_DTYPES)}")
    return tf.as_dtype(matmul_dtype)


def mixed_matmul(a, b, dtype, **kwargs):
    """``tf.matmul(a, b, **kwargs)`` with both operands cast to ``dtype``, the result in ``a``'s.

    With ``dtype`` bfloat16 this is the mixed-precision matmul described above; with float32 it is
    a plain matmul (no casts).
    """
    if dtype == a.dtype:
        return tf.matmul(a, b, **kwargs)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), a.dtype)
