"""AgriBridge (农商桥): the marketplace domain, database, HTTP API, portal pages, CLI and worker."""

__version__ = "0.1.0"
