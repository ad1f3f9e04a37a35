"""tvscript: train a word-level LSTM on sitcom transcripts and generate new scenes."""

from .api import Generation, ScriptModel, load
from .errors import TvscriptError
from .generate import GenerationConfig

__all__ = ["load", "ScriptModel", "Generation", "GenerationConfig", "TvscriptError"]
__version__ = "0.1.0"
