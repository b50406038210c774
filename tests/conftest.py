"""Shared fixtures: a smoke-preset model trained once per session on the embedded real data."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="session")
def sheep_sketches():
    """Real stroke-3 sheep (int16, as stored) from every split of ``fixtures/sheep_small.npz``."""
    from sketchtk.data.npz_io import load_stroke_npz

    data = load_stroke_npz(os.path.join(FIXTURES, "sheep_small.npz"))
    return data["train"] + data["valid"] + data["test"]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``log_root`` of a 6-step ``smoke`` RPCL-pix2seq run on the embedded QuickDraw subset."""
    from hparams import get_preset
    from sketchtk.training.trainer import train_and_evaluate

    log_root = str(tmp_path_factory.mktemp("smoke_run"))
    result = train_and_evaluate(get_preset("smoke"), log_root, verbose=0)
    assert result.steps == 6
    return log_root


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    """``log_root`` of a briefly trained Sketch-a-Net (3 passes, 33 steps) on the embedded subset:
    the classifier of Rec and of the FID / precision / recall features."""
    from hparams import get_preset
    from sketchtk.training.trainer import train_and_evaluate

    log_root = str(tmp_path_factory.mktemp("classifier_run"))
    hp = get_preset("smoke").replace(model="sketch_a_net", classifier_epochs=3, batch_size=32,
                                     num_steps=33, eval_every=33)
    result = train_and_evaluate(hp, log_root, verbose=0)
    assert result.steps == 33
    return log_root


@pytest.fixture(scope="session")
def sketch_rnn_run(tmp_path_factory):
    """``log_root`` of a 2-step ``smoke`` sketch-rnn run on the embedded QuickDraw subset."""
    from hparams import get_preset
    from sketchtk.training.trainer import train_and_evaluate

    log_root = str(tmp_path_factory.mktemp("sketch_rnn_run"))
    result = train_and_evaluate(get_preset("smoke").replace(model="sketch_rnn", num_steps=2,
                                                            eval_every=2), log_root, verbose=0)
    assert result.steps == 2
    return log_root
