"""The preset functions (each returns a fresh ``HParams``)."""

import dataclasses

from sketchtk.config import HParams
from sketchtk.data.loader import DEFAULT_CATEGORIES


def paper():
    """RPCL-pix2seq as published: HyperLSTM 2048, z 128, batch 128, 5 x 2 GMM components."""
    return HParams()


def default():
    """CPU-sized: HyperLSTM 256 on the embedded QuickDraw categories, about 35-45 minutes on 2
    cores (at most 1200 steps of batch 64, about 2 s each; early stopping usually ends it sooner).
    Sketches longer than 250 points are dropped (counted and logged by the loader), as both
    references do: uncapped, one 841-point drawing made every batch 841 steps long (issue 10)."""
    return HParams(
        categories=DEFAULT_CATEGORIES,
        num_mixture=len(DEFAULT_CATEGORIES),
        max_seq_len=250,
        dec_rnn_size=256,
        batch_size=64,
        num_steps=1200,
        eval_every=100,
        gmm_warmup_steps=200,
        log_every=10,
    )


# magenta's sketch_rnn conventions (model.py get_default_hparams and 208-210, 344-351;
# sketch_rnn_train.py 278-281), where they differ from RPCL-pix2seq's: both loss terms averaged
# (reconstruction over time and batch, KL over batch and z dims), total = L_R + w * max(KL, 0.2),
# w annealed 0.01 -> 0.5 with decay 0.99995, lr decayed every step, Adam beta1 0.9, initial-state
# kernel N(0, 0.001^2). docs/CONVENTIONS.md puts the two side by side.
MAGENTA_CONVENTIONS = dict(
    loss_convention="magenta",
    kl_weight=0.5,
    kl_weight_start=0.01,
    kl_decay_rate=0.99995,
    kl_tolerance=0.2,
    adam_beta1=0.9,
    lr_steps_per_decay=1.0,
    dec_state_init="small_normal",
)


def sketch_rnn():
    """sketch-rnn as magenta releases it: bi-LSTM 256 encoder, LSTM 512 decoder, batch 100."""
    return HParams(model="sketch_rnn", dec_model="lstm", dec_rnn_size=512, enc_rnn_size=256,
                   batch_size=100, max_seq_len=250, random_scale_factor=0.15, de_weight=0.0,
                   **MAGENTA_CONVENTIONS)


def sketch_pix2seq():
    """sketch-pix2seq: the CNN encoder of 48x48 images, N(0, I) prior, sketch-rnn's decoder and
    conventions (as magenta's sketch_rnn, with the image encoder)."""
    return sketch_rnn().replace(model="sketch_pix2seq")


def sketch_rnn_default():
    """sketch-rnn with magenta's conventions at the ``default`` preset's size and data, so it
    compares with CPU-sized RPCL-pix2seq step for step (same decoder, batch and budget)."""
    return dataclasses.replace(default(), model="sketch_rnn", de_weight=0.0,
                               **MAGENTA_CONVENTIONS)


def sketch_pix2seq_default():
    """sketch-pix2seq with magenta's conventions at the ``default`` preset's size and data."""
    return sketch_rnn_default().replace(model="sketch_pix2seq")


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


def quickstart():
    """The README's first run: small enough to train in about 2 minutes on 2 CPU cores, trained
    long enough (200 steps) that the samples are visible strokes (the ``smoke`` model, 6 steps,
    mostly ends its sketches at once). An LSTM 128 decoder, z 16, batch 32, sketches capped at
    100 points (4 of the 332 training drawings are longer), learning rate 0.003 (at 0.002 the
    best validation reconstruction was 75.6, at 0.003 68.3, with more pen lifts and corners)."""
    return HParams(
        categories=DEFAULT_CATEGORIES,
        num_mixture=len(DEFAULT_CATEGORIES),
        num_sub=1,
        dec_model="lstm",
        dec_rnn_size=128,
        z_size=16,
        mdn_components=10,
        batch_size=32,
        learning_rate=0.003,
        num_steps=200,
        eval_every=100,
        gmm_warmup_steps=100,
        log_every=20,
        max_seq_len=100,
    )


def chirodiff():
    """ChiroDiff's configuration (dasayan05/chirodiff config.yml): bi-GRU 3 x 96, random-Fourier
    time embedding of size 8, linear schedule, eps-prediction, pen diffused as a channel, AdamW 1e-3
    (weight decay 1e-2), gradient norm clip 0.1, EMA 0.9999, arc-length resampling at 0.05 of the
    radius. T = 100 as in its README (its config.yml has 35); ``representation=absolute`` gives
    ``threeseqabs``. Sized for the embedded data on a CPU: batch 64, 3000 steps."""
    return HParams(
        model="stroke_diffusion", categories=DEFAULT_CATEGORIES, denoiser="bigru",
        denoiser_units=96, denoiser_layers=3, representation="delta", diffusion_steps=100,
        schedule="linear", parametrisation="eps", pen_mode="channel", time_embedding="fourier",
        time_embedding_dim=8, learning_rate=1e-3, weight_decay=1e-2, grad_clip=0.1,
        ema_decay=0.9999, resample_spacing=0.05, max_seq_len=160, random_scale_factor=0.1,
        augment_stroke_prob=0.0, batch_size=64, num_steps=3000, eval_every=250, log_every=10,
        early_stop_patience=1000)


def sketchknitter():
    """SketchKnitter's configuration (wangqiang9/SketchKnitter sketch_diffusion/script_util.py,
    train.sh): delta (stroke-3) sequences of at most 96 points, T = 1000 linear, eps-prediction, a
    separate pen head with cross-entropy weight 0.01, AdamW 1e-4, EMA 0.9999; the denoiser is a
    1-D UNet convolving along the point axis (its release convolves across the 96 points as
    channels). Sized for the embedded data on a CPU: 64 base channels, batch 64, 3000 steps."""
    return HParams(
        model="stroke_diffusion", categories=DEFAULT_CATEGORIES, denoiser="unet1d",
        denoiser_units=64, denoiser_layers=3, representation="delta", diffusion_steps=1000,
        schedule="linear", parametrisation="eps", pen_mode="head", pen_loss_weight=0.01,
        time_embedding="sinusoidal", time_embedding_dim=64, learning_rate=1e-4, weight_decay=0.0,
        grad_clip=1.0, ema_decay=0.9999, max_seq_len=96, random_scale_factor=0.0,
        augment_stroke_prob=0.0, batch_size=64, num_steps=3000, eval_every=250, log_every=10,
        early_stop_patience=1000)


def diffusion_smoke():
    """A tiny stroke-diffusion model for tests and first runs: a 2-block transformer of width 32
    (the fastest denoiser to build and call on a CPU), T = 50, sketches of at most 96 points."""
    return HParams(
        model="stroke_diffusion", categories=DEFAULT_CATEGORIES, denoiser="transformer",
        denoiser_units=32, denoiser_layers=2, denoiser_heads=2, representation="delta",
        diffusion_steps=50, schedule="linear", pen_mode="channel", time_embedding_dim=8,
        cond_dim=8, learning_rate=3e-3, weight_decay=0.0, grad_clip=1.0, ema_decay=0.99,
        max_seq_len=96, random_scale_factor=0.0, augment_stroke_prob=0.0, batch_size=16,
        num_steps=6, eval_every=3, log_every=1)


# Non-Gaussian and shortest-path processes (issue 12; README "Star-shaped and shortest-path
# diffusion"). The SPD constants are fitted on the embedded data's normalised absolute
# coordinates at 96 points (``python -m sketchtk.diffusion.spectrum``).
SPD_EMBEDDED_ABSOLUTE = dict(spd_c1=0.003123, spd_c2=0.02854, spd_m=2.163)


def star_smoke():
    """``diffusion_smoke`` with the mixed star-shaped process (Gaussian positions + Bernoulli
    pen, KL loss), for tests."""
    return dataclasses.replace(diffusion_smoke(), process="star", star_stat_batches=2)


def spd_smoke():
    """``diffusion_smoke`` with shortest-path diffusion along the points (absolute coordinates,
    the fitted spectrum, a pen head), for tests."""
    return dataclasses.replace(diffusion_smoke(), process="spd", representation="absolute",
                               pen_mode="head", pen_loss_weight=0.1, **SPD_EMBEDDED_ABSOLUTE)


# Fitted on the embedded data's 48 x 48 renders without the DC bin (``python -m
# sketchtk.diffusion.spectrum --representation=raster``, c2 searched up to 1: the power law fits
# the renders poorly, log RMSE 0.59, their axis-aligned strokes make the spectrum anisotropic).
# Kept over ``fit_raster_spectrum``'s power law (c1 0.0386, c2 2.1e-4, m 1.26, log RMSE 0.22 on
# log-binned rings), whose 200-step samples were nearly blank (README, raster SPD).
SPD_EMBEDDED_RASTER = dict(spd_c1=8.82, spd_c2=1.123, spd_m=11.91)


def spd_raster_smoke():
    """Shortest-path diffusion of 48 x 48 renders (``model=raster_diffusion``): a 2-level
    UNet2D of 16 channels, T = 20, for tests."""
    return HParams(
        model="raster_diffusion", categories=DEFAULT_CATEGORIES, png_width=48,
        denoiser_units=16, denoiser_layers=2, diffusion_steps=20, time_embedding="sinusoidal",
        time_embedding_dim=16, cond_dim=8, class_conditional=True, learning_rate=2e-3,
        weight_decay=0.0, grad_clip=1.0, max_seq_len=250, random_scale_factor=0.0,
        augment_stroke_prob=0.0, batch_size=16, num_steps=6, eval_every=3, log_every=1,
        valid_batches=2, **SPD_EMBEDDED_RASTER)


def spd_raster():
    """``spd_raster_smoke`` at a CPU size: UNet2D 32 channels, 2 levels, T = 200, batch 32,
    1500 steps (a few tens of minutes on 2 cores)."""
    return dataclasses.replace(spd_raster_smoke(), denoiser_units=32, diffusion_steps=200,
                               batch_size=32, num_steps=1500, eval_every=250, log_every=10,
                               valid_batches=10)


def star_chirodiff():
    """ChiroDiff's configuration with the mixed star-shaped process (T = 100; Gaussian
    positions on the linear schedule, Bernoulli pen on the cosine one)."""
    return dataclasses.replace(chirodiff(), process="star")


def star_polar_chirodiff():
    """``star_chirodiff`` with each delta offset as a direction angle (von Mises, kappa_t = the
    linear schedule's SNR) and a step length (Gaussian), + the Bernoulli pen."""
    return dataclasses.replace(star_chirodiff(), star_positions="polar")


def spd_chirodiff():
    """ChiroDiff's configuration with shortest-path diffusion on absolute coordinates and a pen
    head (the fitted spectrum; delta offsets are near-white, where SPD is close to DDPM)."""
    return dataclasses.replace(chirodiff(), process="spd", representation="absolute",
                               pen_mode="head", pen_loss_weight=0.1, **SPD_EMBEDDED_ABSOLUTE)
