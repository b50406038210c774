"""Hyper-parameters: one frozen dataclass, presets as code, and the ``key=value`` override syntax.

Every hparam of the RPCL-pix2seq reference exists here with the same name and meaning (see the
original README in ``shared/seeds``); the extra ones are documented field by field. Configs are
never mutated at run time: ``HParams.replace`` returns a new object, and values found from data
(``max_seq_len``, the scale factor) live in the data layer and in ``model_config.json``.
"""

import dataclasses
import json
import math

from sketchtk.errors import ConfigError

MODELS = ("rpcl_pix2seq", "sketch_pix2seq", "sketch_rnn", "sketch_a_net", "stroke_diffusion",
          "raster_diffusion")  # raster_diffusion: SPD of 48x48 renders (issue 12)
# stroke_diffusion choices (sketchtk.layers.denoisers, sketchtk.diffusion, sketchtk.data.point_sequences)
DENOISERS = ("bigru", "transformer", "unet1d")
REPRESENTATIONS = ("delta", "absolute")
SCHEDULES = ("linear", "cosine")
PARAMETRISATIONS = ("eps", "x0", "v")
LOSS_CONVENTIONS = ("rpcl", "magenta")
OFFSET_NLLS = ("reference", "exact")
DEC_STATE_INITS = ("he_normal", "small_normal")
PEN_MODES = ("head", "channel")
TIME_EMBEDDINGS = ("fourier", "sinusoidal")
SAMPLE_XLA = ("auto", "on", "off")  # StrokeDiffusion.sample_xla
COND_ENCODERS = ("none", "pointcloud", "sketch")  # sketchtk.layers.cond_encoders
COND_ENCODER_OUTS = ("tanh", "norm", "batchnorm")  # sketchtk.layers.cond_encoders.OUTPUTS
COND_SKETCH_INPUTS = ("points", "features")  # StrokeDiffusion.condition_vector
LOSS_WEIGHTINGS = ("uniform", "x0")  # GaussianProcess.loss_weight
PROCESSES = ("gaussian", "star", "spd")  # sketchtk.diffusion: process, star, spd
STAR_POSITIONS = ("gaussian", "beta", "polar")  # the star-shaped family of the (x, y) channels
STAR_LOSSES = ("kl", "kl_rescaled")
DEC_MODELS = ("lstm", "layer_norm", "hyper")
# float32, or bfloat16 operands for the stroke decoder's matmuls (sketchtk.layers.precision)
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class HParams:
    """All hyper-parameters of a run. Field comments give the meaning; defaults are the paper's."""

    # --- the reference's hparams (same names, same meaning) ---
    categories: tuple = ("bee", "bus")  # sketch categories for training
    num_steps: int = 1000001  # max training steps (the reference ignored it; sketchtk obeys it)
    save_every: int = 1  # epochs per checkpoint/validation (an epoch = one pass, see eval_every)
    dec_rnn_size: int = 2048  # decoder units
    dec_model: str = "hyper"  # decoder cell: lstm, layer_norm or hyper
    max_seq_len: int = -1  # cap on points per sketch; -1 = found from the data (no cap)
    z_size: int = 128  # latent size
    batch_size: int = 128  # global minibatch size (split across replicas)
    num_mixture: int = 5  # GMM categories (recommended: number of categories)
    learning_rate: float = 0.001
    decay_rate: float = 0.9999  # learning-rate decay per step (applied as decay^(step/3))
    min_learning_rate: float = 0.00001
    grad_clip: float = 1.0  # per-value gradient clipping
    de_weight: float = 0.5  # weight of the deconv regulariser's loss
    use_recurrent_dropout: bool = True
    recurrent_dropout_prob: float = 0.90  # keep probability
    use_input_dropout: bool = False
    input_dropout_prob: float = 0.90  # keep probability
    use_output_dropout: bool = False
    output_dropout_prob: float = 0.90  # keep probability
    random_scale_factor: float = 0.10  # x/y scaling augmentation U(1-s, 1+s)
    augment_stroke_prob: float = 0.10  # point-dropping augmentation probability
    png_scale_ratio: float = 1.0  # image-only rescale U(r, 1); the reference's 0.98 desyncs image and strokes
    png_rotate_angle: float = 0.0  # image-only max rotation (degrees, abs value)
    png_translate_dist: float = 0.0  # image-only max translation (pixels, abs value)
    is_training: bool = True  # kept for compatibility; train.py always trains, sample.py never does
    png_width: int = 48  # width of the encoder's sketch images
    num_sub: int = 2  # initial GMM components per category (K = num_mixture * num_sub)
    num_per_category: int = 70000  # training sketches per category (at most)

    # --- sketchtk additions ---
    model: str = "rpcl_pix2seq"  # rpcl_pix2seq | sketch_pix2seq | sketch_rnn | sketch_a_net | stroke_diffusion
    mdn_components: int = 20  # bivariate Gaussians in the stroke decoder's output mixture
    hyper_num_units: int = 256  # HyperLSTM's small LSTM
    hyper_embedding_size: int = 32
    enc_rnn_size: int = 256  # sketch-rnn's bidirectional encoder
    kl_weight: float = 1.0  # final KL weight (sketch-rnn used 0.5)
    kl_weight_start: float = 0.001  # klw = w - (w - start) * kl_decay_rate^step
    kl_decay_rate: float = 0.9999
    kl_tolerance: float = 0.2  # free bits of the N(0, I) KL (sketch-rnn, sketch-pix2seq)
    gmm_ema_rate: float = 0.05  # EMA rate of the GMM parameter updates
    rpcl_rival_rate: float = 1e-4  # de-learning rate of the rival component
    gmm_warmup_steps: int = 500  # EM only until this step
    rpcl_every: int = 3  # afterwards RPCL on every n-th step, EM otherwise
    gmm_active_threshold: float = 1e-3  # alpha at or below this counts as pruned (0.1% of data)
    eval_every: int = 0  # steps between validations/checkpoints; 0 = save_every passes over the data
    early_stop_patience: int = 5  # validations without improvement before stopping
    log_every: int = 10  # steps between history.csv rows
    valid_batches: int = 0  # validation batches per evaluation; 0 = the whole validation set
    seed: int = 0
    precision: str = "float32"  # float32 | mixed_bfloat16: bf16 operands of the decoder's matmuls, fp32 weights/states/loss
    length_buckets: int = 0  # > 0: pad each stroke batch only to the smallest of n fixed lengths (max_seq_len * i / n) >= its longest sketch; 0 = to max_seq_len
    classifier_epochs: int = 20  # sketch_a_net: passes over the training images

    # --- conventions where the two reference codes differ (ALGORITHMS.md 2; docs/CONVENTIONS.md) ---
    loss_convention: str = "rpcl"  # rpcl: L_R summed over time (KL per sketch) | magenta: both averaged
    adam_beta1: float = 0.5  # RPCL-pix2seq model.py:126 uses 0.5; magenta's Adam default 0.9
    lr_steps_per_decay: float = 3.0  # lr decays decay_rate^(step / this); RPCL 3 (model.py:124), magenta 1
    offset_nll: str = "reference"  # reference: -log(sum pi N + 1e-6) (both codes) | exact: log-space
    dec_state_init: str = "he_normal"  # initial-state dense: he_normal (RPCL Cnn.py:127) | small_normal (magenta N(0, 0.001^2))
    gmm_posterior_floor: float = 1e-5  # the reference's clip of gamma before the M-step (model.py:222); 0 = exact posterior

    # --- stroke_diffusion (ChiroDiff / SketchKnitter family; ALGORITHMS.md 4) ---
    denoiser: str = "bigru"  # bigru | transformer | unet1d
    denoiser_units: int = 96  # GRU units / transformer width / UNet base channels (ChiroDiff 96)
    denoiser_layers: int = 3  # GRU layers / transformer blocks / UNet levels (ChiroDiff 3)
    denoiser_heads: int = 4  # transformer attention heads
    representation: str = "delta"  # delta (offsets) | absolute (positions)
    diffusion_steps: int = 100  # T (ChiroDiff README 100, its config 35; SketchKnitter 1000)
    schedule: str = "linear"  # linear (beta 1e-4..2e-2 scaled by 1000/T) | cosine
    parametrisation: str = "eps"  # what the denoiser predicts: eps | x0 | v
    pen_mode: str = "channel"  # channel: pen diffused, thresholded (ChiroDiff); head: CE head (SketchKnitter)
    pen_loss_weight: float = 0.01  # weight of the pen head's cross-entropy (SketchKnitter 0.01)
    time_embedding: str = "fourier"  # fourier (random Fourier, ChiroDiff) | sinusoidal
    time_embedding_dim: int = 8  # ChiroDiff arch_pe_dim 8
    class_conditional: bool = False  # condition the denoiser on the category label
    cond_dim: int = 32  # size of the class embedding
    cfg_drop_prob: float = 0.1  # classifier-free guidance: drop the label with this probability
    ema_decay: float = 0.9999  # EMA of the weights used for sampling (with a num-updates warm-up)
    weight_decay: float = 0.01  # AdamW weight decay (ChiroDiff 1e-2)
    resample_spacing: float = 0.0  # arc-length resampling, fraction of the radius; 0 = off (ChiroDiff 0.05)
    rdp_epsilon: float = 0.0  # RDP after resampling, fraction of the radius; 0 = off
    sample_xla: str = "auto"  # XLA-compile the reverse loop: auto (= off, measured) | on | off
    cond_encoder: str = "none"  # none | pointcloud (set encoder: vectorisation) | sketch (self: abstraction)
    cond_encoder_units: int = 64  # width of the conditioning encoder (its vector has cond_dim entries)
    cond_encoder_out: str = "tanh"  # encoder output: tanh (ChiroDiff) | norm (linear + LayerNorm: no saturation) | batchnorm
    cond_set_pointnet: bool = False  # pointcloud: per-point MLP + max-pool next to the feature token
    cond_set_fourier: int = 0  # pointcloud: random Fourier frequencies of the point coordinates (0 = raw x, y)
    cond_drop_prob: float = 0.0  # cond_encoder: train on a zero vector with this probability (for --cond_guidance; 0 = ChiroDiff)
    cond_sketch_input: str = "points"  # sketch: the normalised points (ChiroDiff) | features (+ the complementary representation, as the denoiser)
    loss_weighting: str = "uniform"  # uniform eps-MSE (both releases) | x0: eps-MSE x clip(1 / SNR_t, 1, loss_weight_max)
    loss_weight_max: float = 100.0  # loss_weighting=x0: the largest weight (the nearly pure-noise steps)
    process: str = "gaussian"  # gaussian (DDPM) | star (SS-DDPM: positions + Bernoulli pen) | spd (shortest-path, Fourier)
    star_positions: str = "gaussian"  # star: gaussian (normalised coords) | beta (coords mapped to (0, 1)) | polar (von Mises direction + Gaussian length)
    star_loss: str = "kl_rescaled"  # star: kl | kl_rescaled (Beta KL / nu, Gaussian x0-MSE / 2)
    star_stat_batches: int = 10  # star: training batches averaged into the per-t G_t statistics
    star_beta_range: float = 4.0  # star beta: normalised coords in [-r, r] map to (0, 1) (clipped)
    spd_c1: float = 1.59  # spd: S0(f) = c1 / (c2 + |f|)^m, f in cycles per point (fit: sketchtk.diffusion.spectrum)
    spd_c2: float = 0.0086  # spd (the defaults are the reference's CIFAR-10 constants, per pixel)
    spd_m: float = 2.0  # spd

    def replace(self, **changes):
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes).validated()

    def validated(self):
        """Return self after checking values; raises ConfigError naming the bad key."""
        def bad(key, why):
            raise ConfigError(f"hparam {key}={getattr(self, key)!r}: {why}")
        if self.model not in MODELS:
            bad("model", f"unknown model; choose one of {list(MODELS)}")
        if self.dec_model not in DEC_MODELS:
            bad("dec_model", f"unknown decoder; choose one of {list(DEC_MODELS)}")
        if not self.categories:
            bad("categories", "needs at least one category")
        for key, allowed in (("denoiser", DENOISERS), ("representation", REPRESENTATIONS),
                             ("schedule", SCHEDULES), ("parametrisation", PARAMETRISATIONS),
                             ("pen_mode", PEN_MODES), ("time_embedding", TIME_EMBEDDINGS),
                             ("cond_encoder", COND_ENCODERS), ("process", PROCESSES),
                             ("cond_encoder_out", COND_ENCODER_OUTS),
                             ("cond_sketch_input", COND_SKETCH_INPUTS),
                             ("loss_weighting", LOSS_WEIGHTINGS),
                             ("star_positions", STAR_POSITIONS), ("star_loss", STAR_LOSSES),
                             ("sample_xla", SAMPLE_XLA)):
            if getattr(self, key) not in allowed:
                bad(key, f"unknown value; choose one of {list(allowed)}")
        # NaN passes every `<`/`<=` range check below, so reject it once for all float fields.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and math.isnan(value):
                bad(field.name, "must be a number, not NaN")
        for key in ("num_steps", "dec_rnn_size", "z_size", "batch_size", "num_mixture", "num_sub",
                    "png_width", "num_per_category", "mdn_components", "save_every", "rpcl_every",
                    "early_stop_patience", "log_every", "hyper_num_units", "enc_rnn_size",
                    "denoiser_units", "denoiser_layers", "denoiser_heads", "diffusion_steps",
                    "cond_dim", "cond_encoder_units"):
            if getattr(self, key) < 1:
                bad(key, "must be >= 1")
        for key in ("recurrent_dropout_prob", "input_dropout_prob", "output_dropout_prob"):
            if not 0.0 < getattr(self, key) <= 1.0:
                bad(key, "a keep probability must be in (0, 1]")
        for key in ("random_scale_factor", "augment_stroke_prob", "gmm_ema_rate"):
            if not 0.0 <= getattr(self, key) < 1.0:
                bad(key, "must be in [0, 1)")
        for key in ("cfg_drop_prob", "cond_drop_prob", "ema_decay"):
            if not 0.0 <= getattr(self, key) < 1.0:
                bad(key, "must be in [0, 1)")
        for key in ("pen_loss_weight", "weight_decay", "resample_spacing", "rdp_epsilon"):
            if not 0.0 <= getattr(self, key) < math.inf:
                bad(key, "must be a finite number >= 0")
        if self.time_embedding_dim < 2 or self.time_embedding_dim % 2:
            bad("time_embedding_dim", "must be an even number >= 2 (sin and cos pairs)")
        if self.denoiser == "transformer" and self.denoiser_units % self.denoiser_heads:
            bad("denoiser_units", f"must be divisible by denoiser_heads={self.denoiser_heads}")
        if self.denoiser == "unet1d" and self.denoiser_layers > 3:
            bad("denoiser_layers", "unet1d has at most 3 levels (lengths are padded to 8)")
        if not 0.0 < self.png_scale_ratio <= 1.0:
            bad("png_scale_ratio", "must be in (0, 1]")
        if self.precision not in PRECISIONS:
            bad("precision", f"unknown value; choose one of {list(PRECISIONS)}")
        if self.loss_weighting != "uniform" and (self.process != "gaussian"
                                                 or self.parametrisation != "eps"):
            bad("loss_weighting", "weights the eps-MSE of process=gaussian, parametrisation=eps")
        if not 1.0 <= self.loss_weight_max < math.inf:
            bad("loss_weight_max", "must be a finite number >= 1")
        if self.star_stat_batches < 1 or self.star_beta_range <= 0:
            bad("star_stat_batches", "star_stat_batches must be >= 1 and star_beta_range > 0")
        if self.spd_c1 <= 0 or self.spd_c2 <= 0 or self.spd_m <= 0:
            bad("spd_c1", "the spectrum S0 = c1 / (c2 + |f|)^m needs c1 > 0, c2 > 0, m > 0")
        if self.length_buckets < 0:
            bad("length_buckets", "must be >= 0 (0 = pad every batch to max_seq_len)")
        if self.max_seq_len == 0 or self.max_seq_len < -1:
            bad("max_seq_len", "must be -1 (from data) or a positive cap")
        if self.learning_rate <= 0 or self.min_learning_rate < 0:
            bad("learning_rate", "learning rates must be positive")
        if self.grad_clip <= 0:
            bad("grad_clip", "must be positive")
        for key, allowed in (("loss_convention", LOSS_CONVENTIONS), ("offset_nll", OFFSET_NLLS),
                             ("dec_state_init", DEC_STATE_INITS)):
            if getattr(self, key) not in allowed:
                bad(key, f"unknown value; choose one of {list(allowed)}")
        if not 0.0 <= self.adam_beta1 < 1.0:
            bad("adam_beta1", "must be in [0, 1)")
        if self.lr_steps_per_decay <= 0:
            bad("lr_steps_per_decay", "must be positive")
        if not 0.0 <= self.gmm_posterior_floor < 1.0 / self.num_components:
            bad("gmm_posterior_floor", "must be in [0, 1/K) (K = num_mixture * num_sub)")
        return self

    @property
    def num_components(self):
        """Initial number of GMM components K."""
        return self.num_mixture * self.num_sub

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of ``to_dict``; unknown keys are rejected."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown hparam(s) {unknown}; valid keys: {sorted(known)}")
        d = dict(d)
        if "categories" in d:
            d["categories"] = tuple(d["categories"])
        return cls(**d).validated()

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _split_top_level(text):
    """Split ``a=1,b=[x,y]`` on commas outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            # a closing bracket before its opening one ("a=x],b=[y") would otherwise balance out
            # and silently glue two items into one value
            if depth < 0:
                raise ConfigError(f"unbalanced brackets in hparams string {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ConfigError(f"unbalanced brackets in hparams string {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _parse_value(key, field_type, raw):
    raw = raw.strip()
    try:
        if field_type is bool:
            low = raw.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError("expected True or False")
        if field_type is int:
            value = float(raw)
            if value != int(value):
                raise ValueError("expected an integer")
            return int(value)
        if field_type is float:
            return float(raw)
        if field_type is tuple:
            inner = raw.strip("[](){}")
            items = [s.strip().strip("'\"") for s in inner.split(",")]
            return tuple(s for s in items if s)
        return raw.strip("'\"")
    except (ValueError, OverflowError) as err:  # int(float("inf")) raises OverflowError
        raise ConfigError(f"hparam {key}: cannot parse {raw!r} as {field_type.__name__} ({err})") from None


def parse_overrides(hparams, text):
    """Apply a ``"key=value,key2=[a,b]"`` string (the reference's syntax) to ``hparams``.

    Raises:
      ConfigError: an unknown key (the message lists the valid keys), a malformed item, or a value
        of the wrong type / out of range.
    """
    if not text or not text.strip():
        return hparams.validated()
    types = {f.name: f.type for f in dataclasses.fields(HParams)}
    changes = {}
    for item in _split_top_level(text):
        if "=" not in item:
            raise ConfigError(f"hparams item {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in types:
            raise ConfigError(f"unknown hparam {key!r}; valid keys: {sorted(types)}")
        changes[key] = _parse_value(key, types[key], raw)
    return hparams.replace(**changes)
