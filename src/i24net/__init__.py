"""i24net: a secure communications backbone for police messages over Apache Kafka."""

from i24net.errors import I24Error

__version__ = "0.1.0"
__all__ = ["I24Error", "__version__"]
