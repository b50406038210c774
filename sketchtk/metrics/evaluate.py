"""``run_evaluation``: Ret, Rec, FID / precision / recall of generated sketches (``retrieval.py``).

One command evaluates every model family; what is computed follows from what ``samples.npz`` and
the run hold:

- **Rec** (needs ``--classifier_dir`` and a category per sample, i.e. conditional samples): accuracy
  of a Sketch-a-Net trained by ``train.py --hparams=model=sketch_a_net`` on the same categories,
  over the rendered generated sketches. Only the images and the classifier are used, so it works
  for any model family.
- **FID, precision, recall** (needs ``--classifier_dir``; conditional or unconditional samples):
  generated sketches against the real test sketches, both rendered by the training renderer and
  mapped to the classifier's penultimate-layer features (``sketchtk.metrics.sample_quality``; k-NN
  manifolds with k = 3). These numbers live in *Sketch-a-Net feature space* and are **not**
  comparable to the Inception-space FIDs of papers; they compare models evaluated with the same
  classifier on the same data. ``real_valid_vs_test`` gives the same three numbers for the real
  validation sketches against the real test sketches: what real drawings score at this sample size.
- **Ret** (needs a latent code: the VAE families, with conditional samples that name their test
  reference): every generated sketch is re-encoded by the model's own encoder, images for
  ``rpcl_pix2seq`` / ``sketch_pix2seq``, strokes (normalised by the run's scale factor, stroke-5)
  for ``sketch_rnn``, and its own reference is searched among the codes of the pooled test set
  (``sketchtk.metrics.retrieval``); top-1/10/50. Models without an encoder (diffusion) get
  ``null`` with a note.
- ``latent_space.png`` (VAE families): the encoded test set in 2-D (PCA) with the GMM components.
- A ``raster_diffusion`` run's ``samples.npz`` holds ``images`` (uint8 ``[N, W, W]``) instead of
  strokes (``sketchtk.sampling.raster_generate``): Rec and FID / precision / recall are computed
  from those images (resized to the classifier's width if it differs); a blank image is the
  degenerate case.

**Degenerate samples** (fewer than 2 points, nothing drawn with the pen down, or non-finite
values) are counted in ``num_degenerate`` / ``degenerate`` rather than scored silently: they
count as misses for Rec and Ret (a blank image must not be recognised by luck) and are left out
of FID / precision / recall, which compare drawn sketches (a note says how many).

Everything goes to ``<sample_dir>/metrics.json``.
"""

import os

import numpy as np
from absl import logging

from sketchtk.data.npz_io import load_npz
from sketchtk.data import strokes as stroke_ops
from sketchtk.data.strokes import stroke3_to_stroke5
from sketchtk.errors import DataError
from sketchtk.metrics.latent_plot import plot_latent_space
from sketchtk.metrics.recognition import recognition_accuracy
from sketchtk.metrics.retrieval import retrieval_ranks, topk_from_ranks
from sketchtk.metrics.sample_quality import DEFAULT_K, classifier_features, sample_quality
from sketchtk.models.sketch_vae import VAE_MODELS
from sketchtk.render.raster import render_sketches
from sketchtk.sampling.generate import load_test_set
from sketchtk.training.checkpoints import MODEL_CONFIG, read_json, write_json_atomic
from sketchtk.training.trainer import load_trained_model

KS = (1, 10, 50)
FEATURE_SPACE_NOTE = ("FID / precision / recall are in the feature space of the Sketch-a-Net "
                      "classifier (penultimate layer, {width} px renders of the training "
                      "renderer); they are not comparable to Inception-space numbers in papers")


def load_samples(sample_dir):
    """The ``samples.npz`` bundle written by ``sample.py``; DataError naming the file if bad."""
    path = os.path.join(sample_dir, "samples.npz")
    if not os.path.exists(path):
        raise DataError(f"{path}: no samples bundle; run sample.py --output_dir={sample_dir} first")
    # a downloaded samples.npz is untrusted: its object arrays go through the restricted
    # unpickler (refuses anything but numpy arrays), and a corrupt file raises DataError
    samples = load_npz(path)
    if "strokes" in samples:
        n = len(samples["strokes"])
    elif "images" in samples:  # raster_diffusion images (sketchtk.sampling.raster_generate)
        images = np.asarray(samples["images"])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{path}: 'images' must be uint8 [N, W, W], got {images.dtype} "
                            f"{list(images.shape)}")
        n = len(images)
    else:
        raise DataError(f"{path}: has no 'strokes' array (keys: {sorted(samples)}); write it with "
                        "sample.py")
    for key in ("labels", "ref_index"):
        if key in samples and np.shape(samples[key]) != (n,):
            raise DataError(f"{path}: '{key}' has shape {np.shape(samples[key])}, expected ({n},) "
                            "(one per sketch)")
    return samples


def degenerate_reasons(sketches):
    """Why each stroke-3 sketch cannot be scored: ``(mask [N] bool, {reason: count})``.

    Reasons: ``fewer_than_2_points`` (the first point is a move, so 0 or 1 points draw nothing),
    ``non_finite``, ``nothing_drawn`` (no segment with the pen down, DESIGN.md drawing rule).
    """
    mask = np.zeros(len(sketches), bool)
    counts = {}
    for i, sketch in enumerate(sketches):
        reason = stroke_ops.degenerate_reason(sketch)
        if reason is None:
            continue
        mask[i] = True
        counts[reason] = counts.get(reason, 0) + 1
    return mask, counts


def _stroke_batch(sketches, scale_factor, max_seq_len):
    """Stroke-5 ``[B, max_seq_len + 1, 5]`` and lengths of stroke-3 sketches / ``scale_factor``."""
    strokes5, lengths = [], []
    for sketch in sketches:
        s = np.asarray(sketch, np.float32)[:max_seq_len].copy()
        s[:, :2] /= np.float32(scale_factor)
        strokes5.append(stroke3_to_stroke5(s, max_seq_len))
        lengths.append(len(s))
    return {"strokes": np.stack(strokes5), "lengths": np.asarray(lengths, np.int32)}


def encode_sketches(model, sketches, normalised=False, batch_size=256):
    """Latent means ``[N, Z]`` of stroke-3 sketches through the model's own encoder.

    Image encoders (``rpcl_pix2seq``, ``sketch_pix2seq``) see the sketches rendered at
    ``png_width`` (the training renderer; rendering is scale-invariant); the stroke encoder
    (``sketch_rnn``) sees them normalised by the run's scale factor as stroke-5, cut at
    ``max_seq_len`` points (the sampler never draws more). The test split goes through the same
    path as the generated sketches, so a sample equal to its reference gets its reference's code.

    Args:
      model: a ``SketchVAE``.
      sketches: stroke-3 arrays, in data units (what ``sample.py`` writes) unless ``normalised``.
      normalised: True for sketches already divided by the scale factor (``SketchData`` splits).
      batch_size: sketches per encoder call.
    """
    sketches = list(sketches)
    scale = 1.0 if normalised else model.scale_factor
    codes = []
    for lo in range(0, len(sketches), batch_size):
        chunk = sketches[lo:lo + batch_size]
        if model.hparams.model == "sketch_rnn":
            batch = _stroke_batch(chunk, scale, model.max_seq_len)
        else:
            batch = {"images": render_sketches(chunk, width=model.hparams.png_width)}
        codes.append(model.encode(batch, training=False)[0].numpy())
    if not codes:
        return np.zeros((0, model.hparams.z_size), np.float32)
    return np.concatenate(codes, axis=0)


def _read_run_config(model_dir):
    path = os.path.join(model_dir, MODEL_CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model_dir={model_dir}: not a trained model directory (no "
                                f"{MODEL_CONFIG})")
    return read_json(path)


def _check_classifier(classifier_dir, categories):
    """ValueError unless ``classifier_dir`` is a Sketch-a-Net run on ``categories`` (read first,
    so a wrong directory fails before anything is loaded)."""
    config = _read_run_config(classifier_dir)
    kind = config.get("hparams", {}).get("model")
    if kind != "sketch_a_net":
        raise ValueError(f"--classifier_dir={classifier_dir} is a {kind} run, not a Sketch-a-Net "
                         "classifier; train one with train.py --hparams=model=sketch_a_net")
    if list(config["categories"]) != list(categories):
        raise ValueError(f"--classifier_dir={classifier_dir} was trained on categories "
                         f"{config['categories']}, but the model on {list(categories)}: train "
                         "the classifier on the model's categories (same order)")


def _test_scale_factor(config):
    # Rendering is scale-invariant, so runs that saved no scale factor can still be scored.
    return config.get("scale_factor") or 1.0


def _load_splits(config, data_dir, splits):
    """The real sketches of ``splits`` (one read of each file). VAE runs: capped at the run's
    ``max_seq_len`` (what the model reads). Other families (diffusion caps *resampled* point
    sequences): every sketch."""
    capped = config.get("hparams", {}).get("model") in VAE_MODELS
    return load_test_set({**config, "scale_factor": _test_scale_factor(config),
                          "max_seq_len": config.get("max_seq_len", -1) if capped else -1},
                         data_dir, splits=splits)


def _retrieval(model, test, samples, degenerate, names, block_size, metrics):
    """Ret of the generated sketches; degenerate ones count as misses at every k."""
    ref_codes = encode_sketches(model, test["test"].sketches, normalised=True)
    num_refs = len(ref_codes)
    ref_index = np.asarray(samples["ref_index"]).astype(np.int64)
    if ref_index.max() >= num_refs:
        raise DataError(f"samples.npz names test reference {int(ref_index.max())} but the test "
                        f"set has {num_refs} sketches: the samples were drawn against other test "
                        "data (pass the --data_dir they were sampled with)")
    # A miss even where k >= the number of references (top-k is otherwise trivially 1 there).
    ranks = np.full(len(ref_index), np.iinfo(np.int64).max, np.int64)
    ok = ~degenerate
    if ok.any():
        gen_codes = encode_sketches(model, samples["strokes"][ok])
        ranks[ok] = retrieval_ranks(gen_codes, ref_codes, ref_index[ok], block_size=block_size)
    metrics.update(topk_from_ranks(ranks, KS, num_references=num_refs))
    for name in np.unique(names):
        metrics["per_category"].setdefault(str(name), {}).update(
            topk_from_ranks(ranks[names == name], KS))
    metrics["num_references"] = int(num_refs)
    return ref_codes


def _image_metrics(classifier, data, samples, degenerate, categories, conditional_labels,
                   k, block_size, metrics):
    """Rec (with labels) and FID / precision / recall against the real test sketches of
    ``data`` (which holds the test and validation splits)."""
    width = int(classifier.input_shape[1])
    if "strokes" in samples:
        strokes = list(samples["strokes"])
        gen_images = render_sketches([s if not bad else np.zeros((0, 3), np.float32)
                                      for s, bad in zip(strokes, degenerate)], width=width)
    else:
        gen_images = sample_images_at(samples["images"], width, metrics)
    test_images = render_sketches(list(data["test"].sketches), width=width)
    if conditional_labels:
        labels = np.asarray(samples["labels"]).astype(np.int64)
        rec = recognition_accuracy(classifier, gen_images, labels, categories,
                                   counted_wrong=degenerate)
        metrics["rec"] = rec["rec"]
        for name, acc in rec["per_category"].items():
            metrics["per_category"].setdefault(str(name), {})["rec"] = acc
        real = recognition_accuracy(classifier, test_images, data["test"].labels, categories)
        metrics["rec_real_test"] = real["rec"]
    else:
        metrics["notes"].append("Rec needs the category of each sample (conditional samples)")
    test_feats = classifier_features(classifier, test_images)
    metrics["notes"].append(FEATURE_SPACE_NOTE.format(width=width))
    metrics["pr_k"] = int(k)
    metrics["num_real_features"] = int(len(test_feats))
    valid_feats = classifier_features(
        classifier, render_sketches(list(data["valid"].sketches), width=width))
    if len(valid_feats) > k:
        ref = sample_quality(test_feats, valid_feats, k=k, block_size=block_size)
        metrics["real_valid_vs_test"] = {key: ref[key] for key in
                                         ("fid", "precision", "recall", "num_fake")}
    gen_feats = classifier_features(classifier, gen_images[~degenerate])
    if len(gen_feats) <= k or len(test_feats) <= k:
        metrics["notes"].append(f"FID / precision / recall need more than k={k} drawn samples "
                                f"and test sketches; got {len(gen_feats)} and {len(test_feats)}")
        return
    quality = sample_quality(test_feats, gen_feats, k=k, block_size=block_size)
    metrics.update({key: quality[key] for key in ("fid", "precision", "recall")})
    if degenerate.any():
        metrics["notes"].append(f"FID / precision / recall over the {len(gen_feats)} drawn "
                                f"samples; {int(degenerate.sum())} degenerate ones left out")


def sample_images_at(images, width, metrics=None):
    """A raster bundle's uint8 images at the classifier's ``width`` (bilinear resize when the
    sizes differ, with a note in ``metrics``)."""
    images = np.asarray(images, np.uint8)
    if images.shape[1] == width:
        return images
    from PIL import Image
    if metrics is not None:
        metrics["notes"].append(f"the {images.shape[1]} px sample images were resized to the "
                                f"classifier's {width} px (bilinear)")
    return np.stack([np.asarray(Image.fromarray(im).resize((width, width), Image.BILINEAR))
                     for im in images]) if len(images) else np.zeros((0, width, width), np.uint8)


def run_evaluation(model_dir, sample_dir, classifier_dir=None, data_dir=None, block_size=1024,
                   k=DEFAULT_K):
    """Evaluate the samples in ``sample_dir`` (see the module docstring); write ``metrics.json``.

    Args:
      model_dir: the run that drew the samples (a ``train.py --log_root``), any model family.
      sample_dir: where ``sample.py`` wrote ``samples.npz``.
      classifier_dir: a Sketch-a-Net run on the same categories; needed for Rec, FID, precision
        and recall.
      data_dir: test data (default: what the model was trained on).
      block_size: rows per distance block of Ret and precision / recall (bounds memory).
      k: neighbourhood size of the precision / recall manifolds.

    Returns:
      The metrics dict: ``ret_top1``, ``ret_top10``, ``ret_top50``, ``rec``, ``rec_real_test``,
      ``fid``, ``precision``, ``recall``, ``real_valid_vs_test``, ``num_samples``,
      ``num_degenerate``, ``degenerate`` (counts by reason), ``per_category``, ``model``,
      ``active_components`` (GMM runs); a metric that does not apply or cannot be computed is
      None, with the reason under ``notes``.

    Raises:
      FileNotFoundError / DataError / ValueError with a message naming the directory or file and
      the problem (no run there, no samples bundle, classifier of other categories, ...).
    """
    config = _read_run_config(model_dir)
    family = config.get("hparams", {}).get("model")
    if family == "sketch_a_net":
        raise ValueError(f"--model_dir={model_dir} is the Sketch-a-Net classifier; pass it as "
                         "--classifier_dir and the generative run as --model_dir")
    categories = list(config["categories"])
    samples = load_samples(sample_dir)
    if "strokes" in samples:
        strokes = samples["strokes"]
        degenerate, reasons = degenerate_reasons(strokes)
    else:  # images: a blank one is the degenerate case (counted a miss, left out of FID)
        strokes = samples["images"]
        degenerate = (np.asarray(strokes) >= 128).all(axis=(1, 2))
        reasons = {"nothing_drawn": int(degenerate.sum())} if degenerate.any() else {}
    labels = np.asarray(samples.get("labels", np.full(len(strokes), -1))).astype(np.int64)
    ref_index = np.asarray(samples.get("ref_index", np.full(len(strokes), -1))).astype(np.int64)
    has_labels = bool(len(labels)) and bool(np.all((labels >= 0) & (labels < len(categories))))
    has_refs = bool(len(ref_index)) and bool(np.all(ref_index >= 0))
    names = (np.asarray(samples["names"]).astype(str) if "names" in samples
             else np.array(["all"] * len(strokes)))
    metrics = {"model": family, "num_samples": int(len(strokes)),
               "conditional": bool(samples.get("conditional", has_refs)),
               "num_degenerate": int(degenerate.sum()), "degenerate": reasons,
               "ret_top1": None, "ret_top10": None, "ret_top50": None, "rec": None,
               "fid": None, "precision": None, "recall": None,
               "per_category": {}, "notes": []}
    if degenerate.any():
        logging.warning("%s: %d of %d samples are degenerate (%s)", sample_dir,
                        int(degenerate.sum()), len(strokes), reasons)
    if classifier_dir:
        _check_classifier(classifier_dir, categories)
    # The validation split (the real-vs-real FID reference) is read with the test split.
    test = _load_splits(config, data_dir, ("test", "valid") if classifier_dir else ("test",))

    model = None
    if family in VAE_MODELS:
        model, _ = load_trained_model(model_dir)
        if has_refs:
            ref_codes = _retrieval(model, test, samples, degenerate, names, block_size, metrics)
        else:
            metrics["notes"].append("Ret needs conditional samples (each names its test reference)")
            ref_codes = encode_sketches(model, test["test"].sketches, normalised=True)
    else:
        metrics["notes"].append(f"Ret does not apply: a {family} model has no latent code to "
                                "re-encode the samples into")

    if classifier_dir:
        classifier, _ = load_trained_model(classifier_dir)
        _image_metrics(classifier, test, samples, degenerate, categories, has_labels, k,
                       block_size, metrics)
    else:
        metrics["notes"].append("Rec, FID, precision and recall need --classifier_dir "
                                "(train.py --hparams=model=sketch_a_net)")

    if model is not None:
        gmm_mu = gmm_alpha = None
        if model.gmm is not None:
            gmm_mu, gmm_alpha = np.asarray(model.gmm.mu), np.asarray(model.gmm.alpha)
            metrics["active_components"] = int(model.gmm.num_active())
        plot_latent_space(ref_codes, test["test"].labels, categories,
                          os.path.join(sample_dir, "latent_space.png"), gmm_mu=gmm_mu,
                          gmm_alpha=gmm_alpha, alpha_threshold=model.hparams.gmm_active_threshold,
                          title=f"{family} test set latent")
    write_json_atomic(os.path.join(sample_dir, "metrics.json"), metrics)
    logging.info("metrics: %s", {k: v for k, v in metrics.items() if k != "per_category"})
    return metrics
