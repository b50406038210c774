"""The data's power spectrum and the fit of ``S0(f) = c1 / (c2 + |f|)^m`` for shortest-path diffusion.

The SPD release hard-codes CIFAR-10's ``c1 = 1.59, c2 = 0.0086, m = 2``
(mtkresearch/shortest-path-diffusion ``nonunif_diffusion/script_util.py:27-33``) and has no
fitting code. Here:

- :func:`sequence_power_spectrum`: the mean periodogram ``|F x|^2`` (orthonormal FFT) of
  normalised point sequences over a fixed window, per frequency in cycles per point;
- :func:`image_power_spectrum`: the same for rasters, averaged over rings of equal ``|f|``;
- :func:`fit_spectrum`: least squares in log space, ``log S = log c1 - m log(c2 + |f|)``: for
  each ``c2`` on a log grid (then refined) ``(log c1, m)`` is a linear regression, so the fit
  is closed form per ``c2`` and never diverges.
- :func:`fit_raster_spectrum`: the rasters' fit (log-binned rings, ``|f| <= 0.35``, ``S0(0)`` =
  the measured DC power): it follows the measured rings far better (log RMSE 0.22 against 0.59)
  than the exact-radius fit over every ring (``m = 11.9``, ``S0(0)`` 760x below the DC power),
  but its 200-step samples were nearly blank (README, raster SPD), so the presets keep the other.

``python -m sketchtk.diffusion.spectrum --representation=absolute`` prints the constants for the
embedded data (or ``--data_dir``), in both representations when asked for ``both``, and
``--representation=raster`` those of the 48 x 48 renders (``RasterDiffusion``).
"""

import dataclasses

import numpy as np
from absl import logging


@dataclasses.dataclass(frozen=True)
class SpectrumFit:
    """Fitted constants and the fit's RMS error in log space."""

    c1: float
    c2: float
    m: float
    log_rmse: float

    def __call__(self, freq):
        return self.c1 / np.power(self.c2 + np.abs(freq), self.m)


def _regress(logf_c2, log_s, weights):
    """Weighted least squares ``log_s = a - m * logf_c2``: ``(a, m, sse)``."""
    w = weights / weights.sum()
    mx, my = np.sum(w * logf_c2), np.sum(w * log_s)
    vx = np.sum(w * (logf_c2 - mx) ** 2)
    m = -np.sum(w * (logf_c2 - mx) * (log_s - my)) / max(vx, 1e-300)
    a = my + m * mx
    resid = log_s - (a - m * logf_c2)
    return a, m, float(np.sum(w * resid ** 2))


def fit_spectrum(freq, power, weights=None, c2_range=(1e-5, 10.0), grid=200, min_freq=0.0):
    """Fit ``S0(f) = c1 / (c2 + |f|)^m`` to ``power`` at ``freq`` (any shape, flattened).

    Args:
      freq, power: matching arrays; non-positive powers are ignored.
      weights: per-point weights (e.g. how many FFT bins a ring holds); default equal.
      c2_range, grid: the log grid searched for ``c2``, refined once around the best value.
      min_freq: fit only ``|f| >= min_freq`` (rasters: their DC bin holds the mean image, the
        constant background, orders of magnitude above the curve through the rest).

    Returns:
      ``SpectrumFit``.
    """
    f = np.abs(np.asarray(freq, np.float64)).ravel()
    p = np.asarray(power, np.float64).ravel()
    w = np.ones_like(p) if weights is None else np.asarray(weights, np.float64).ravel()
    keep = (p > 0) & np.isfinite(p) & (w > 0) & (f >= min_freq)
    if keep.sum() < 3:
        raise ValueError("fit_spectrum needs at least 3 positive power values")
    f, p, w = f[keep], p[keep], w[keep]
    log_p = np.log(p)
    best = None
    lo, hi = np.log(c2_range[0]), np.log(c2_range[1])
    for _ in range(2):
        for log_c2 in np.linspace(lo, hi, grid):
            a, m, sse = _regress(np.log(np.exp(log_c2) + f), log_p, w)
            if best is None or sse < best[0]:
                best = (sse, log_c2, a, m)
        step = (hi - lo) / (grid - 1)
        lo, hi = best[1] - 2 * step, best[1] + 2 * step
    sse, log_c2, a, m = best
    return SpectrumFit(c1=float(np.exp(a)), c2=float(np.exp(log_c2)), m=float(m),
                       log_rmse=float(np.sqrt(sse)))


def log_binned(freq, power, count, bins=24):
    """Ring spectrum ``(freq, power, count)`` averaged into ``bins`` log-spaced ``|f|`` bins
    (bin-count-weighted means; the DC bin is dropped): a fit on it weighs every octave the same,
    where a fit on exact radii (weights = bins per radius) is ruled by the many high-``|f|``
    rings. Returns ``(freq [K], power [K])`` of the non-empty bins."""
    f, p, c = (np.asarray(v, np.float64).ravel() for v in (freq, power, count))
    keep = f > 0
    f, p, c = f[keep], p[keep], c[keep]
    edges = np.geomspace(f.min() * (1 - 1e-9), f.max() * (1 + 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, bins - 1)
    weight = np.bincount(idx, c, bins)
    nz = weight > 0
    return (np.bincount(idx, f * c, bins)[nz] / weight[nz],
            np.bincount(idx, p * c, bins)[nz] / weight[nz])


def fit_raster_spectrum(freq, power, count, max_freq=0.35, bins=24):
    """``S0`` for rasters: the log-binned ring spectrum (:func:`log_binned`) fitted over
    ``0 < |f| <= max_freq`` with ``c2 -> 0`` allowed (a power law, as the release's CIFAR
    constants are: ``c2 = 0.0086`` cycles per image against a first frequency of 1), then ``c2``
    set so that ``S0(0)`` equals the measured DC power (the mean image). Above ``max_freq``
    the renders' anti-aliasing bends the spectrum down; those frequencies hold little power.

    Returns:
      ``SpectrumFit`` (``log_rmse`` of the binned fit).
    """
    f, p = log_binned(freq, power, count, bins)
    sel = f <= max_freq
    fit = fit_spectrum(f[sel], p[sel], c2_range=(1e-8, 1.0))
    dc = float(np.asarray(power).ravel()[np.argmin(np.abs(np.asarray(freq).ravel()))])
    c2 = (fit.c1 / dc) ** (1.0 / fit.m) if dc > 0 and fit.m > 0 else fit.c2
    return SpectrumFit(c1=fit.c1, c2=float(c2), m=fit.m, log_rmse=fit.log_rmse)


def sequence_power_spectrum(sequences, window):
    """Mean orthonormal periodogram of sequences ``[n_i, C]`` zero-padded (or cut) to ``window``.

    Returns:
      ``(freq [window], power [window])``, ``freq`` in cycles per point (numpy fftfreq order),
      power averaged over sequences and channels.
    """
    if not sequences:
        raise ValueError("sequence_power_spectrum needs at least one sequence")
    batch = np.zeros((len(sequences), window, np.asarray(sequences[0]).shape[-1]), np.float64)
    for i, s in enumerate(sequences):
        s = np.asarray(s, np.float64)[:window]
        batch[i, :len(s)] = s
    spec = np.abs(np.fft.fft(batch, axis=1, norm="ortho")) ** 2
    return np.fft.fftfreq(window), spec.mean(axis=(0, 2))


def image_power_spectrum(images):
    """Orthonormal 2-D power spectrum of images ``[N, H, W]`` (or ``[N, H, W, C]``), averaged
    over the bins of equal ``|f|`` (exact radii, no ring binning: a ring's mean power is not the
    power at its mean radius).

    Returns:
      ``(freq [R], power [R], count [R])``: ``|f|`` in cycles per pixel, mean power, bins.
    """
    x = np.asarray(images, np.float64)
    if x.ndim == 4:
        x = np.moveaxis(x, -1, 1).reshape(-1, x.shape[1], x.shape[2])
    h, w = x.shape[1:3]
    spec = (np.abs(np.fft.fft2(x, norm="ortho")) ** 2).mean(axis=0)
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    freq, idx, count = np.unique(np.round(radius, 12).ravel(), return_inverse=True,
                                 return_counts=True)
    power = np.bincount(idx, spec.ravel()) / count
    return freq, power, count


def point_data_spectrum(point_data, representation, split="train", window=None):
    """The measured spectrum of a ``prepare_point_data`` set in ``representation``, normalised
    with its training statistics as ``StrokeDiffusion`` does (x, y only): ``(freq, power)``."""
    from sketchtk.data.point_sequences import PointStats, to_points
    stats = PointStats.from_sketches(point_data.splits["train"].sketches, representation)
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    seqs = [(to_points(s, representation)[:, :2] - mean) / std
            for s in point_data.splits[split].sketches]
    return sequence_power_spectrum(seqs, window or point_data.max_seq_len)


def raster_data_spectrum(data, hparams, split="train", max_images=2000):
    """The measured radial spectrum of the split's renders as ``RasterDiffusion`` sees them
    (``make_dataset`` images at ``png_width``, ink = +1, background = -1): ``(freq, power, count)``."""
    from sketchtk.data.pipeline import make_dataset
    from sketchtk.models.raster_diffusion import images_to_x0
    images, n = [], 0
    for batch in make_dataset(data, split, hparams, training=False):
        images.append(np.asarray(images_to_x0(batch["images"]))[..., 0])
        n += len(images[-1])
        if n >= max_images:
            break
    return image_power_spectrum(np.concatenate(images)[:max_images])


def main(argv=None):
    import argparse
    from sketchtk.data.loader import DEFAULT_CATEGORIES, load_sketch_data
    from sketchtk.data.point_sequences import prepare_point_data
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="npz directory (default: embedded data)")
    parser.add_argument("--categories", default=",".join(DEFAULT_CATEGORIES))
    parser.add_argument("--representation", default="both",
                        choices=["absolute", "delta", "both", "raster"])
    parser.add_argument("--png_width", type=int, default=48)
    parser.add_argument("--max_points", type=int, default=96)
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)  # the fitted constants are this command's output
    data = prepare_point_data(load_sketch_data(args.data_dir, args.categories.split(",")),
                              max_points=args.max_points)
    if args.representation == "raster":
        from sketchtk.config import HParams
        hp = HParams(categories=tuple(args.categories.split(",")), png_width=args.png_width,
                     batch_size=100, max_seq_len=250).validated()
        raw = load_sketch_data(args.data_dir, args.categories.split(","), max_seq_len=250)
        freq, power, count = raster_data_spectrum(raw, hp)
        fit = fit_spectrum(freq, power, weights=count, min_freq=1e-6)
        logging.info("raster %dx%d: c1=%.4g c2=%.4g m=%.4g log_rmse=%.3f "
                     "power(f=0)/power(|f|=0.5)=%.3g", args.png_width, args.png_width, fit.c1,
                     fit.c2, fit.m, fit.log_rmse, power[0] / power[-1])
        return
    reps = ["absolute", "delta"] if args.representation == "both" else [args.representation]
    for rep in reps:
        freq, power = point_data_spectrum(data, rep)
        fit = fit_spectrum(freq, power)
        lo, hi = power[np.abs(freq) < 0.02].mean(), power[np.abs(freq) > 0.4].mean()
        logging.info("%s: c1=%.4g c2=%.4g m=%.4g log_rmse=%.3f power(|f|<0.02)/power(|f|>0.4)=%.3g "
                     "window=%d", rep, fit.c1, fit.c2, fit.m, fit.log_rmse, lo / hi, len(freq))


if __name__ == "__main__":
    main()
