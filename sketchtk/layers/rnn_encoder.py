"""sketch-rnn's bidirectional LSTM encoder: stroke-5 sequence -> (mu, sigma2)."""

import keras
import tensorflow as tf

from sketchtk.losses import latent


@keras.saving.register_keras_serializable(package="sketchtk")
class BiLSTMEncoder(keras.layers.Layer):
    """Bidirectional LSTM encoder q(z | strokes) = N(mu, diag sigma2) of sketch-rnn.

    A forward and a backward LSTM read the stroke-5 rows up to each sketch's length (padding is
    masked, so the backward pass starts at the last real row); their final hidden states are
    concatenated, h = [h_fw; h_bw] ``[B, 2 * enc_rnn_size]``, and two dense heads give
    mu = W_mu h + b_mu and presig = W_sigma h + b_sigma. sketch-rnn uses sigma = exp(presig / 2);
    this layer returns the variance sigma2 = exp(presig), the same interface as
    ``DilatedCNNEncoder``. As in sketch-rnn the heads start from N(0, 0.001^2) weights (codes
    begin near the prior) and the LSTMs have forget-gate bias 1 and orthogonal recurrent weights.
    Feed it the rows *after* the start token (sketch-rnn encodes ``input[:, 1:]``).

    Args:
        enc_rnn_size: int, units of each direction (256).
        z_size: int, latent size Z (128).
        recurrent_dropout: float, Keras' recurrent-state dropout of both LSTMs (0.0; sketch-rnn's
            own variant drops the cell candidate instead, which Keras' LSTM does not offer).

    Call arguments:
        strokes: float ``[B, T, 5]`` stroke-5 rows.
        lengths: optional ``[B]`` (or ``[B, 1]``) number of valid rows of each sketch, any
            numeric dtype (``None``: all T rows).
        training: bool, enables the dropout.

    Returns:
        ``(mu, sigma2)``: float ``[B, Z]`` each.

    Example:
        >>> encoder = BiLSTMEncoder(enc_rnn_size=256, z_size=128)
        >>> mu, sigma2 = encoder(strokes5[:, 1:], lengths)
        >>> z = BiLSTMEncoder.sample(mu, sigma2, seed_generator)

    Reference:
        Ha & Eck, "A Neural Representation of Sketch Drawings", ICLR 2018 (section 3.1).
    """

    def __init__(self, enc_rnn_size=256, z_size=128, recurrent_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.enc_rnn_size = int(enc_rnn_size)
        self.z_size = int(z_size)
        self.recurrent_dropout = float(recurrent_dropout)
        self.rnn = keras.layers.Bidirectional(
            keras.layers.LSTM(self.enc_rnn_size, recurrent_dropout=self.recurrent_dropout),
            merge_mode="concat", name="bilstm")
        head_init = keras.initializers.RandomNormal(stddev=0.001)
        self.mu_head = keras.layers.Dense(self.z_size, kernel_initializer=head_init, name="mu")
        self.presig_head = keras.layers.Dense(self.z_size, kernel_initializer=head_init,
                                              name="presig")

    def build(self, strokes_shape, lengths_shape=None):
        strokes_shape = tuple(strokes_shape)
        if len(strokes_shape) != 3:
            raise ValueError(f"BiLSTMEncoder expects strokes [B, T, 5], got shape {strokes_shape}")
        self.rnn.build(strokes_shape)
        hidden = (strokes_shape[0], 2 * self.enc_rnn_size)
        self.mu_head.build(hidden)
        self.presig_head.build(hidden)
        self.built = True

    def call(self, strokes, lengths=None, training=None):
        mask = None
        if lengths is not None:
            lengths = tf.cast(tf.reshape(lengths, [-1]), tf.int32)
            mask = tf.sequence_mask(lengths, maxlen=tf.shape(strokes)[1])
        h = self.rnn(strokes, mask=mask, training=training)
        mu = self.mu_head(h)
        sigma2 = tf.exp(self.presig_head(h))
        return mu, sigma2

    def compute_output_shape(self, strokes_shape, lengths_shape=None):
        out = (strokes_shape[0], self.z_size)
        return out, out

    @staticmethod
    def sample(mu, sigma2, seed_generator=None):
        """z = mu + sqrt(sigma2) * eps (``sketchtk.losses.latent.reparameterize``)."""
        return latent.reparameterize(mu, sigma2, seed=seed_generator)

    def get_config(self):
        config = super().get_config()
        config.update({
            "enc_rnn_size": self.enc_rnn_size,
            "z_size": self.z_size,
            "recurrent_dropout": self.recurrent_dropout,
        })
        return config
