"""Training: fit / evaluate / predict / train_step, callbacks, cache_features for transfer learning, layer_statistics."""

from .callbacks import Callback, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler, ModelCheckpoint, TerminateOnNaN
from .features import cache_features
from .fit import evaluate, fit, predict, train_step
from .history import History
from .layer_statistics import layer_statistics
from .split import ValidationSplit

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "TerminateOnNaN", "ValidationSplit", "cache_features", "evaluate", "fit",
           "layer_statistics", "predict", "train_step"]
