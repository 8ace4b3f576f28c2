"""A foreground process runtime for containers: the Python answer to pm2-runtime."""

__version__ = "0.1.0"
