"""keeptraining: keep training a Keras model until it reaches its threshold."""

#: The one place the version is written: the package metadata (action/pyproject.toml reads it),
#: `keeptraining --version`, and the release workflow (scripts/release.py checks it against the tag
#: and CHANGELOG.md) take it from here.
__version__ = "1.0.0"
