"""Denoisers over point sequences, one architecture per file, chosen by name.

``make_denoiser(name, out_channels, units, num_layers, num_heads, time_embedding,
time_embedding_dim, seed)``; every denoiser is called as ``(x [B, L, F], t [B], point_mask [B, L],
cond [B, D] or None) -> [B, L, out_channels]``.
"""

from sketchtk.layers.denoisers.bigru import BiGRUDenoiser
from sketchtk.layers.denoisers.time_embedding import TimeEmbedding
from sketchtk.layers.denoisers.transformer import TransformerDenoiser
from sketchtk.layers.denoisers.unet1d import UNet1DDenoiser

DENOISERS = {"bigru": BiGRUDenoiser, "transformer": TransformerDenoiser, "unet1d": UNet1DDenoiser}


def make_denoiser(name, out_channels, units, num_layers, num_heads=4, time_embedding="fourier",
                  time_embedding_dim=8, seed=0):
    """The denoiser called ``name``; a bad name raises ValueError listing the names."""
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(DENOISERS)}")
    kwargs = dict(out_channels=out_channels, units=units, num_layers=num_layers,
                  time_embedding=time_embedding, time_embedding_dim=time_embedding_dim, seed=seed,
                  name=name)
    if name == "transformer":
        kwargs["num_heads"] = num_heads
    return DENOISERS[name](**kwargs)


__all__ = ["BiGRUDenoiser", "DENOISERS", "TimeEmbedding", "TransformerDenoiser",
           "UNet1DDenoiser", "make_denoiser"]
