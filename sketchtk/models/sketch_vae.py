"""RPCL-pix2seq, sketch-pix2seq and sketch-rnn: one Keras model, chosen by ``hparams.model``.

| model            | encoder                        | prior / latent loss                        | extra            |
|------------------|--------------------------------|--------------------------------------------|------------------|
| ``rpcl_pix2seq``   | dilated CNN on 48x48 images    | GMM learned by EM/RPCL; alpha + Gaussian KL | deconv regulariser |
| ``sketch_pix2seq`` | dilated CNN on 48x48 images    | N(0, I), KL with free bits                  |                  |
| ``sketch_rnn``     | bidirectional LSTM over strokes | N(0, I), KL with free bits                  |                  |

All three share the autoregressive ``StrokeDecoder`` (HyperLSTM / LSTM / LayerNorm-LSTM) and the
mixture-density reconstruction loss. ``train_step`` applies the gradient step and *then* the GMM's
EM/RPCL update from the same forward pass (ALGORITHMS.md section 2).
"""

import keras
import tensorflow as tf

from sketchtk.config import HParams
from sketchtk.layers.cnn_encoder import DilatedCNNEncoder
from sketchtk.layers.deconv_decoder import DeconvDecoder
from sketchtk.layers.gmm_latent import GMMLatent
from sketchtk.layers.precision import matmul_dtype_for
from sketchtk.layers.rnn_encoder import BiLSTMEncoder
from sketchtk.layers.stroke_decoder import StrokeDecoder
from sketchtk.losses import latent as latent_losses
from sketchtk.losses.reconstruction import reconstruction_loss
from sketchtk.models.built_up_front import BuiltUpFrontModel

VAE_MODELS = ("rpcl_pix2seq", "sketch_pix2seq", "sketch_rnn")
_TRACKED = ("loss", "recon", "offset_nll", "pen_xent", "kl", "de_loss")


def images_to_input(images):
    """uint8 ``[B, W, W]`` (white 255) -> float ``[B, W, W, 1]`` in [-1, 1] (white = +1)."""
    return (tf.cast(images, tf.float32) / 255.0 * 2.0 - 1.0)[..., None]


@keras.saving.register_keras_serializable(package="sketchtk")
class SketchVAE(BuiltUpFrontModel):
    """A sketch VAE of the pix2seq / sketch-rnn family.

    Args:
      hparams: ``HParams`` or its dict (``model`` picks the variant).
      max_seq_len: points per sketch found from the data (stroke-5 length is this + 1).
      scale_factor: the training set's offset std (saved so sampling can undo the normalisation).
      categories: category names, index = label.

    Call arguments:
      inputs: a batch dict from ``make_dataset`` (``strokes`` stroke-5, ``images`` uint8,
        ``lengths``).
      training: sample z and use dropout when True; z = mu otherwise.

    Returns:
      Mixture parameters ``[B, max_seq_len, 6M + 3]`` predicting ``strokes[:, 1:]``.

    Example:
      >>> model = SketchVAE(get_preset("smoke"), max_seq_len=200, scale_factor=30.0,
      ...                   categories=("bee", "bus"))
      >>> model.compile(optimizer=make_optimizer(hparams))
      >>> model.fit(make_dataset(data, "train", hparams, training=True), steps_per_epoch=10)

    Reference:
      Zang, Tu & Xu, Neural Networks 137 (2021) (RPCL-pix2seq); Chen et al. 2017 (sketch-pix2seq);
      Ha & Eck, ICLR 2018 (sketch-rnn).
    """

    def __init__(self, hparams, max_seq_len, scale_factor, categories=(), **kwargs):
        super().__init__(**kwargs)
        if isinstance(hparams, dict):
            hparams = HParams.from_dict(hparams)
        if hparams.model not in VAE_MODELS:
            raise ValueError(f"SketchVAE builds {list(VAE_MODELS)}, not {hparams.model!r}")
        self.hparams = hparams
        self.max_seq_len = int(max_seq_len)
        self.scale_factor = float(scale_factor)
        self.categories = tuple(categories)
        hp = hparams
        if hp.model == "sketch_rnn":
            self.encoder = BiLSTMEncoder(enc_rnn_size=hp.enc_rnn_size, z_size=hp.z_size,
                                         name="encoder")
        else:
            self.encoder = DilatedCNNEncoder(z_size=hp.z_size, name="encoder")
        self.gmm = None
        self.deconv = None
        if hp.model == "rpcl_pix2seq":
            self.gmm = GMMLatent(
                num_components=hp.num_components, z_size=hp.z_size, ema_rate=hp.gmm_ema_rate,
                rpcl_rival_rate=hp.rpcl_rival_rate, warmup_steps=hp.gmm_warmup_steps,
                rpcl_every=hp.rpcl_every, active_threshold=hp.gmm_active_threshold,
                posterior_floor=hp.gmm_posterior_floor, seed=hp.seed, name="gmm")
            if hp.de_weight > 0:
                self.deconv = DeconvDecoder(name="deconv")
        self.decoder = StrokeDecoder(
            dec_model=hp.dec_model, units=hp.dec_rnn_size, num_mixture=hp.mdn_components,
            z_size=hp.z_size, use_recurrent_dropout=hp.use_recurrent_dropout,
            recurrent_dropout_prob=hp.recurrent_dropout_prob,
            hyper_num_units=hp.hyper_num_units, hyper_embedding_size=hp.hyper_embedding_size,
            state_init=hp.dec_state_init, seed=hp.seed,
            matmul_dtype=matmul_dtype_for(hp.precision), name="decoder")
        self.noise = keras.random.SeedGenerator(hp.seed + 11)
        self.val_trackers = {k: keras.metrics.Mean(name=k) for k in _TRACKED}

    # ------------------------------------------------------------------ pieces

    @property
    def metrics(self):
        return list(self.val_trackers.values())

    def encode(self, batch, training=False):
        """Encoder outputs ``(mu, sigma2)``, each ``[B, Z]``."""
        if self.hparams.model == "sketch_rnn":
            # The encoder reads the sketch without the start token.
            return self.encoder(batch["strokes"][:, 1:], batch["lengths"], training=training)
        return self.encoder(images_to_input(batch["images"]), training=training)

    def sample_prior(self, num, component=None, seed=None):
        """Latent codes from the prior: the learned GMM (a component by alpha, or the given one)
        for RPCL-pix2seq, N(0, I) otherwise. Returns ``(z [num, Z], component [num] int32)``."""
        seed = self.noise if seed is None else seed
        if self.gmm is None:
            z = keras.random.normal((num, self.hparams.z_size), seed=seed)
            return z, tf.fill([num], -1)
        if component is None:
            return self.gmm.sample(num, seed=seed)
        k = tf.fill([num], tf.cast(component, tf.int32))
        mu = tf.gather(tf.convert_to_tensor(self.gmm.mu), k)
        sigma2 = tf.gather(tf.convert_to_tensor(self.gmm.sigma2), k)
        return latent_losses.reparameterize(mu, sigma2, seed=seed), k

    def call(self, inputs, training=False):
        mu, sigma2 = self.encode(inputs, training=training)
        z = latent_losses.reparameterize(mu, sigma2, seed=self.noise) if training else mu
        return self.decoder(inputs["strokes"][:, :-1], z, training=training)

    def compute_losses(self, batch, training, step, update_gmm=False):
        """All loss terms of one batch (a dict of scalars), the encoder outputs and z, and the
        GMM state the KL terms used (``None`` unless ``update_gmm``).

        With ``update_gmm`` (training) the GMM's EM / RPCL estimate is computed from this batch
        (summed over replicas) and the KL terms use that *new* state under stop-gradient, as the
        reference does (``model.py`` 105-116); the caller assigns it after the gradient step.
        Otherwise (validation) the KL terms use the current state.
        """
        hp = self.hparams
        mu, sigma2 = self.encode(batch, training=training)
        z = latent_losses.reparameterize(mu, sigma2, seed=self.noise) if training else mu
        strokes = batch["strokes"]
        params = self.decoder(strokes[:, :-1], z, training=training)
        # Validation masks the pen loss to the real points (the reference's eval-mode lil_loss,
        # model.py 349-350); training covers the padding too, so the model learns to stay ended.
        recon, offset_nll, pen_xent = reconstruction_loss(
            strokes[:, 1:], params, mask_padding=not training,
            reduction="mean" if hp.loss_convention == "magenta" else "sum",
            offset_nll_mode=hp.offset_nll)
        if hp.loss_convention == "magenta":
            # "mean" divides by the batch's steps; a batch cut to its length bucket
            # (hparams.length_buckets) keeps magenta's 1 / max_seq_len weight per step.
            time_scale = tf.cast(tf.shape(strokes)[1] - 1, recon.dtype) / self.max_seq_len
            recon, offset_nll, pen_xent = recon * time_scale, offset_nll * time_scale, \
                pen_xent * time_scale
        klw = latent_losses.kl_weight(step, hp.kl_weight_start, hp.kl_decay_rate, hp.kl_weight)
        out = {"recon": recon, "offset_nll": offset_nll, "pen_xent": pen_xent, "klw": klw}
        new_state = None
        if self.gmm is not None:
            gamma, log_gamma = self.gmm.posterior(z)
            state = {"mu": self.gmm.mu, "sigma2": self.gmm.sigma2, "alpha": self.gmm.alpha}
            if update_gmm:
                stats = self.gmm.batch_statistics(gamma, mu, sigma2, self.gmm.use_rpcl_at(step))
                ctx = tf.distribute.get_replica_context()
                if ctx is not None and tf.distribute.get_strategy().num_replicas_in_sync > 1:
                    stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)
                state = new_state = {k: tf.stop_gradient(v)
                                     for k, v in self.gmm.estimate(stats).items()}
            # The reference's log(gamma / (alpha + 1e-10)) (model.py 298-301): finite for a
            # pruned component (alpha = 0), which keeps gamma >= the floor.
            log_alpha = tf.math.log(tf.convert_to_tensor(state["alpha"]) + 1e-10)
            a_loss = latent_losses.alpha_loss(log_gamma, log_alpha)
            g_loss = latent_losses.gaussian_loss(mu, sigma2, gamma, state["mu"], state["sigma2"])
            kl = a_loss + g_loss
            out.update(alpha_loss=a_loss, gaussian_loss=g_loss)
        elif hp.loss_convention == "magenta":
            # magenta model.py 208-210: KL averaged over batch and z dims, floored at kl_tolerance.
            kl = latent_losses.standard_normal_kl(mu, sigma2, hp.kl_tolerance)
        else:
            # The RPCL convention (per-sketch sums): KL summed over z, floor kl_tolerance per dim.
            kl = hp.z_size * latent_losses.standard_normal_kl(mu, sigma2, hp.kl_tolerance)
        loss = recon + klw * kl
        out["kl"] = kl
        if self.deconv is not None:
            de = latent_losses.deconv_loss(images_to_input(batch["images"]), self.deconv(z))
            loss = loss + hp.de_weight * de
            out["de_loss"] = de
        out["loss"] = loss
        return out, (mu, sigma2, z), new_state

    # ------------------------------------------------------------------ steps

    def _clip_and_sync(self, grads):
        """Per-value clipping of the *global* gradient (the reference's grad_clip)."""
        clip = self.hparams.grad_clip
        ctx = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if ctx is None or replicas == 1:
            return [tf.clip_by_value(g, -clip, clip) for g in grads]
        # Sum here so the clip sees the global gradient; the optimiser sums again, hence / R.
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        return [tf.clip_by_value(g, -clip, clip) / replicas for g in grads]

    def train_step(self, data):
        # The reference's step counter starts at 0 (train.py 141-161 feeds `sum` from 0): the
        # optimiser's iterations before this update.
        step = self.optimizer.iterations
        with tf.GradientTape() as tape:
            losses, _, new_state = self.compute_losses(data, training=True, step=step,
                                                       update_gmm=self.gmm is not None)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = losses["loss"] / tf.cast(replicas, losses["loss"].dtype)
        variables = self.trainable_weights
        grads = self._clip_and_sync(tape.gradient(scaled, variables))
        lr = tf.identity(self.optimizer.learning_rate)  # the rate this step uses (before the increment)
        self.optimizer.apply_gradients(zip(grads, variables))
        logs = dict(losses)
        logs["lr"] = lr
        if self.gmm is not None:
            self.gmm.assign_state(new_state)
            logs["active_components"] = tf.cast(self.gmm.num_active(), tf.float32)
        return _for_keras_reduction(logs)

    def test_step(self, data):
        losses, _, _ = self.compute_losses(data, training=False, step=self.optimizer.iterations)
        batch = tf.shape(data["strokes"])[0]
        for key, tracker in self.val_trackers.items():
            if key in losses:
                tracker.update_state(losses[key], sample_weight=batch)
        return _for_keras_reduction(
            {k: t.result() for k, t in self.val_trackers.items() if k in losses})

    def build_from_batch(self, batch):
        """Create every weight by running one forward pass (needed before loading weights)."""
        self.compute_losses(batch, training=False, step=0)
        self.built = True

    def dummy_batch(self, batch_size=2):
        """An all-padding batch of this model's shapes (builds the weights; nothing is learnt)."""
        t, w = self.max_seq_len, self.hparams.png_width
        pad = tf.one_hot(tf.fill([batch_size, t], 4), 5)
        start = tf.one_hot(tf.fill([batch_size, 1], 2), 5)
        return {"strokes": tf.concat([start, pad], axis=1),
                "images": tf.fill([batch_size, w, w], tf.constant(255, tf.uint8)),
                "labels": tf.zeros([batch_size], tf.int32),
                "lengths": tf.zeros([batch_size], tf.int32)}

    def get_build_config(self):
        return {"max_seq_len": self.max_seq_len}

    def build_from_config(self, config):
        """Keras calls this before loading a ``.keras`` file's weights."""
        self.build_from_batch(self.dummy_batch())

    def get_config(self):
        return {"hparams": self.hparams.to_dict(), "max_seq_len": self.max_seq_len,
                "scale_factor": self.scale_factor, "categories": list(self.categories),
                "name": self.name}


def _for_keras_reduction(logs):
    """Logs in the shape Keras can reduce across replicas.

    Under MultiWorkerMirroredStrategy Keras reduces every log with ``strategy.reduce("MEAN", v,
    axis=0)``, which rejects scalars; a ``[1]`` tensor per replica reduces to the scalar mean.
    Other strategies get the scalars unchanged.
    """
    extended = tf.distribute.get_strategy().extended
    multi_worker = getattr(extended, "_in_multi_worker_mode", None)
    if multi_worker is not None and multi_worker():
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


def make_optimizer(hparams):
    """Adam with the decayed learning rate; clipping is done in train_step.

    RPCL-pix2seq (``model.py`` 124-126): beta1 0.5, lr decays 0.9999^(step / 3); magenta's
    sketch_rnn (``sketch_rnn_train.py`` 278-279): Adam's default beta1 0.9, decay every step.
    ``adam_beta1`` and ``lr_steps_per_decay`` select them.
    """
    schedule = latent_losses.DecayedLearningRate(
        hparams.learning_rate, hparams.min_learning_rate, hparams.decay_rate,
        steps_per_decay=hparams.lr_steps_per_decay)
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=hparams.adam_beta1)
