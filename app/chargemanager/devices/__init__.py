"""Device register maps as data: one module per model."""
