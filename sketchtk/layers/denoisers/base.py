"""``DenoiserBase``: the arguments and time embedding every point-sequence denoiser shares."""

import keras

from sketchtk.layers.denoisers.time_embedding import TimeEmbedding


class DenoiserBase(keras.layers.Layer):
    """Keeps the shared constructor arguments, owns the ``TimeEmbedding`` and returns them in
    ``get_config``; subclasses add their own layers and arguments."""

    def __init__(self, out_channels, units, num_layers, time_embedding, time_embedding_dim, seed,
                 **kwargs):
        super().__init__(**kwargs)
        self.out_channels = int(out_channels)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.time_embedding = time_embedding
        self.time_embedding_dim = int(time_embedding_dim)
        self.seed = int(seed)
        self.temb = TimeEmbedding(self.time_embedding_dim, time_embedding, seed=self.seed,
                                  name="temb")

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "units": self.units,
                "num_layers": self.num_layers, "time_embedding": self.time_embedding,
                "time_embedding_dim": self.time_embedding_dim, "seed": self.seed}
