"""keeptraining: keep training a Keras model until it reaches its threshold."""

__version__ = "0.1.0"
