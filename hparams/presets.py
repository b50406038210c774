"""The preset functions (each returns a fresh ``HParams``)."""

from sketchtk.config import HParams
from sketchtk.data.loader import DEFAULT_CATEGORIES


def paper():
    """RPCL-pix2seq as published: HyperLSTM 2048, z 128, batch 128, 5 x 2 GMM components."""
    return HParams()


def default():
    """CPU-sized: HyperLSTM 256 on the embedded QuickDraw categories, about 35-45 minutes on 2
    cores (at most 1200 steps of batch 64, about 2 s each; early stopping usually ends it sooner)."""
    return HParams(
        categories=DEFAULT_CATEGORIES,
        num_mixture=len(DEFAULT_CATEGORIES),
        dec_rnn_size=256,
        batch_size=64,
        num_steps=1200,
        eval_every=100,
        gmm_warmup_steps=200,
        log_every=10,
    )


def smoke():
    """A tiny model for tests and first runs: seconds per step count, not quality."""
    return HParams(
        categories=DEFAULT_CATEGORIES,
        num_mixture=2,
        num_sub=2,
        dec_rnn_size=32,
        hyper_num_units=16,
        hyper_embedding_size=4,
        enc_rnn_size=16,
        z_size=8,
        mdn_components=3,
        batch_size=16,
        num_steps=6,
        eval_every=3,
        gmm_warmup_steps=2,
        log_every=1,
        max_seq_len=200,
        classifier_epochs=1,
    )
