"""Every backbone of the zoo, by family; importing this package registers them all."""
from .base import Backbone
from .dla import *  # noqa: F401,F403
from .dla_up import *  # noqa: F401,F403
from .rlanet import *  # noqa: F401,F403
from .rexnet import *  # noqa: F401,F403
from .rexunet import *  # noqa: F401,F403
from .residual_attention import *  # noqa: F401,F403
from .paddle_models import *  # noqa: F401,F403
from . import dla, dla_up, paddle_models, residual_attention, rexnet, rexunet, rlanet

__all__ = (["Backbone"] + dla.__all__ + dla_up.__all__ + rlanet.__all__ + rexnet.__all__ + rexunet.__all__
           + residual_attention.__all__ + paddle_models.__all__)
