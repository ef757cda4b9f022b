"""Search engines behind one interface: PostgreSQL (default) and Elasticsearch.

Never imports market."""
