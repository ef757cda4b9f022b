"""The catalog: product categories, cooperatives' products and their certifications."""
