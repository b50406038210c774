"""sketchtk.models: importing the package registers every model class with Keras, so that
``keras.saving.load_model("<run>/model.keras")`` works after ``import sketchtk.models``."""

from sketchtk.models import (  # noqa: F401
    raster_diffusion, sketch_a_net, sketch_vae, stroke_diffusion)
