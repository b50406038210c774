"""Warm start: begin a new run from another run's trained weights (``train.py --init_from=DIR``).

Every top-level layer of the new model whose name and weight shapes match a layer of the source
run's best checkpoint takes the source's values; the others (a new conditioning encoder, a
resized layer) keep their fresh initialisation. For a diffusion model the source's EMA weights
are the ones copied (they are what the source samples with) and the new model's EMA starts from
them too.
The optimiser starts fresh. Only a run's first start is warm: a resumed run continues from its
own checkpoint.

Why: a conditioning encoder (``cond_encoder=pointcloud|sketch``) trained from scratch together
with its denoiser was ignored by it within the step budgets a CPU allows (README, Diffusion
applications); starting the denoiser from a trained class-conditional run, whose conditioning
input has the same size (``cond_dim``), leaves the encoder's whole budget to learning the
condition.
"""

from absl import logging

from sketchtk.errors import ConfigError


def _sampling_values(model):
    """``{id(weight): value}`` of a trained model's weights, with the EMA in place of each
    trainable weight where the model keeps one."""
    values = {id(w): w.numpy() for w in model.weights}
    for w, avg in zip(model.trainable_weights, getattr(model, "ema", None) or []):
        values[id(w)] = avg.numpy()
    return values


def _shapes(layer):
    return [tuple(w.shape) for w in layer.weights]


def warm_start(model, source_dir):
    """Copy ``source_dir``'s best weights into the built ``model``, layer by layer.

    The model's top-level layers (the denoiser, the class embedding, a conditioning encoder...)
    are matched to the source's by name (the names are set by the model, so they do not depend
    on what else the process has built); a layer whose weights all match in shape, in order,
    takes the source's values, any other keeps its fresh initialisation.

    Args:
      model: a built (and compiled) model, e.g. from ``trainer.build_model``.
      source_dir: a ``train.py`` run directory of the same model class.

    Returns:
      ``{"copied": [layer names], "fresh": [layer names], "source": source_dir}``.

    Raises:
      ConfigError: the source is another kind of model, or no layer matches (one line).
    """
    from sketchtk.training.trainer import load_trained_model

    try:
        source, _ = load_trained_model(source_dir)
    except FileNotFoundError as err:
        raise ConfigError(f"--init_from: {err}") from None
    if type(source) is not type(model):
        raise ConfigError(f"--init_from={source_dir}: a {type(source).__name__} run cannot start a "
                          f"{type(model).__name__}")
    values = _sampling_values(source)
    source_layers = {layer.name: layer for layer in source.layers}
    ema = dict(zip((id(w) for w in model.trainable_weights), getattr(model, "ema", None) or []))
    copied, fresh = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        other = source_layers.get(layer.name)
        if other is None or type(other) is not type(layer) or _shapes(other) != _shapes(layer):
            fresh.append(layer.name)
            continue
        for w, src in zip(layer.weights, other.weights):
            w.assign(values[id(src)])
            if id(w) in ema:
                ema[id(w)].assign(values[id(src)])
        copied.append(layer.name)
    if not copied:
        raise ConfigError(f"--init_from={source_dir}: no layer of the source matches this model "
                          "(name and weight shapes)")
    logging.info("warm start from %s: layers %s copied, %s fresh", source_dir,
                 ", ".join(copied), ", ".join(fresh) or "none")
    return {"copied": copied, "fresh": fresh, "source": source_dir}
