"""The gazetteer of China's administrative regions, poverty-county flags and distances."""
